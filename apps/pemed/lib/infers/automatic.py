"""The automatic infer tasks, ``curriculum`` and ``promise``: a named structure segmented with no clicks.

Request params:
    label    the structure's name (one the served model knows: the configured names and those it
             has learnt from saved labels, as ``/info/`` lists them; default: the first)
    slice    for 3D images, the slice to segment; without it the structure's slices along ``axis``
             are found (every 10th probed, then outward from the surest find: lib/automatic.py's
             segment_volume) and the 3D label returned
    axis     for 3D images, the array axis slices are taken along (default 2)
    client_id  as for ``pemed``: with the client the server adds, the key of the result PE-MED may
             start from (lib/prompts/session.py's AutomaticResults)
The answer's label holds the structure's value in the task's labels (1 + its index among the
model's names, as ``label_names`` in the result maps them, so a client colours it by name); the
result also gives the prompts the method made (Curriculum's box and edge points, ProMISe's points)
for a single slice, and timings.
"""

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Hashable, Optional, Sequence, Tuple

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from ..automatic import AutoResult, CurriculumPredictor, ProMISePredictor, load_network, segment_volume
from ..errors import InvalidRequest
from ..foundation import FoundationModel, SAMPredictor
from ..named_labels import NameRegistry
from ..prompts.session import AUTOMATIC_RESULTS
from ..transforms.transforms import AUTO, normalize_intensity
from .pemed import ImageCache, axis_param, fast_nrrd_answer, int_param

logger = logging.getLogger(__name__)


class AutomaticInfer(BasicInferTask):
    """One automatic method; ``build(sam_predictor, paths of its checkpoints, device)`` makes its
    predictor. Its labels are the names the served model knows (``names``: the registry of the names
    it is taught; a name learnt from a saved label joins once a training run has published it)."""

    def __init__(self, method: str, checkpoints: Sequence[Sequence[str]], foundation: FoundationModel,
                 names: NameRegistry, build: Callable, modality: str = AUTO, description: str = "",
                 required: Optional[int] = None):
        configured = names.names()
        super().__init__(path=[p for group in checkpoints for p in group], network=None, type=InferType.SEGMENTATION,
                         labels={name: k + 1 for k, name in enumerate(configured)}, dimension=2,
                         description=description, config={"label": next(iter(configured), ""), "axis": 2})
        self.method, self.checkpoints, self.foundation, self.build = method, [list(g) for g in checkpoints], foundation, build
        self.registry = names
        self.required = len(self.checkpoints) if required is None else required  # the first groups must exist
        self.modality = modality
        self.images = ImageCache()
        self._predictor: Dict[str, Tuple[Any, Tuple]] = {}
        self._lock = threading.Lock()

    def newest(self) -> Optional[list]:
        """Per checkpoint group (a model and its fine-tuned version), the newest file that exists;
        None for an optional group without one; None altogether when a required one has none."""
        chosen = []
        for k, group in enumerate(self.checkpoints):
            existing = [p for p in group if os.path.isfile(p)]
            if not existing and k < self.required:
                return None
            chosen.append(existing[-1] if existing else None)
        return chosen

    def is_valid(self) -> bool:
        return self.foundation.exists() and self.newest() is not None

    def pre_transforms(self, data=None):
        return []

    def inverse_transforms(self, data=None):
        return []

    def post_transforms(self, data=None):
        return []

    def predictor(self, device: str):
        paths = self.newest()
        if paths is None:
            raise InvalidRequest(f"{self.method}: no trained model yet (expected {self.checkpoints})", 503)
        sam = self.foundation.predictor(device)
        stamp = (id(sam), tuple((p, p and os.path.getmtime(p)) for p in paths))
        with self._lock:
            cached = self._predictor.get(device)
            if cached is None or cached[1] != stamp:
                cached = (self.build(sam, paths, device), stamp)
                self._predictor[device] = cached
                self.labels = {name: k + 1 for k, name in enumerate(self.served(cached[0]))}
                waiting = [n for n in self.registry.names() if n not in cached[0].names]
                if waiting:
                    logger.info(f"{self.method}: still to learn {waiting} (a training run publishes them)")
            return cached[0]

    def served(self, predictor) -> list:
        """The names it answers: those of the registry (auto_labels and the learnt ones) the model
        knows, in the model's order."""
        wanted = set(self.registry.names())
        return [n for n in predictor.names if n in wanted]

    def info(self) -> Dict[str, Any]:
        """As BasicInferTask's, its labels the names the served model knows now (a model a training run
        published since is loaded first)."""
        for device in list(self._predictor):
            try:
                self.predictor(device)
            except Exception as e:  # the info page must answer; the next request says what is wrong
                logger.warning(f"{self.method}: the newest model could not be loaded: {e}")
        return super().info()

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        return fast_nrrd_answer(data, extension) or super().writer(data, extension, dtype)

    def run_inferer(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        t0 = time.perf_counter()
        predictor = self.predictor(str(device))
        names = self.served(predictor)
        if not names:
            raise InvalidRequest(f"{self.method}: the model knows none of the names asked for ({self.registry.names()})", 503)
        name = data.get("label") or names[0]
        if isinstance(name, str) and name not in names and name in self.registry.names():
            raise InvalidRequest(f"{self.method} is still learning {name!r} from the labels saved: it segments it once "
                                 f"the training run started by the save has published (GET /info/ lists it then)", 409)
        if not isinstance(name, str) or name not in names:
            raise InvalidRequest(f"{self.method} segments one named structure: 'label' must be one of {names}")
        array, affine, is_rgb, found = self.images.load(data.get("image_path") or data.get("image"))
        if is_rgb:
            array = array.mean(axis=0)
        if array.ndim not in (2, 3):
            raise InvalidRequest(f"{self.method} segments 2D images or 3D volumes; this image has shape {array.shape}", 422)
        modality = found if self.modality.lower() == AUTO else self.modality
        image_key = (data.get("image"), os.path.getmtime(data.get("image_path") or data.get("image")))
        value = names.index(name) + 1
        result: Dict[str, Any] = {"label": name, "value": value, "method": self.method}
        if array.ndim == 2:
            out = self._slice(predictor, normalize_intensity(array, modality), name, (image_key, None, None))
            label = out.mask.astype(np.uint8) * value
            result.update(prompts(out))
            self._remember(data, name, None, None, out)
        else:
            axis = axis_param(data)
            index = int_param(data, "slice", None)
            if index is not None:
                if not 0 <= index < array.shape[axis]:
                    raise InvalidRequest(f"slice {index} is outside the volume (0..{array.shape[axis] - 1} along axis {axis})")
                out = self._slice(predictor, normalize_intensity(np.take(array, index, axis=axis), modality), name,
                                  (image_key, axis, index))
                label = np.zeros(array.shape, np.uint8, order="F")
                sl = [slice(None)] * 3
                sl[axis] = index
                label[tuple(sl)] = out.mask * value
                result.update(prompts(out), axis=axis, slice=index)
                self._remember(data, name, axis, index, out)
            else:
                volume = normalize_intensity(array, modality)  # one normalisation for the whole volume
                found3d = segment_volume(lambda s, n, k: self._slice(predictor, s, n, k), volume, axis, name, image_key,
                                         lambda i, out: self._remember(data, name, axis, i, out))
                label = np.asfortranarray(found3d["mask"]) * np.uint8(value)
                result.update(axis=axis, slices_with_structure=found3d["slices_with_structure"],
                              slices_segmented=found3d["slices_segmented"])
        data["pred"] = label
        data["pred_meta_dict"] = {"affine": affine}
        result["foreground_pixels"] = int((label > 0).sum())
        result["timings_ms"] = {"total_inferer": round((time.perf_counter() - t0) * 1e3, 2)}
        data["result"] = result
        return data

    def _slice(self, predictor, image: np.ndarray, name: str, key: Hashable) -> AutoResult:
        with torch.inference_mode():
            return predictor.segment(image, name, key)

    def _remember(self, data, name, axis, index, out: AutoResult) -> None:
        """The slice's result, for PE-MED to start from when the user corrects it with clicks."""
        AUTOMATIC_RESULTS.put((str(data.get("client") or ""), data.get("image"), axis, index), name, self.method,
                              out.mask)


def prompts(out: AutoResult) -> Dict[str, Any]:
    shown = {"points": [[p.row, p.col, int(p.positive)] for p in out.points], "score": round(out.score, 4)}
    if out.box is not None:
        shown["box"] = list(out.box)
    return shown


def build_curriculum(min_score: float, box_source: str = "edges") -> Callable:
    def build(sam: SAMPredictor, paths, device):
        edges, detector, decoder = paths  # no decoder of its own: the foundation model's (fine-tuned) one
        decoder_sam = load_network(decoder, device, base_sam=sam.sam)[0] if decoder else None
        detector_net = load_network(detector, device)[0] if detector and box_source == "detector" else None
        return CurriculumPredictor(sam, load_network(edges, device)[0], decoder_sam, min_score, detector_net, box_source)
    return build


def build_promise(sam: SAMPredictor, paths, device):
    return ProMISePredictor(sam, load_network(paths[0], device, base_sam=sam.sam)[0])
