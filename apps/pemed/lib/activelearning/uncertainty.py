"""Active learning from PE-MED's own predictions: how unsure its masks are.

An image's score is the mean, over clicks placed without any label (``seed_points``: spread over the
image's foreground, on a few slices of a volume), of the binary entropy of the served probability
summed over the image and divided by the mask's area: a mask with a sharp, confident outline scores
low, one whose outline is smeared or that leaks into its surroundings scores high. Higher = to be
labelled sooner. On the sample's 76 evaluation slices (benchmarks/active_learning.py) a click's
score ranks the Dice the model reaches with it (Spearman -0.35 over 529 clicks), but an image's mean
ranks images only weakly (-0.16): these slices of one brain differ little in difficulty. Tried in a
first look at half of those slices: the Self-Loop's disagreement (1 - Dice between the mask and the
mask after one more pass of the loop) ranked images no better than chance (-0.04 against the Dice of
the usual first click), and the masks' change under 4-pixel click shifts ranked clicks as well as
entropy (-0.31 against -0.29, 263 clicks) at five times the cost.

``PEMEDUncertaintyScoring`` (a MONAI Label scoring method) stores each unlabeled image's score in
the datastore with the checkpoint's modification time; MONAI Label runs scoring at start-up, after
each training run and on each next-sample request, and images whose score belongs to an older model
are scored again. On a DICOMweb study list only series already fetched are scored
(``local_image``). ``MostUncertain`` serves the highest score first. (MONAI Label's ``Epistemic``
strategy re-sorts its candidates by when they were last served, which after the first request
ignores the scores.)
"""

import logging
import os
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from ..prompts.clicks import Click
from ..background import yield_to_clicks
from ..errors import InvalidRequest
from ..transforms.transforms import normalize_intensity

logger = logging.getLogger(__name__)

SCORE_KEY = "pemed_uncertainty"
MODEL_TS_KEY = "pemed_uncertainty_model_ts"


def seed_points(image: np.ndarray, n: int, seed: int = 0) -> List[Tuple[int, int]]:
    """``n`` points spread over the image's foreground (intensity above the 60th percentile of the
    non-zero pixels, so that they fall on tissue rather than air), by farthest-point sampling from a
    fixed random start."""
    values = image[image > image.min()]
    if values.size == 0:
        return []
    rows, cols = np.nonzero(image > np.percentile(values, 60))
    if rows.size == 0:
        return []
    rng = np.random.default_rng(seed)
    pool = rng.choice(rows.size, size=min(rows.size, 2000), replace=False)
    pts = np.stack([rows[pool], cols[pool]], 1).astype(np.float64)
    chosen = [int(rng.integers(len(pts)))]
    far = np.linalg.norm(pts - pts[chosen[0]], axis=1)
    while len(chosen) < min(n, len(pts)):
        chosen.append(int(np.argmax(far)))
        far = np.minimum(far, np.linalg.norm(pts - pts[chosen[-1]], axis=1))
    return [(int(pts[i, 0]), int(pts[i, 1])) for i in chosen]


def mask_entropy(probability: np.ndarray) -> float:
    """Binary entropy of a probability map summed over the image, per pixel of the mask it gives."""
    p = np.clip(probability, 1e-6, 1 - 1e-6)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return float(entropy.sum() / max(int((probability > 0.5).sum()), 1))


def click_uncertainties(predictor, image: np.ndarray, seeds: Sequence[Tuple[int, int]]) -> List[Tuple[float, np.ndarray]]:
    """(uncertainty, mask) of one positive click at each seed."""
    predictor.set_image(image)
    out = []
    for row, col in seeds:
        prediction = predictor.predict([Click(row, col, True)])
        out.append((mask_entropy(prediction.probability), prediction.mask()))
    return out


def image_slices(array: np.ndarray, count: int) -> List[np.ndarray]:
    """A 2D image as itself; a volume as ``count`` axial slices spread over its non-empty extent."""
    if array.ndim == 2:
        return [array]
    filled = np.flatnonzero((array > array.min()).any(axis=(0, 1)))
    if filled.size == 0:
        return []
    picks = np.linspace(filled[0], filled[-1], count + 2)[1:-1].round().astype(int)
    return [array[:, :, z] for z in sorted(set(picks))]


def image_uncertainty(predictor, array: np.ndarray, modality: str, slices: int = 4, seeds: int = 3,
                      seed: int = 0) -> Optional[float]:
    scores = []
    for i, image in enumerate(image_slices(array, slices)):
        image = normalize_intensity(image.astype(np.float32), modality)
        scores += [u for u, _ in click_uncertainties(predictor, image, seed_points(image, seeds, seed + i))]
    return float(np.mean(scores)) if scores else None


def local_image(datastore: Datastore, image_id: str) -> Optional[str]:
    """The image's file if the datastore holds it here. A DICOMweb store's series that nobody has
    opened yet is left for a later run: fetching it from the scoring process races the server's own
    fetch of the same series, since MONAI Label downloads into the cache folder in place (a click
    that came while start-up scoring fetched the sample got a volume of 8 of its 181 slices, cached
    for good)."""
    if isinstance(datastore, DICOMWebDatastore):
        path = os.path.join(datastore._datastore.image_path(), f"{image_id}.nii.gz")  # its cache of converted series
        return path if os.path.exists(path) else None
    return datastore.get_image_uri(image_id)


class PEMEDUncertaintyScoring(ScoringMethod):
    def __init__(self, infer_task, slices: int = 4, seeds: int = 3, max_images: int = 50):
        super().__init__("Entropy of PE-MED's masks on clicks placed without labels (higher = label sooner)")
        self.infer_task = infer_task
        self.slices, self.seeds = slices, seeds
        self.max_images = max_images  # per run: a DICOMweb store fetches each image it scores

    def __call__(self, request, datastore: Datastore):
        yield_to_clicks()
        path = self.infer_task.get_path()
        if not path or not os.path.exists(path):
            return {"scored": 0, "skipped": 0, "reason": "no checkpoint"}
        model_ts = int(os.path.getmtime(path))
        device = request.get("device", "cpu")
        predictor = None
        scored, skipped = 0, 0
        limit = int(request.get("max_images", self.max_images))
        for image_id in datastore.get_unlabeled_images():
            info = datastore.get_image_info(image_id)
            if info.get(MODEL_TS_KEY) == model_ts:
                skipped += 1
                continue
            if scored >= limit:
                break
            uri = local_image(datastore, image_id)
            if uri is None:
                continue
            try:  # read as the infer task reads it: the same RGB handling and modality
                array, _, is_rgb, modality = self.infer_task.images.load(uri)
            except InvalidRequest as e:  # an unreadable image is left unscored, not a failed run
                logger.warning(f"uncertainty: cannot read {image_id}: {e}")
                continue
            if is_rgb:  # an RGB photo, (C, X, Y): its luminance
                array = array.mean(0)
            predictor = predictor or self.infer_task.predictor(device)
            score = image_uncertainty(predictor, array, modality, self.slices, self.seeds,
                                      seed=sum(map(ord, image_id)) % 1000)
            if score is None:
                continue
            datastore.update_image_info(image_id, {SCORE_KEY: score, MODEL_TS_KEY: model_ts})
            scored += 1
        logger.info(f"uncertainty: {scored} images scored, {skipped} current")
        return {"scored": scored, "skipped": skipped}


class MostUncertain(Strategy):
    """The unlabeled image with the highest ``pemed_uncertainty``; images this strategy served in the
    last ``hold_s`` seconds come after the others, so annotators asking in turn get different images."""

    def __init__(self, hold_s: float = 3600.0):
        super().__init__("The unlabeled image PE-MED is least sure of (scored by pemed_uncertainty)")
        self.hold_s = hold_s

    def __call__(self, request, datastore: Datastore):
        images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
        if not images:
            return None
        now, infos = time.time(), {image_id: datastore.get_image_info(image_id) for image_id in images}

        def rank(image_id):
            served = infos[image_id].get("strategy", {}).get(request.get("strategy", ""), {}).get("ts", 0)
            return (now - served >= self.hold_s, infos[image_id].get(SCORE_KEY, 0.0))

        image_id = max(images, key=rank)
        return {"id": image_id, SCORE_KEY: infos[image_id].get(SCORE_KEY)}
