"""SynthSeg-style image synthesis in 2D (Billot et al., Medical Image Analysis 2023), and lesions.

An image is drawn from a label map (each label's intensity from its own random Gaussian), moved by
a random affine and a smooth elastic field, then degraded: bias field, random resolution (blur,
down- and up-sampling), noise or speckle, gamma. Every function takes a numpy Generator, so a draw
is reproducible from its seed. Images are float32; the engine normalises them as serving does.
"""

from typing import List, Tuple

import numpy as np
from scipy import ndimage

from .atlases import CSF, GM, PARCEL_OFFSET, TRACT_OFFSET, WM, largest_component

N_SYNTH_LABELS = TRACT_OFFSET + 256


def touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def smooth_field(rng: np.random.Generator, shape: Tuple[int, int], nodes: int, std: float) -> np.ndarray:
    """A smooth random field: Gaussian values on a coarse ``nodes`` x ``nodes`` grid, cubic zoom."""
    coarse = rng.normal(0.0, std, (nodes, nodes))
    return ndimage.zoom(coarse, (shape[0] / nodes, shape[1] / nodes), order=3, mode="nearest")[: shape[0], : shape[1]]


def gaussian_mixture_image(rng: np.random.Generator, labels: np.ndarray, skull_strip: bool) -> np.ndarray:
    """Each label's intensity from its own Gaussian. Atlas structures inside grey or white matter
    differ from their tissue's mean by a draw-wide jitter (from none to clearly visible), so
    images range from "only tissue edges" to "every parcel its own contrast"."""
    means = rng.uniform(0.0, 1.0, N_SYNTH_LABELS)
    stds = rng.uniform(0.0, 0.06, N_SYNTH_LABELS)
    jitter = rng.uniform(0.0, 0.12)
    means[PARCEL_OFFSET:TRACT_OFFSET] = means[GM] + rng.normal(0.0, jitter, TRACT_OFFSET - PARCEL_OFFSET)
    means[TRACT_OFFSET:] = means[WM] + rng.normal(0.0, jitter, N_SYNTH_LABELS - TRACT_OFFSET)
    if rng.random() < 0.7:  # most images have a dark background
        means[0], stds[0] = rng.uniform(0.0, 0.1), rng.uniform(0.0, 0.02)
    if skull_strip:  # a brain-extracted image: the head outside the brain is background
        means[1:CSF], stds[1:CSF] = means[0], stds[0]
    image = means[labels] + stds[labels] * rng.standard_normal(labels.shape)
    return ndimage.gaussian_filter(image, rng.uniform(0.0, 1.0)).astype(np.float32)


def random_warp(rng: np.random.Generator, shape: Tuple[int, int], strength: float = 1.0) -> np.ndarray:
    """Sampling coordinates (2, H, W) of a random affine (rotation, scaling, shear, shift) composed
    with a smooth elastic displacement, centred on the image."""
    h, w = shape
    angle = np.deg2rad(rng.uniform(-15, 15)) * strength
    scale = np.exp(rng.uniform(-0.15, 0.2, 2) * strength)
    shear = rng.uniform(-0.08, 0.08) * strength
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag(1.0 / scale)
    shift = rng.uniform(-0.05, 0.05, 2) * np.array(shape) * strength
    grid = np.indices(shape, dtype=np.float32).reshape(2, -1)
    centre = np.array([(h - 1) / 2, (w - 1) / 2])[:, None]
    coords = (matrix @ (grid - centre) + centre + shift[:, None]).reshape(2, h, w)
    nodes = int(rng.integers(3, 7))
    amplitude = rng.uniform(0.0, 0.02) * max(h, w) * strength
    return (coords + np.stack([smooth_field(rng, shape, nodes, amplitude) for _ in range(2)])).astype(np.float32)


def resize(array: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Linear resampling to exactly ``shape``, corners to corners."""
    axes = [np.linspace(0, s - 1, t, dtype=np.float32) for s, t in zip(array.shape, shape)]
    return ndimage.map_coordinates(array, np.meshgrid(*axes, indexing="ij"), order=1)


def warp(array: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    return ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0)


def degrade(rng: np.random.Generator, image: np.ndarray, real: bool = False) -> np.ndarray:
    """Bias field, random resolution, noise (Gaussian or ultrasound-like speckle) and gamma; milder
    on a real image, which already has its own."""
    image = np.clip(image, 0.0, None)
    if rng.random() < 0.6:
        image = image * np.exp(smooth_field(rng, image.shape, int(rng.integers(2, 5)), rng.uniform(0.0, 0.3)))
    if not real:
        if rng.random() < 0.4:  # a thick-slice or low-resolution acquisition along one axis
            axis = int(rng.integers(2))
            factor = rng.uniform(1.5, 4.0)
            zoom = [1.0, 1.0]
            zoom[axis] = 1.0 / factor
            small = ndimage.zoom(ndimage.gaussian_filter1d(image, factor / 2.5, axis=axis), zoom, order=1)
            image = resize(small, image.shape)
        image = ndimage.gaussian_filter(image, rng.uniform(0.0, 1.2))
    scale = float(np.percentile(image, 99)) or 1.0
    if not real and rng.random() < 0.15:  # speckle: multiplicative, spatially correlated
        speckle = ndimage.gaussian_filter(rng.gamma(rng.uniform(1.0, 4.0), 1.0, image.shape), 0.7)
        image = image * speckle / speckle.mean()
    else:
        image = image + rng.normal(0.0, rng.uniform(0.0, 0.06 if not real else 0.02) * scale, image.shape)
    image = np.clip(image / scale, 0.0, None)
    return (image ** np.exp(rng.normal(0.0, 0.3 if not real else 0.15))).astype(np.float32)


def lesion_mask(rng: np.random.Generator, shape: Tuple[int, int], centre: Tuple[int, int],
                radius_range: Tuple[float, float] = (3.0, 40.0)) -> np.ndarray:
    """A blob: an ellipse of random size, aspect and angle whose outline is bent by smooth noise."""
    radius = float(np.exp(rng.uniform(*np.log(radius_range))))
    a, b = radius, radius * rng.uniform(0.5, 1.0)
    angle = rng.uniform(0, np.pi)
    half = int(np.ceil(radius * 1.6)) + 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    level = (u / a) ** 2 + (v / b) ** 2 + smooth_field(rng, yy.shape, int(rng.integers(3, 6)), rng.uniform(0.0, 0.35))
    blob = level < 1.0
    labelled, n = ndimage.label(blob)
    if n > 1:
        blob = labelled == labelled[half, half] if labelled[half, half] else largest_component(blob)
    blob = ndimage.binary_fill_holes(blob)
    mask = np.zeros(shape, bool)
    r0, c0 = centre[0] - half, centre[1] - half
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(shape[0], r0 + blob.shape[0]), min(shape[1], c0 + blob.shape[1])
    mask[rs:re, cs:ce] = blob[rs - r0:re - r0, cs - c0:ce - c0]
    return mask


def paint_lesion(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Paint a lesion: brighter or darker than its surroundings, textured, a soft or sharp edge,
    sometimes a rim around a different core (cysts, necrotic tumours)."""
    ring = ndimage.binary_dilation(mask, iterations=3) & ~mask
    around = float(np.median(image[ring])) if ring.any() else float(np.median(image))
    spread = float(np.percentile(image, 99) - np.percentile(image, 1)) or 1.0
    level = around + rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * spread
    texture = 1.0 + smooth_field(rng, image.shape, int(rng.integers(6, 20)), rng.uniform(0.0, 0.15))
    inside = np.full(image.shape, level, np.float32) * texture
    if rng.random() < 0.25:
        core = ndimage.binary_erosion(mask, iterations=max(1, int(np.sqrt(mask.sum()) / 6)))
        inside[core] = around + rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.7) * spread
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), rng.uniform(0.3, 1.5))
    return (image * (1 - alpha) + inside * alpha).astype(np.float32)


def place_lesions(rng: np.random.Generator, image: np.ndarray, region: np.ndarray, count: int,
                  min_area: int) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Up to ``count`` non-overlapping lesions centred inside ``region``; returns the image and their masks."""
    masks: List[np.ndarray] = []
    taken = np.zeros(image.shape, bool)
    candidates = np.flatnonzero(region)
    for _ in range(4 * count):
        if len(masks) == count or candidates.size == 0:
            break
        centre = np.unravel_index(int(rng.choice(candidates)), image.shape)
        mask = lesion_mask(rng, image.shape, centre)
        if mask.sum() < min_area or touches_border(mask) or (mask & ndimage.binary_dilation(taken, iterations=2)).any():
            continue
        image = paint_lesion(rng, image, mask)
        taken |= mask
        masks.append(mask)
    return image, masks
