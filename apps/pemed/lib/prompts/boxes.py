"""Box and point prompts drawn from a mask, shared by training, serving and evaluation of the
SAM-based methods (lib/networks/sam.py). Coordinates are array indices (row, col) of the 2D image,
points are ``Click``s as everywhere in the app.

The 8 edge points (Curriculum Prompting's second stage; the paper leaves them undefined): for each
of 8 directions d_k at k x 45 degrees (0 = +col, 90 = +row), the mask pixel that reaches farthest
along d_k (the largest projection onto d_k), ties broken by the smallest distance to the ray from
the mask's centroid along d_k. So each point lies on the outline, at the mask's extreme in that
direction (DEXTR's 4 extreme points, with the diagonals added), and the 8 are defined for any
shape, convex or not, in one piece or several.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .clicks import Click

Box = Tuple[int, int, int, int]  # row0, col0, row1, col1, inclusive
N_EDGE_POINTS = 8
DIRECTIONS = np.array([(np.sin(a), np.cos(a)) for a in np.arange(N_EDGE_POINTS) * np.pi / 4])  # (d_row, d_col)


def box_of(mask: np.ndarray) -> Optional[Box]:
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two inclusive boxes (how well a detector found its target)."""
    rows = min(a[2], b[2]) - max(a[0], b[0]) + 1
    cols = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(rows, 0) * max(cols, 0)
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def jitter_box(box: Box, shape: Tuple[int, int], rng: np.random.Generator, noise: float = 0.1,
               max_px: float = 20.0) -> Box:
    """SAM's training box noise: each side moved by a normal draw of ``noise`` x the side's length,
    at most ``max_px`` pixels, kept inside the image."""
    r0, c0, r1, c1 = box
    h, w = r1 - r0 + 1, c1 - c0 + 1
    d = np.clip(rng.normal(0, noise, 4) * np.array([h, w, h, w]), -max_px, max_px)
    r0, r1 = sorted((int(np.clip(round(r0 + d[0]), 0, shape[0] - 1)), int(np.clip(round(r1 + d[2]), 0, shape[0] - 1))))
    c0, c1 = sorted((int(np.clip(round(c0 + d[1]), 0, shape[1] - 1)), int(np.clip(round(c1 + d[3]), 0, shape[1] - 1))))
    return r0, c0, r1, c1


def edge_points(mask: np.ndarray, positive: bool = False) -> List[Click]:
    """The 8 edge points of ``mask`` (module docstring), labelled ``positive``; [] for an empty mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return []
    pts = np.stack([rows, cols], 1).astype(float)
    rel = pts - pts.mean(0)
    out = []
    for d in DIRECTIONS:
        along = rel @ d
        off = np.abs(rel @ np.array([-d[1], d[0]]))
        best = np.flatnonzero(along >= along.max() - 0.5)
        i = best[np.argmin(off[best])]
        out.append(Click(int(rows[i]), int(cols[i]), positive))
    return out


def ground_truth_points(mask: np.ndarray, rng: np.random.Generator, n_positive: int = 8,
                        n_negative: int = 8) -> List[Click]:
    """ProMISe's GT-points mode: ``n_positive`` random pixels of the mask then ``n_negative`` of the
    background (with replacement when a side has fewer pixels)."""
    out = []
    for side, n, positive in ((mask, n_positive, True), (~mask.astype(bool), n_negative, False)):
        idx = np.flatnonzero(side)
        if idx.size == 0:
            continue
        for i in rng.choice(idx, size=n, replace=idx.size < n):
            r, c = np.unravel_index(int(i), mask.shape)
            out.append(Click(int(r), int(c), positive))
    return out


def gaussian_heatmaps(points: Sequence[Tuple[float, float]], shape: Tuple[int, int], sigma: float) -> np.ndarray:
    """(len(points), H, W) float32: a unit-peak Gaussian at each (row, col)."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    maps = np.zeros((len(points),) + tuple(shape), np.float32)
    for k, (r, c) in enumerate(points):
        maps[k] = np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma ** 2))
    return maps


def heatmap_peaks(maps: np.ndarray) -> List[Tuple[int, int, float]]:
    """(row, col, peak value) of each map's maximum."""
    out = []
    for m in maps:
        i = int(np.argmax(m))
        r, c = np.unravel_index(i, m.shape)
        out.append((int(r), int(c), float(m.flat[i])))
    return out
