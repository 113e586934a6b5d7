"""The bundled evaluation set: one studies folder per group of targets, 2D slices with 0/1 labels.

    parcels        the 16 held-out AAL structures on the real ch2bet evaluation slices (never trained on),
                   96 of the 298 samples of datasets/sample/slices/eval, evenly spread
    large          the whole brain on ch2bet and on ch2, the whole head on ch2 (large, visible edges)
    tissue         CSF, grey and white matter inside the brain of ch2bet (intensity classes)
    parcels_synth  the held-out structures under synthetic contrasts and warps (engine seeds >= 2**32)
    lesions        synthetic lesions (engine seeds >= 2**32)
Real slices are the evaluation slices (every 6th from offset 3 along each axis), which the engine
never draws as real images; synthetic groups use seeds outside the training stream's range
(training draws seeds below 2**31), so no evaluation image is a training image.
"""

import os
from typing import Dict, Iterator, Tuple

import nibabel as nib
import numpy as np

from ..configs.labels import HELD_OUT_VALUES
from ..transforms.transforms import normalize_intensity
from .engine import EVAL_OFFSET, EVAL_STEP, DataEngine

EVAL_SEED_BASE = 2 ** 32
GROUPS = ("parcels", "large", "tissue", "parcels_synth", "lesions")
MIN_AREA = 30


def _real_slices(engine: DataEngine, mask: np.ndarray, min_area: int) -> Iterator[Tuple[int, int]]:
    for axis in range(3):
        for index in range(EVAL_OFFSET, mask.shape[axis], EVAL_STEP):
            if mask[(slice(None),) * axis + (index,)].sum() >= min_area:
                yield axis, index


def _spread(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def group_samples(engine: DataEngine, group: str, count: int) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """(name, image normalised as served, 0/1 target) for one group."""
    axes = "sag", "cor", "ax"
    if group == "parcels":  # 2 * count of the 298 samples of datasets/sample/slices/eval, evenly spread
        found = []
        for axis, index in _real_slices(engine, engine.maps.atlases["aal"] > 0, 400):  # as build_sample.py
            layers = engine.layers(axis, index)
            found += [(axis, index, v) for v in HELD_OUT_VALUES if (layers.atlases["aal"] == v).sum() >= MIN_AREA]
        for axis, index, value in _spread(found, 2 * count):
            layers = engine.layers(axis, index)
            yield (f"ch2bet_{axes[axis]}_{index:03d}_{value}", normalize_intensity(layers.image_ch2bet, "MR"),
                   layers.atlases["aal"] == value)
    elif group in ("large", "tissue"):
        from .atlases import CSF, GM, WM

        slices = _spread(list(_real_slices(engine, engine.maps.brain, 2000)), count)
        for i, (axis, index) in enumerate(slices):
            layers = engine.layers(axis, index)
            if group == "large":
                source, what = (("ch2bet", "brain"), ("ch2", "brain"), ("ch2", "head"))[i % 3]
                target = layers.brain if what == "brain" else layers.head
            else:
                source, cls = "ch2bet", (CSF, GM, WM)[i % 3]
                what, target = {CSF: "csf", GM: "gm", WM: "wm"}[cls], layers.tissue == cls
            image = layers.image_ch2bet if source == "ch2bet" else layers.image_ch2
            yield f"{source}_{what}_{axes[axis]}_{index:03d}", normalize_intensity(image, "MR"), target
    elif group == "parcels_synth":
        made, seed = 0, EVAL_SEED_BASE
        while made < count:
            value = HELD_OUT_VALUES[made % len(HELD_OUT_VALUES)]
            sample = engine.draw_held_out(seed, value, synthetic=True)
            seed += 1
            if sample is not None:
                made += 1
                yield f"synth_{seed}_{value}", sample["image"], sample["label"] > 0
    elif group == "lesions":
        for i in range(count):
            seed = EVAL_SEED_BASE + 10 ** 6 + i
            sample = engine.draw(seed, kind="lesion")
            yield f"lesion_{seed}", sample["image"], sample["label"] > 0
    else:
        raise ValueError(f"unknown group {group!r}; known: {GROUPS}")


def write_eval_set(engine: DataEngine, out: str, count: int = 48) -> Dict[str, int]:
    """Writes <out>/<group>/<name>.nii.gz and <out>/<group>/labels/final/<name>.nii.gz; returns counts."""
    counts = {}
    for group in GROUPS:
        folder = os.path.join(out, group)
        os.makedirs(os.path.join(folder, "labels", "final"), exist_ok=True)
        n = 0
        for name, image, target in group_samples(engine, group, count):
            nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), os.path.join(folder, f"{name}.nii.gz"))
            nib.save(nib.Nifti1Image(target.astype(np.uint8), np.eye(4)),
                     os.path.join(folder, "labels", "final", f"{name}.nii.gz"))
            n += 1
        counts[group] = n
    return counts
