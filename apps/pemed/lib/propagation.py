"""3D from 2D: propagate a slice's segmentation through a volume, slice by slice.

The slices the user clicked on (anchors) are segmented from their clicks. From each anchor the
segmentation walks outwards in both directions: each next slice is prompted by its neighbour's
result, the neighbour's logits as the previous mask (the channel TSIP and the previous-mask input
read, as after a click) and up to five positive clicks spread over the neighbour's mask, away from
its edge. A walk stops where the structure ends (the mask vanishes, shrinks to a sliver of its
neighbour, no longer overlaps it, or covers tissue of another brightness than the anchor's mask),
where it leaks (grows past 2.5 times its neighbour), halfway to the next anchor, which owns the slices on its side,
or, where no edge in the image ends it (atlas parcels have none), as far from the anchor as the
anchor's mask is wide: a structure is taken to be about as tall as it is wide until a click on
another slice says otherwise.
"""

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from .predictor import PEMEDPredictor
from .prompts.clicks import Click, _padded_edt


@dataclass
class SliceResult:
    logits: torch.Tensor  # (1, 1, H, W), the network's, the next slice's previous mask
    mask: np.ndarray  # (H, W) bool, refined, what is shown


def interior_clicks(mask: np.ndarray, n: int = 5, min_depth: float = 2.0) -> List[Click]:
    """Up to ``n`` positive clicks spread over the mask: each at the point farthest from the edge of
    what is left once the earlier clicks' circles (half as wide as the mask is deep there) are taken
    out, while that point lies ``min_depth`` pixels deep."""
    remaining, clicks = mask.copy(), []
    rows, cols = np.indices(mask.shape)
    for _ in range(n):
        depth = _padded_edt(remaining)
        row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
        if depth[row, col] < (min_depth if clicks else 0.5):
            break
        clicks.append(Click(int(row), int(col), True))
        remaining &= (rows - row) ** 2 + (cols - col) ** 2 > (depth[row, col] / 2) ** 2
    return clicks


def propagate(predictor: PEMEDPredictor, slice_image: Callable[[int], np.ndarray], n_slices: int,
              anchors: Dict[int, SliceResult], min_pixels: int = 10, min_ratio: float = 0.2,
              max_ratio: float = 2.5, min_overlap: float = 0.5, max_shift: float = 0.15,
              slice_ratio: float = 1.0, extent: float = 1.0) -> Dict[int, SliceResult]:
    """Every slice reached from the anchors, the anchors included.

    ``slice_image(i)``: slice i, normalised as the predictor expects. A slice is kept while its mask
    has at least ``min_pixels`` pixels and between ``min_ratio`` and ``max_ratio`` times its
    neighbour's (a sudden growth is a leak into what lies next to the structure), and covers at
    least ``min_overlap`` of the neighbour's mask (the same structure, not one beside it), its mean
    (normalised) intensity within ``max_shift`` of the anchor mask's, and no
    farther from the anchor than ``extent`` times the width of the anchor's mask (the diameter of a
    disk of its area), in slices ``slice_ratio`` times as thick as a pixel is wide."""
    results = dict(anchors)
    order = sorted(anchors)
    for i, anchor in enumerate(order):
        reach = math.ceil(extent * 2 * math.sqrt(anchors[anchor].mask.sum() / math.pi) / slice_ratio)
        lower = max(anchor - reach, (order[i - 1] + anchor) // 2 + 1 if i > 0 else 0)
        upper = min(anchor + reach, (anchor + order[i + 1]) // 2 if i + 1 < len(order) else n_slices - 1)
        mask = anchors[anchor].mask
        brightness = float(slice_image(anchor)[mask].mean()) if mask.any() else 0.0
        for direction, limit in ((1, upper), (-1, lower)):
            _walk(predictor, slice_image, results, anchor, direction, limit, min_pixels, min_ratio, max_ratio,
                  min_overlap, brightness, max_shift)
    return results


def _walk(predictor, slice_image, results, start, direction, limit, min_pixels, min_ratio, max_ratio,
          min_overlap, brightness, max_shift) -> None:
    previous = results[start]
    index = start + direction
    while (index <= limit) if direction > 0 else (index >= limit):
        area = int(previous.mask.sum())
        if area < min_pixels:
            return
        image = slice_image(index)
        predictor.set_image(image)
        out = predictor.predict(interior_clicks(previous.mask), previous.logits)
        mask = out.mask()
        kept = int(mask.sum())
        if not max(min_pixels, min_ratio * area) <= kept <= max_ratio * area:
            return
        if (mask & previous.mask).sum() < min_overlap * min(area, kept):
            return
        if abs(float(image[mask].mean()) - brightness) > max_shift:
            return
        previous = results[index] = SliceResult(out.logits, mask)
        index += direction


def to_volume(results: Dict[int, SliceResult], shape: Sequence[int], axis: int) -> np.ndarray:
    """The slices' masks stacked into a (uint8) volume of ``shape``, slices taken along ``axis``."""
    volume = np.zeros(shape, dtype=np.uint8)
    moved = np.moveaxis(volume, axis, 0)  # a view: writing into it writes the volume
    for index, result in results.items():
        moved[index] = result.mask
    return volume


def segment_anchor(predictor: PEMEDPredictor, image: np.ndarray, clicks: Sequence[Click],
                   prev_logits: Optional[torch.Tensor]) -> SliceResult:
    """One clicked slice: its clicks on top of its previous result (or from scratch)."""
    predictor.set_image(image)
    out = predictor.predict(list(clicks), prev_logits)
    return SliceResult(out.logits, out.mask())
