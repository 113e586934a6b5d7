"""The training-data engine: one seed -> one 2D (image, target) pair, for every model of the app.

A draw picks a target kind (targets.TargetKinds, weights ``kind_weights``), a slice of Colin27 along
a random axis, and an image source: the real ch2 or ch2bet slice (``real_prob``; the evaluation
slices, every 6th from offset 3 on each axis, are never drawn) or a SynthSeg-style image drawn from
the label map (synth). Image and target get a margin and are warped by the same random affine +
elastic field, a
lesion kind paints lesions and takes one as the target, the image is degraded and normalised as
serving normalises it, and a superpixel kind takes its target from that final image.

A target is rejected and the draw retried (from the same seeded generator) when it is smaller than
``min_area``, touches the image border where it did not before the warp (cut off), or has a Dice
of 0.5 or more with a held-out structure on this slice (so no synthetic target stands in for one).
"""

from typing import Dict, Optional, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from ..configs.labels import HELD_OUT_VALUES, parts
from ..evaluation import dice
from ..transforms.transforms import normalize_intensity
from .atlases import ColinMaps
from .synth import degrade, gaussian_mixture_image, place_lesions, random_warp, touches_border, warp
from .targets import MIDLINE_X, SliceLayers, TargetKinds

DEFAULT_KIND_WEIGHTS = {"parcel": 1.0, "union": 1.0, "region": 1.0, "brain": 0.6, "head": 0.4, "tissue": 0.7,
                        "csf": 0.7, "superpixel": 1.0, "lesion": 1.0}
EVAL_STEP, EVAL_OFFSET = 6, 3  # the real evaluation slices (datasets/build_sample.py)
HELD_OUT_DICE = 0.5
MARGIN = 0.08  # of each side, added around a slice before the warp


class DataEngine:
    def __init__(self, maps: ColinMaps, kind_weights: Optional[Dict[str, float]] = None, real_prob: float = 0.25,
                 skull_strip_prob: float = 0.4, held_out: Sequence[int] = HELD_OUT_VALUES, exclude_held_out: bool = True,
                 min_area: int = 40, max_lesions: int = 3, max_tries: int = 20):
        self.maps = maps
        self.kind_weights = dict(kind_weights or DEFAULT_KIND_WEIGHTS)
        unknown = set(self.kind_weights) - set(DEFAULT_KIND_WEIGHTS)
        if unknown:
            raise ValueError(f"unknown target kinds {sorted(unknown)}; known: {sorted(DEFAULT_KIND_WEIGHTS)}")
        if not all(w >= 0 for w in self.kind_weights.values()):  # also refuses nan
            raise ValueError(f"target-kind weights must be >= 0, got {self.kind_weights}")
        if sum(self.kind_weights.values()) <= 0:
            raise ValueError("at least one target kind needs a weight above 0")
        self.real_prob, self.skull_strip_prob = real_prob, skull_strip_prob
        self.held_out = tuple(int(v) for v in held_out)
        self.exclude_held_out = exclude_held_out
        self.min_area, self.max_lesions, self.max_tries = min_area, max_lesions, max_tries
        self.targets = TargetKinds(self.held_out, min_area, exclude_held_out)
        # slices with some brain in them, per axis
        areas = [maps.brain.sum(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]
        self.slices = [np.flatnonzero(a >= 500) for a in areas]
        self.held_out_map = np.where(np.isin(maps.atlases["aal"], self.held_out), maps.atlases["aal"], 0).astype(np.int16)

    def layers(self, axis: int, index: int) -> SliceLayers:
        m = self.maps
        at = (slice(None),) * axis + (index,)
        take = lambda a: a[at]  # noqa: E731  (a view: basic indexing copies nothing)
        left = np.zeros(m.brain.shape[:axis] + m.brain.shape[axis + 1:], bool)
        if axis == 0:
            left[:] = index < MIDLINE_X
        else:
            left[:MIDLINE_X] = True  # x is the first remaining axis
        return SliceLayers(take(m.ch2), take(m.ch2bet), take(m.brain), take(m.head), take(m.tissue),
                           take(m.synth_labels), {k: take(v) for k, v in m.atlases.items()}, left,
                           take(self.held_out_map))

    def draw(self, seed: int, kind: Optional[str] = None) -> Dict[str, object]:
        """{"image": (H, W) float32 in [0, 1], "label": (H, W) uint8, "kind", "source", "axis", "slice"}."""
        rng = np.random.default_rng(seed)
        kinds = sorted(self.kind_weights)
        weights = np.array([self.kind_weights[k] for k in kinds], dtype=float)
        chosen = kind or str(rng.choice(kinds, p=weights / weights.sum()))  # once: retries keep the kind's share
        for _ in range(self.max_tries):
            sample = self._try(rng, chosen)
            if sample is not None:
                return sample
        raise RuntimeError(f"no acceptable {kind or 'target'} in {self.max_tries} draws (seed {seed})")

    def _try(self, rng: np.random.Generator, kind: str) -> Optional[Dict[str, object]]:
        axis = int(rng.integers(3))
        real = rng.random() < self.real_prob
        candidates = self.slices[axis]
        if real:
            candidates = candidates[candidates % EVAL_STEP != EVAL_OFFSET]
        index = int(rng.choice(candidates))
        layers = self.layers(axis, index)

        target = None
        if kind in self.targets.kinds:
            target = self.targets.draw(kind, layers, rng)
            if target is None or target.sum() < self.min_area:
                return None
        if real:
            source = "ch2bet" if kind != "head" and rng.random() < 0.5 else "ch2"
            image = layers.image_ch2bet if source == "ch2bet" else layers.image_ch2
        else:
            stripped = kind != "head" and rng.random() < self.skull_strip_prob
            source = "synth_stripped" if stripped else "synth"
            image = gaussian_mixture_image(rng, layers.synth_labels, stripped)

        # a margin around the slice, so that zooming in or turning it cuts nothing off
        margin = [(int(MARGIN * s),) * 2 for s in image.shape]
        image = np.pad(image, margin, mode="edge")
        coords = random_warp(rng, image.shape, strength=0.5 if real else 1.0)
        image = warp(image, coords, order=1)
        held_out = warp(np.pad(layers.held_out, margin), coords, order=0)
        region = warp(np.pad(layers.brain, margin).astype(np.uint8), coords, order=0) > 0
        if target is not None:
            moved = warp(np.pad(target, margin).astype(np.uint8), coords, order=0) > 0
            if moved.sum() < self.min_area or (touches_border(moved) and not touches_border(target)):
                return None
            target = moved
        if kind == "lesion":
            image, lesions = place_lesions(rng, image, region if region.any() else image > 0,
                                           int(rng.integers(1, self.max_lesions + 1)), self.min_area)
            if not lesions:
                return None
            target = lesions[int(rng.integers(len(lesions)))]
        image = normalize_intensity(degrade(rng, image, real=real), "MR")
        if kind == "superpixel":
            target = self.targets.superpixel(image, rng)
            if target is None:
                return None
        if kind != "lesion" and self.exclude_held_out:
            for value in np.unique(held_out[held_out > 0]):
                if dice(held_out == value, target) >= HELD_OUT_DICE:
                    return None
        return {"image": image.astype(np.float32), "label": target.astype(np.uint8), "kind": kind, "source": source,
                "axis": axis, "slice": index}

    def draw_held_out(self, seed: int, value: int, synthetic: bool = True) -> Optional[Dict[str, object]]:
        """A held-out structure as the target (evaluation only), under a synthetic contrast or on the
        real ch2bet; None when the structure is not on the drawn slice."""
        rng = np.random.default_rng(seed)
        aal = self.maps.atlases["aal"] == value
        axis = int(rng.integers(3))
        areas = aal.sum(axis=tuple(a for a in range(3) if a != axis))
        candidates = np.flatnonzero(areas >= 4 * self.min_area)
        if candidates.size == 0:
            return None
        index = int(rng.choice(candidates))
        layers = self.layers(axis, index)
        target = layers.atlases["aal"] == value
        image = gaussian_mixture_image(rng, layers.synth_labels, rng.random() < self.skull_strip_prob) if synthetic \
            else layers.image_ch2bet
        coords = random_warp(rng, image.shape, strength=1.0 if synthetic else 0.0)
        image = normalize_intensity(degrade(rng, warp(image, coords, order=1), real=not synthetic), "MR")
        target = warp(target.astype(np.uint8), coords, order=0)
        if target.sum() < self.min_area or touches_border(target > 0):
            return None
        return {"image": image, "label": target, "kind": "held_out", "source": "synth" if synthetic else "ch2bet",
                "axis": axis, "slice": index}


    def draw_named(self, seed: int, values: Sequence[int], real: Optional[bool] = None,
                   eval_slices: bool = False) -> Dict[str, object]:
        """Named structures on one slice, for the automatic methods (which learn structures by name):
        {"image", "label": (H, W) int16 with 1 + the index in ``values`` of each structure (0
        elsewhere), "axis", "slice", "source"}. A value is an AAL structure's or a lobe's (the union
        of its parts: lib/configs/labels.py); the structures must not overlap. The image is the real
        ch2 / ch2bet slice or a synthetic contrast (``real``: None draws which, with ``real_prob``),
        warped like every draw. Real slices are the training ones, or with ``eval_slices`` the
        evaluation ones (every 6th)."""
        rng = np.random.default_rng(seed)
        aal = self.maps.atlases["aal"]
        wanted = np.isin(aal, [p for v in values for p in parts(v)])
        for _ in range(self.max_tries):
            axis = int(rng.integers(3))
            areas = wanted.sum(axis=tuple(a for a in range(3) if a != axis))
            candidates = np.flatnonzero(areas >= self.min_area)
            is_real = rng.random() < self.real_prob if real is None else real
            if is_real:
                on_eval = candidates % EVAL_STEP == EVAL_OFFSET
                candidates = candidates[on_eval if eval_slices else ~on_eval]
            if candidates.size == 0:
                continue
            index = int(rng.choice(candidates))
            layers = self.layers(axis, index)
            classes = np.zeros(layers.brain.shape, np.int16)
            for k, v in enumerate(values):
                classes[np.isin(layers.atlases["aal"], parts(v))] = k + 1
            if is_real:
                source = "ch2bet" if rng.random() < 0.5 else "ch2"
                image = layers.image_ch2bet if source == "ch2bet" else layers.image_ch2
            else:
                stripped = rng.random() < self.skull_strip_prob
                source = "synth_stripped" if stripped else "synth"
                image = gaussian_mixture_image(rng, layers.synth_labels, stripped)
            margin = [(int(MARGIN * n),) * 2 for n in image.shape]
            coords = random_warp(rng, np.pad(image, margin).shape, strength=0.5 if is_real else 1.0)
            image = warp(np.pad(image, margin, mode="edge"), coords, order=1)
            classes = warp(np.pad(classes, margin), coords, order=0).astype(np.int16)
            if not (classes > 0).any():
                continue
            image = normalize_intensity(degrade(rng, image, real=is_real), "MR")
            return {"image": image.astype(np.float32), "label": classes, "axis": axis, "slice": index,
                    "source": source}
        raise RuntimeError(f"no slice with the named structures in {self.max_tries} draws (seed {seed})")


class DataEngined(Randomizable, MapTransform):
    """MONAI transform: an item {"seed": s} becomes {"image": (1, H, W), "label": (1, H, W)} tensors.

    Training items carry ``fixed: False``: the transform then draws a fresh seed from its own
    random state (seeded by MONAI's set_determinism; saved and restored by train.py --resume), so
    every epoch sees new samples. Validation items (``fixed: True``) use their own seed: the same
    samples every time. An item's ``kind`` asks for that target kind.
    """

    def __init__(self, engine: DataEngine, seed_key: str = "seed"):
        MapTransform.__init__(self, keys=seed_key)
        self.engine = engine
        self.seed_key = seed_key
        self._seed = 0

    def randomize(self, data=None) -> None:
        self._seed = int(self.R.randint(0, 2 ** 31 - 1))

    def __call__(self, data):
        d = dict(data)
        if d.get("fixed", False):
            seed = int(d[self.seed_key])
        else:
            self.randomize()
            seed = self._seed
        sample = self.sample(seed, d)
        d["image"] = torch.from_numpy(sample["image"])[None]
        d["label"] = torch.from_numpy(sample["label"].astype(np.float32))[None]
        d["kind"] = sample.get("kind", "named")
        return d

    def sample(self, seed: int, item: dict) -> Dict[str, object]:
        return self.engine.draw(seed, item.get("kind"))  # an item may ask for one target kind


class NamedDrawd(DataEngined):
    """DataEngined for the automatic methods: the label is the class map of ``values``
    (DataEngine.draw_named), training slices only."""

    def __init__(self, engine: DataEngine, values: Sequence[int], seed_key: str = "seed"):
        super().__init__(engine, seed_key)
        self.values = tuple(int(v) for v in values)

    def sample(self, seed: int, item: dict) -> Dict[str, object]:
        return self.engine.draw_named(seed, self.values)
