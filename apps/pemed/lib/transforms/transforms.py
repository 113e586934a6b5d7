"""Transforms MONAI lacks: class-agnostic target selection, 2D slice picking, crops around the
target, channel matching and per-modality intensity normalisation built from MONAI's own transforms."""

import threading
from collections import OrderedDict
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (MapTransform, Randomizable, ScaleIntensityRanged, ScaleIntensityRangePercentilesd,
                              SpatialCrop, Transform)
from scipy import ndimage

CT_WINDOW = (-160.0, 240.0)  # abdominal soft-tissue window (HU)
MR_PERCENTILES = (0.5, 99.5)


AUTO = "auto"
MODALITY_TAGS = ("0008|0060", "00080060", "Modality")  # ITK's, pydicom's and plain keys for DICOM (0008,0060)
HU_AIR_PERCENTILE, HU_AIR_BELOW = 1.0, -500.0  # a CT image holds air (-1000 HU); no MR or photo goes below 0


def modality_from_meta(meta) -> Optional[str]:
    """The DICOM Modality tag of an image's metadata, if there is one."""
    for key in MODALITY_TAGS:
        value = (meta or {}).get(key)
        if isinstance(value, dict):  # pydicom's JSON model: {"vr": "CS", "Value": ["CT"]}
            value = (value.get("Value") or [None])[0]
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value:
            return str(value).strip().upper()
    return None


def detect_modality(image, meta=None) -> str:
    """"CT" or "MR" (the percentile normalisation every non-CT image gets), per image: the DICOM
    Modality tag where there is one, else the intensity range (Hounsfield units reach air's -1000)."""
    tag = modality_from_meta(meta if meta is not None else getattr(image, "meta", None))
    if tag:
        return "CT" if tag == "CT" else "MR"
    values = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    return "CT" if values.size and np.percentile(values, HU_AIR_PERCENTILE) < HU_AIR_BELOW else "MR"


def intensity_transform(modality: str, keys: KeysCollection = "image") -> Transform:
    """CT: a fixed HU window to [0, 1]; anything else (MR, photos, ultrasound): per-image percentiles;
    ``auto``: decided per image (detect_modality)."""
    if modality.lower() == AUTO:
        return NormalizeByModalityd(keys)
    if modality.upper() == "CT":
        return ScaleIntensityRanged(keys, a_min=CT_WINDOW[0], a_max=CT_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)
    return ScaleIntensityRangePercentilesd(keys, lower=MR_PERCENTILES[0], upper=MR_PERCENTILES[1], b_min=0.0,
                                           b_max=1.0, clip=True, relative=False)


class NormalizeByModalityd(MapTransform):
    """Each image normalised for its own modality, so a server holds CT and MR side by side."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = intensity_transform(detect_modality(d[key]), key)({key: d[key]})[key]
        return d


def normalize_intensity(image: np.ndarray, modality: str, meta=None) -> np.ndarray:
    """The same normalisation for a bare array (serving and evaluation); ``meta`` may hold the DICOM tag."""
    if modality.lower() == AUTO:
        modality = detect_modality(image, meta)
    return np.asarray(intensity_transform(modality, "image")({"image": torch.as_tensor(image, dtype=torch.float32)})["image"],
                      dtype=np.float32)


class MatchChannelsd(MapTransform):
    """Make a channel-first image have ``channels`` channels: RGB -> grey by averaging, grey -> RGB by repeating."""

    def __init__(self, keys: KeysCollection, channels: int):
        super().__init__(keys)
        self.channels = channels

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] == self.channels:
                continue
            if self.channels == 1:
                d[key] = img[:3].mean(dim=0, keepdim=True) if isinstance(img, torch.Tensor) else img[:3].mean(0, keepdims=True)
            elif img.shape[0] == 1:
                d[key] = img.repeat(self.channels, *([1] * (img.ndim - 1)))
            else:
                raise ValueError(f"cannot map {img.shape[0]} channels to {self.channels}")
        return d


def annotated_axis(labelled: np.ndarray) -> Optional[int]:
    """The axis a label was drawn along slice by slice, if it was: the one along which its voxels
    lie on at most a third as many slices as along the next (one slice drawn in OHIF: 1 against
    the structure's extent). Slices across it would show lines of label in unlabelled surroundings."""
    counts = [int((labelled.sum(axis=tuple(a for a in range(3) if a != axis)) > 0).sum()) for axis in range(3)]
    order = np.argsort(counts)
    return int(order[0]) if counts[order[0]] > 0 and 3 * counts[order[0]] <= counts[order[1]] else None


class Memoized:
    """A deterministic transform's result per item (by its image and label paths), the last ``size``
    kept: a saved volume is read, named and normalised once per run, not once per slice drawn from
    it (behind a random choice of source, MONAI's CacheDataset caches nothing)."""

    def __init__(self, transform, size: int = 8):
        self.transform, self.size = transform, size
        self._cache: "OrderedDict[tuple, dict]" = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, data):
        key = (str(data.get("image")), str(data.get("label")))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return dict(self._cache[key])
        out = self.transform(data)
        with self._lock:
            self._cache[key] = out
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return dict(out)


class RandStructureSliced(Randomizable, MapTransform):
    """From a channel-first 3D image/label pair, keep one 2D slice (random axis; the annotated axis
    of a label drawn slice by slice) that holds at least one allowed structure; 2D pairs pass
    through unchanged."""

    def __init__(self, keys: KeysCollection, label_key: str = "label", exclude: Iterable[int] = (), min_area: int = 30):
        super().__init__(keys)
        self.label_key = label_key
        self.exclude = np.asarray(sorted(set(exclude)), dtype=np.int64)
        self.min_area = min_area

    def __call__(self, data):
        d = dict(data)
        label = np.asarray(d[self.label_key])
        if label.ndim != 4:
            return d
        allowed = (label[0] > 0) & ~np.isin(label[0], self.exclude)
        axis = annotated_axis(label[0] > 0)
        axis = int(self.R.randint(3)) if axis is None else axis
        areas = allowed.sum(axis=tuple(a for a in range(3) if a != axis))
        candidates = np.flatnonzero(areas >= self.min_area)
        if candidates.size == 0:
            candidates = np.flatnonzero(areas > 0) if areas.any() else np.arange(label.shape[axis + 1])
        index = int(self.R.choice(candidates))
        for key in self.key_iterator(d):
            d[key] = d[key].select(axis + 1, index) if isinstance(d[key], torch.Tensor) else np.take(d[key], index, axis=axis + 1)
        return d


class SelectStructured(Randomizable, MapTransform):
    """Turn a multi-label map into one binary target, class-agnostically.

    A random allowed structure present with at least ``min_area`` pixels; with probability
    ``union_prob`` its allowed neighbours (structures touching it in this slice) join it, so the
    model also learns targets that are unions of structures. Excluded values (the held-out
    evaluation structures) are never targets and never join a union.
    """

    def __init__(self, keys: KeysCollection = "label", exclude: Iterable[int] = (), union_prob: float = 0.25,
                 min_area: int = 30):
        super().__init__(keys)
        self.exclude = set(int(v) for v in exclude)
        self.union_prob = union_prob
        self.min_area = min_area

    def choose(self, label: np.ndarray) -> Sequence[int]:
        values, counts = np.unique(label, return_counts=True)
        ok = [(int(v), int(c)) for v, c in zip(values, counts) if v > 0 and int(v) not in self.exclude]
        if not ok:
            return []
        big = [v for v, c in ok if c >= self.min_area] or [v for v, _ in ok]
        target = int(self.R.choice(big))
        chosen = [target]
        if self.R.rand() < self.union_prob:
            ring = ndimage.binary_dilation(label == target, iterations=2) & (label != target)
            neighbours = sorted(set(int(v) for v in np.unique(label[ring])) - {0} - self.exclude)
            if neighbours:
                n = int(self.R.randint(1, min(2, len(neighbours)) + 1))
                chosen += [int(v) for v in self.R.choice(neighbours, size=n, replace=False)]
        return chosen

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            lab = d[key]
            arr = np.asarray(lab.detach().cpu() if isinstance(lab, torch.Tensor) else lab).round().astype(np.int64)
            chosen = self.choose(arr)
            binary = np.isin(arr, chosen).astype(np.float32)
            d[key] = torch.as_tensor(binary) if not isinstance(lab, torch.Tensor) else lab.new_tensor(binary)
        return d


def grown_span(lo: int, hi: int, limit: int, grow: float, minimum: float, shift: float = 0.0) -> Tuple[int, int]:
    """(start, length) of the span [lo, hi] grown ``grow`` times, at least ``minimum`` long, its centre
    moved by ``shift`` of its length, kept inside [0, limit): the zoom-in box along one axis, shared
    by the predictor and the training crops."""
    length = int(round(min(limit, max(minimum, (hi - lo + 1) * grow))))
    start = int(min(max(0, round((lo + hi) / 2 + shift * length - length / 2)), limit - length))
    return start, length


class RandCropAroundTargetd(Randomizable, MapTransform):
    """With probability ``prob``, crop a 2D image/target pair to a box around the target, as the
    predictor's zoom-in does after the first click: the target's bounding box grown by a random
    factor in ``expand``, at least a random fraction ``min_fraction`` of the image's longer side,
    its centre shifted by up to ``shift`` of its size, clipped to the image. The later resize to
    the network size then shows small structures at the scale zoom-in serves them at."""

    def __init__(self, keys: KeysCollection, label_key: str = "label", prob: float = 0.5,
                 expand: Tuple[float, float] = (1.2, 2.2), min_fraction: Tuple[float, float] = (0.2, 0.5),
                 shift: float = 0.1):
        super().__init__(keys)
        self.label_key = label_key
        self.prob, self.expand, self.min_fraction, self.shift = prob, expand, min_fraction, shift

    def box(self, target: np.ndarray) -> Optional[Tuple[Tuple[int, int], Tuple[int, int]]]:
        """(start, end) per axis, or None to keep the whole image."""
        if self.R.rand() >= self.prob or not target.any():
            return None
        grow = self.R.uniform(*self.expand)
        minimum = self.R.uniform(*self.min_fraction) * max(target.shape)
        starts, ends = [], []
        for axis, limit in enumerate(target.shape):
            present = np.flatnonzero(target.any(axis=1 - axis))
            shift = self.R.uniform(-self.shift, self.shift)
            start, length = grown_span(int(present[0]), int(present[-1]), limit, grow, minimum, shift)
            starts.append(start)
            ends.append(start + length)
        return tuple(starts), tuple(ends)

    def __call__(self, data):
        d = dict(data)
        label = d[self.label_key]
        target = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)[0] > 0
        box = self.box(target)
        if box is None:
            return d
        crop = SpatialCrop(roi_start=box[0], roi_end=box[1])
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        return d
