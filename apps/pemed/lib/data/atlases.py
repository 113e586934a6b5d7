"""Every label map of Debian's mricron-data templates that can be placed on the Colin27 grid, and the
masks derived from Colin27's intensities: the raw material of the training-data engine.

Files used (all checked by their NIfTI affines, not by their names):
    ch2, ch2bet          Colin27 T1 with and without the skull, 181 x 217 x 181 at 1 mm (the grid)
    aal                  the hand-drawn AAL atlas, on that grid already (116 structures)
    brodmann             Brodmann areas, on that grid already
    natbrainlab, jhu189  MNI-space atlases on a 157 x 189 x 136 grid with x flipped
    JHU-WhiteMatter 1mm  white-matter tracts, MNI space, 182 x 218 x 182
    HarvardOxford cort   cortical max-probability atlas (thr 0), MNI space, x flipped
    AICHA                AICHA (2 mm, MNI space, x flipped)
The MNI-space maps go onto Colin27 by world coordinates (Colin27 is the MNI single-subject template)
with nearest-neighbour sampling. Left out: JHU-WhiteMatter 2mm (the 1 mm file, resampled); ch2better
(another rendering of the same subject's image, not a label map); and the inia19-* files, which
are kept for evaluation the project never sees and must not be read here.

Derived masks: the brain (ch2bet > 0), the head (ch2 above an Otsu threshold, holes filled), three
tissue classes inside the brain (CSF, grey, white matter) and three outside it (k-means on
intensity), which together make the label map SynthSeg-style contrasts are drawn from.
"""

import os
from dataclasses import dataclass
from typing import Dict, Tuple

import nibabel as nib
import numpy as np
from scipy import ndimage

DEFAULT_SRC = "/usr/share/mricron/templates"
GRID_FILE = "ch2.nii.gz"
IMAGE_FILES = {"ch2": "ch2.nii.gz", "ch2bet": "ch2bet.nii.gz"}
ATLAS_FILES = {
    "aal": "aal.nii.gz",
    "brodmann": "brodmann.nii.gz",
    "natbrainlab": "natbrainlab.nii.gz",
    "jhu189": "jhu189.nii.gz",
    "jhu_wm": "JHU-WhiteMatter-labels-1mm.nii.gz",
    "harvard_oxford": "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz",
    "aicha": "AICHAmc.nii.gz",
}
FORBIDDEN_PREFIX = "inia19"
MIN_INSIDE_HEAD = 0.95  # measured: every map used has > 99.9% of its labelled voxels inside the head

# Synthesis label values: tissue classes and the atlas structures refining them.
OUTSIDE_CLASSES = (1, 2, 3)  # head outside the brain, darkest to brightest
CSF, GM, WM = 10, 11, 12
PARCEL_OFFSET = 100  # grey or white matter inside AAL structure v -> 100 + v
TRACT_OFFSET = 300  # white matter inside JHU tract v -> 300 + v


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Sorted cluster centres of 1D intensities (Lloyd's algorithm from quantile starts)."""
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        nearest = np.abs(values[:, None] - centres[None]).argmin(axis=1)
        centres = np.array([values[nearest == i].mean() if (nearest == i).any() else centres[i] for i in range(k)])
    return np.sort(centres)


def classify(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.abs(values[:, None] - centres[None]).argmin(axis=1)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    return float(mids[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, n = ndimage.label(mask)
    if n <= 1:
        return mask
    return labelled == 1 + int(np.argmax(ndimage.sum(mask, labelled, range(1, n + 1))))


def resample_nearest(image: nib.Nifti1Image, shape: Tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """``image`` sampled at the voxel centres of the grid (shape, affine) by world coordinates."""
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    to_source = np.linalg.inv(image.affine) @ affine
    source = to_source[:3, :3] @ grid + to_source[:3, 3:4]
    data = np.asanyarray(image.dataobj)
    return ndimage.map_coordinates(data, source, order=0, mode="constant", cval=0).reshape(shape)


def on_grid(image: nib.Nifti1Image, shape, affine) -> np.ndarray:
    if image.shape[:3] == tuple(shape) and np.allclose(image.affine, affine, atol=1e-3):
        return np.asanyarray(image.dataobj)
    return resample_nearest(image, shape, affine)


@dataclass
class ColinMaps:
    """Everything on Colin27's 181 x 217 x 181 grid. Images are float32 in [0, 1]."""

    ch2: np.ndarray
    ch2bet: np.ndarray
    brain: np.ndarray  # bool
    head: np.ndarray  # bool
    tissue: np.ndarray  # uint8: 0 outside the brain, CSF, GM, WM
    synth_labels: np.ndarray  # int16: the label map contrasts are drawn from
    atlases: Dict[str, np.ndarray]  # name -> int16 label map

    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, ch2=self.ch2, ch2bet=self.ch2bet, brain=self.brain, head=self.head,
                            tissue=self.tissue, synth_labels=self.synth_labels,
                            **{f"atlas_{k}": v for k, v in self.atlases.items()})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "ColinMaps":
        with np.load(path) as z:
            atlases = {k[len("atlas_"):]: z[k] for k in z.files if k.startswith("atlas_")}
            return cls(z["ch2"], z["ch2bet"], z["brain"], z["head"], z["tissue"], z["synth_labels"], atlases)


def build_maps(src: str = DEFAULT_SRC) -> ColinMaps:
    files = [GRID_FILE, *IMAGE_FILES.values(), *ATLAS_FILES.values()]
    assert not any(f.startswith(FORBIDDEN_PREFIX) for f in files)
    missing = [f for f in files if not os.path.exists(os.path.join(src, f))]
    if missing:
        raise FileNotFoundError(f"missing {missing} in {src}: install Debian's mricron-data")
    grid = nib.load(os.path.join(src, GRID_FILE))
    shape, affine = grid.shape[:3], grid.affine
    images = {}
    for name, file in IMAGE_FILES.items():
        data = on_grid(nib.load(os.path.join(src, file)), shape, affine).astype(np.float32)
        images[name] = data / max(1.0, float(np.percentile(data, 99.9)))
    atlases = {name: on_grid(nib.load(os.path.join(src, file)), shape, affine).astype(np.int16)
               for name, file in ATLAS_FILES.items()}

    brain = images["ch2bet"] > 0
    head_values = images["ch2"][images["ch2"] > 0]
    head = images["ch2"] > 0.5 * otsu(head_values)
    head = ndimage.binary_closing(head, iterations=2)
    head = largest_component(head)
    for axis in range(3):  # fill the skull's inside slice by slice (the head is open at the neck)
        head = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(head, axis, 0)], axis=axis)
    head |= brain

    for name, atlas in atlases.items():  # a wrong affine would put a map partly outside the head
        inside = float((head & (atlas > 0)).sum() / max(1, (atlas > 0).sum()))
        if inside < MIN_INSIDE_HEAD:
            raise ValueError(f"{ATLAS_FILES[name]}: only {inside:.0%} of its labels fall inside Colin27's head")

    tissue = np.zeros(shape, np.uint8)
    inside = images["ch2bet"][brain]
    tissue[brain] = np.array([CSF, GM, WM], np.uint8)[classify(inside, kmeans_1d(inside, 3))]
    synth = np.zeros(shape, np.int16)
    outside = head & ~brain
    if outside.any():
        values = images["ch2"][outside]
        synth[outside] = np.array(OUTSIDE_CLASSES, np.int16)[classify(values, kmeans_1d(values, 3))]
    synth[brain] = tissue[brain]
    aal = atlases["aal"]
    parcel = brain & (aal > 0) & (tissue != CSF)
    synth[parcel] = PARCEL_OFFSET + aal[parcel]
    tract = brain & (atlases["jhu_wm"] > 0) & (tissue == WM)
    synth[tract] = TRACT_OFFSET + atlases["jhu_wm"][tract]
    return ColinMaps(images["ch2"], images["ch2bet"], brain, head, tissue, synth, atlases)


def load_maps(src: str = DEFAULT_SRC, cache: str = "") -> ColinMaps:
    """Built once (about 20 s), then read from ``cache`` (an .npz) when given."""
    if cache and os.path.exists(cache):
        return ColinMaps.load(cache)
    maps = build_maps(src)
    if cache:
        maps.save(cache)
    return maps
