"""3D from 2D: propagate a slice's segmentation through a volume, slice by slice.

The slices the user clicked on (anchors) are segmented from their clicks. From each anchor the
segmentation walks outwards in both directions: each next slice is prompted by its neighbour's
result, the neighbour's logits as the previous mask (the channel TSIP and the previous-mask input
read, as after a click) and up to five positive clicks spread over the neighbour's mask, away from
its edge. A walk stops where the structure ends (the mask vanishes, shrinks to a sliver of its
neighbour, no longer overlaps it, or covers tissue of another brightness than the anchor's mask),
where it leaks (grows past 2.5 times its neighbour), or halfway to the next anchor, which owns the
slices on its side (unless its own walk stops short). Beyond the outermost anchors, where no edge in
the image ends it (atlas parcels have none), a walk goes as far from the anchor as the anchor's mask is
wide: a structure is taken to be about as tall as it is wide until a click on another slice says
otherwise.
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
              slice_ratio: float = 1.0, extent: float = 1.0, max_batch: int = 8) -> Dict[int, SliceResult]:
    """Every slice reached from the anchors, the anchors included.

    ``slice_image(i)``: slice i, normalised as the predictor expects. A slice is kept while its mask
    has at least ``min_pixels`` pixels and between ``min_ratio`` and ``max_ratio`` times its
    neighbour's (a sudden growth is a leak into what lies next to the structure), and covers at
    least ``min_overlap`` of the neighbour's mask (the same structure, not one beside it), its mean
    (normalised) intensity within ``max_shift`` of the anchor mask's. Between two anchors each walk
    goes halfway to the other; where one stops short, the other goes on to where it stopped (one
    anchor's poor mask does not leave the gap empty). Beyond the outermost anchors a walk goes no farther than
    ``extent`` times the width of its anchor's mask (the diameter of a disk of its area), in slices
    ``slice_ratio`` times as thick as a pixel is wide. Up to ``max_batch`` slices go through the
    network at once."""
    results = dict(anchors)
    order = sorted(anchors)
    present = {a: anchors[a].mask.sum() >= min_pixels for a in order}

    def limit(anchor: int, other: Optional[int], direction: int) -> int:
        if other is None:
            reach = math.ceil(extent * 2 * math.sqrt(anchors[anchor].mask.sum() / math.pi) / slice_ratio)
            return min(n_slices - 1, anchor + reach) if direction > 0 else max(0, anchor - reach)
        return (anchor + other) // 2 if direction > 0 else (anchor + other) // 2 + 1

    walks: Dict[tuple, _Walk] = {}
    for i, anchor in enumerate(order):
        if not present[anchor]:
            continue
        brightness = float(slice_image(anchor)[anchors[anchor].mask].mean())
        for direction, other in ((1, order[i + 1] if i + 1 < len(order) else None),
                                 (-1, order[i - 1] if i > 0 else None)):
            walks[anchor, direction] = _Walk(anchors[anchor], anchor + direction, direction,
                                             limit(anchor, other, direction), brightness)

    def keep(walk: _Walk, image: np.ndarray, mask: np.ndarray) -> bool:
        area, kept = int(walk.previous.mask.sum()), int(mask.sum())
        return (max(min_pixels, min_ratio * area) <= kept <= max_ratio * area  # not vanished, a sliver or a leak
                and (mask & walk.previous.mask).sum() >= min_overlap * min(area, kept)  # not a structure beside it
                and abs(float(image[mask].mean()) - walk.brightness) <= max_shift)  # not other tissue

    _step_walks(predictor, slice_image, results, list(walks.values()), keep, max_batch)
    resumed = []
    for below, above in zip(order, order[1:]):
        up, down = walks.get((below, 1)), walks.get((above, -1))
        if up and down and up.stopped != down.stopped:
            going, stopped = (down, up) if up.stopped else (up, down)
            going.limit = stopped.index
            resumed.append(going)
    _step_walks(predictor, slice_image, results, resumed, keep, max_batch)
    return results


@dataclass
class _Walk:
    """One direction from one anchor: the last slice kept, the next slice, the last it may reach."""

    previous: SliceResult
    index: int
    direction: int
    limit: int
    brightness: float  # the anchor mask's mean intensity
    stopped: bool = False  # at a slice that failed a check, before its limit

    def inside(self) -> bool:
        return self.index <= self.limit if self.direction > 0 else self.index >= self.limit


def _step_walks(predictor: PEMEDPredictor, slice_image, results: Dict[int, SliceResult], walks: List[_Walk],
                keep: Callable, max_batch: int) -> None:
    """The walks step together (they own disjoint slices), their next slices through the network in
    batches, until each stops or reaches its limit."""
    walks = [w for w in walks if w.inside()]
    while walks:
        going = []
        for batch in range(0, len(walks), max_batch):
            chunk = walks[batch:batch + max_batch]
            images = [slice_image(w.index) for w in chunk]
            outs = predictor.predict_many([(image, interior_clicks(w.previous.mask), w.previous.logits)
                                           for w, image in zip(chunk, images)])
            for walk, image, out in zip(chunk, images, outs):
                mask = out.mask()
                if not keep(walk, image, mask):
                    walk.stopped = True
                    continue
                walk.previous = results[walk.index] = SliceResult(out.logits, mask)
                walk.index += walk.direction
                if walk.inside():
                    going.append(walk)
        walks = going


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
