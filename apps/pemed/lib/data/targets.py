"""Target kinds of the training-data engine: which region of a 2D slice a draw asks the model to segment.

Each kind is a function (slice, rng) -> boolean mask or None (nothing of that kind on this slice):
    parcel      one structure of one atlas (any of lib.data.atlases.ATLAS_FILES)
    union       a structure and 1-4 structures of the same atlas touching it
    region      an AAL lobe, per hemisphere or both, or the cerebellum; a cerebral hemisphere
    brain       the whole brain
    head        the whole head
    tissue      a tissue class inside the brain (CSF, grey or white matter)
    csf         one dark CSF space (a connected component of the CSF class: ventricles, sulci)
    (any of union, region and tissue, with probability ``component_prob``: one connected component of it)
    superpixel  Felzenszwalb superpixels of the final image, a random one and some neighbours, so any
                region bounded by edges is a target (as ScribblePrompt trains)
    lesion      a synthetic lesion (the engine paints it; see synth.place_lesions)
Held-out structures (the bundled model's evaluation set) are never a target nor a named part of a
union; the engine also rejects any target too similar to one of them (see engine.DataEngine).
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import felzenszwalb

from ..configs.labels import AAL_LABELS, LOBES
from .atlases import CSF, GM, WM

SPLITTABLE = ("union", "region", "tissue")
MIDLINE_X = 90  # Colin27 voxel index of world x = 0 (the affine's x offset is -90 mm at 1 mm)


def lobe_values(held_out: Sequence[int]) -> Dict[str, Dict[str, tuple]]:
    """{lobe: {"L": values, "R": values, "both": values}} without the held-out structures."""
    out = {}
    for lobe, prefixes in LOBES.items():
        names = [n for n in AAL_LABELS if n.startswith(prefixes) and AAL_LABELS[n] not in held_out]
        sides = {s: tuple(AAL_LABELS[n] for n in names if n.endswith("_" + s)) for s in ("L", "R")}
        sides["both"] = tuple(AAL_LABELS[n] for n in names)
        out[lobe] = sides
    return out


@dataclass
class SliceLayers:
    """One 2D slice of every map, with what the target kinds need to know about it."""

    image_ch2: np.ndarray
    image_ch2bet: np.ndarray
    brain: np.ndarray
    head: np.ndarray
    tissue: np.ndarray
    synth_labels: np.ndarray
    atlases: Dict[str, np.ndarray]
    left: np.ndarray  # bool: voxels of the left hemisphere (world x < 0)
    held_out: np.ndarray  # int: the held-out AAL structures, 0 elsewhere


def components(mask: np.ndarray, min_area: int):
    labelled, n = ndimage.label(mask)
    if n == 0:
        return []
    areas = ndimage.sum(mask, labelled, range(1, n + 1))
    return [labelled == i + 1 for i in range(n) if areas[i] >= min_area]


class TargetKinds:
    def __init__(self, held_out: Sequence[int], min_area: int = 40, exclude_held_out: bool = True,
                 component_prob: float = 0.25):
        self.held_out = tuple(int(v) for v in held_out) if exclude_held_out else ()
        self.min_area = min_area
        self.component_prob = component_prob
        self.lobes = lobe_values(self.held_out)
        self.kinds: Dict[str, Callable] = {
            "parcel": self.parcel, "union": self.union, "region": self.region, "brain": self.brain,
            "head": self.head, "tissue": self.tissue, "csf": self.csf,
        }

    def draw(self, kind: str, layers: SliceLayers, rng) -> Optional[np.ndarray]:
        """A target of ``kind`` on this slice (None if there is none); multi-part kinds sometimes
        give one connected component of it instead, chosen in proportion to its area."""
        mask = self.kinds[kind](layers, rng)
        if mask is not None and kind in SPLITTABLE and rng.random() < self.component_prob:
            parts = components(mask, self.min_area)
            if parts:
                areas = np.array([p.sum() for p in parts], dtype=float)
                mask = parts[int(rng.choice(len(parts), p=areas / areas.sum()))]
        return mask

    def _allowed(self, name: str, values: np.ndarray) -> np.ndarray:
        values = values[values > 0]
        return values[~np.isin(values, self.held_out)] if name == "aal" else values

    def _structures(self, layers: SliceLayers, rng) -> Optional[tuple]:
        name = str(rng.choice(sorted(layers.atlases)))
        atlas = layers.atlases[name]
        values, counts = np.unique(atlas, return_counts=True)
        keep = np.isin(values, self._allowed(name, values)) & (counts >= self.min_area)
        if not keep.any():
            return None
        return name, atlas, values[keep]

    def parcel(self, layers: SliceLayers, rng) -> Optional[np.ndarray]:
        found = self._structures(layers, rng)
        return None if found is None else found[1] == rng.choice(found[2])

    def union(self, layers: SliceLayers, rng) -> Optional[np.ndarray]:
        found = self._structures(layers, rng)
        if found is None:
            return None
        name, atlas, values = found
        mask = atlas == rng.choice(values)
        for _ in range(int(rng.integers(1, 5))):
            ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
            neighbours = self._allowed(name, np.unique(atlas[ring]))
            if neighbours.size == 0:
                break
            mask |= atlas == rng.choice(neighbours)
        return mask

    def region(self, layers: SliceLayers, rng) -> Optional[np.ndarray]:
        if rng.random() < 0.25:
            side = layers.left if rng.random() < 0.5 else ~layers.left
            return layers.brain & side
        lobe = str(rng.choice(sorted(self.lobes)))
        side = str(rng.choice(["L", "R", "both"]))
        return np.isin(layers.atlases["aal"], self.lobes[lobe][side])

    def brain(self, layers: SliceLayers, rng) -> np.ndarray:
        return layers.brain

    def head(self, layers: SliceLayers, rng) -> np.ndarray:
        return layers.head

    def tissue(self, layers: SliceLayers, rng) -> np.ndarray:
        return layers.tissue == rng.choice([CSF, GM, WM])

    def csf(self, layers: SliceLayers, rng) -> Optional[np.ndarray]:
        spaces = components(layers.tissue == CSF, self.min_area)
        if not spaces:
            return None
        areas = np.array([s.sum() for s in spaces], dtype=float)
        return spaces[int(rng.choice(len(spaces), p=areas / areas.sum()))]

    def superpixel(self, image: np.ndarray, rng) -> Optional[np.ndarray]:
        """A random Felzenszwalb segment of ``image`` not touching its border, and 0-3 neighbours."""
        segments = felzenszwalb(image, scale=float(rng.uniform(50, 500)), sigma=float(rng.uniform(0.3, 1.0)),
                                min_size=int(rng.integers(20, 120)))
        border = np.unique(np.concatenate([segments[0], segments[-1], segments[:, 0], segments[:, -1]]))
        values, counts = np.unique(segments, return_counts=True)
        ok = values[(counts >= self.min_area) & ~np.isin(values, border)]
        if ok.size == 0:
            return None
        mask = segments == rng.choice(ok)
        for _ in range(int(rng.integers(0, 4))):
            ring = ndimage.binary_dilation(mask) & ~mask
            neighbours = np.setdiff1d(np.unique(segments[ring]), border)
            if neighbours.size == 0:
                break
            mask |= segments == rng.choice(neighbours)
        return mask
