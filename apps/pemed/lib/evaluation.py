"""The NoC protocol: run an interactive segmenter on a sample with simulated clicks and score it.

A segmenter here is anything with ``start(image)`` and ``step(clicks) -> probability (H, W)``;
the PE-MED predictor and the GrabCut baseline both fit. The clicker is the deterministic one from
``prompts.clicks``; scores are Dice (PE-MED's convention) and IoU (RITM's), both reported.
"""

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .prompts.clicks import DISK_RADIUS, Click, next_eval_click

DICE_AT = (1, 3, 5, 10, 20)
JITTER_DROP = 0.01


def dice(gt: np.ndarray, pred: np.ndarray) -> float:
    s = gt.sum() + pred.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(gt, pred).sum() / s)


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    u = np.logical_or(gt, pred).sum()
    return 1.0 if u == 0 else float(np.logical_and(gt, pred).sum() / u)


@dataclass
class SampleResult:
    name: str
    structure: str
    dice: List[float] = field(default_factory=list)  # after click 1..n
    iou: List[float] = field(default_factory=list)
    latency_ms: List[float] = field(default_factory=list)


def run_protocol(segmenter, image: np.ndarray, gt: np.ndarray, max_clicks: int = 20, name: str = "",
                 structure: str = "") -> SampleResult:
    """Click up to ``max_clicks`` times; after a perfect mask the score is carried forward."""
    gt = gt.astype(bool)
    result = SampleResult(name, structure)
    segmenter.start(image)
    pred = np.zeros_like(gt)
    clicks: List[Click] = []
    for _ in range(max_clicks):
        click = next_eval_click(gt, pred, clicks)
        if click is None:
            result.dice.append(result.dice[-1])
            result.iou.append(result.iou[-1])
            continue
        clicks.append(click)
        t0 = time.perf_counter()
        pred = segmenter.step(clicks) > 0.5
        result.latency_ms.append((time.perf_counter() - t0) * 1e3)
        result.dice.append(dice(gt, pred))
        result.iou.append(iou(gt, pred))
    return result


def noc(scores: Sequence[float], threshold: float) -> int:
    """The first click count whose score reaches ``threshold``; len(scores) if never."""
    for i, s in enumerate(scores):
        if s >= threshold:
            return i + 1
    return len(scores)


def summarize(results: Sequence[SampleResult], max_clicks: int) -> Dict:
    """The figures evaluate.py writes: NoC by Dice and IoU, Dice at k clicks, NoF, jitter, latency."""
    if not results:
        raise ValueError("no samples to summarize")
    d = np.array([r.dice for r in results])
    j = np.array([r.iou for r in results])
    drops = (np.diff(d, axis=1) < -JITTER_DROP).sum()
    steps = d.shape[0] * max(1, d.shape[1] - 1)
    lat = np.concatenate([r.latency_ms for r in results]) if any(r.latency_ms for r in results) else np.zeros(1)
    first = np.array([r.latency_ms[0] for r in results if r.latency_ms])
    later = np.concatenate([r.latency_ms[1:] for r in results]) if any(len(r.latency_ms) > 1 for r in results) else np.zeros(1)

    # each sample's NoC, by Dice and by IoU, computed once for the whole set and every structure
    nocs = {(score, t): np.array([noc(x, t) for x in scores]) for score, scores in (("dice", d), ("iou", j))
            for t in (0.85, 0.90)}

    def block(sel: np.ndarray) -> Dict:
        return {
            "n_samples": int(sel.sum()),
            "noc85": float(nocs["dice", 0.85][sel].mean()),
            "noc90": float(nocs["dice", 0.90][sel].mean()),
            "noc85_iou": float(nocs["iou", 0.85][sel].mean()),
            "noc90_iou": float(nocs["iou", 0.90][sel].mean()),
            "dice_at": {str(k): float(d[sel][:, k - 1].mean()) for k in DICE_AT if k <= max_clicks},
            "nof90": int(((nocs["dice", 0.90] == max_clicks) & (d[:, -1] < 0.90))[sel].sum()),
        }

    summary = block(np.ones(len(results), dtype=bool))
    summary.update({
        "max_clicks": max_clicks,
        "score": "dice (noc85, noc90, dice_at, nof90); iou for noc*_iou",
        "jitter": float(drops / steps),
        "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                       "first_click_p50": float(np.percentile(first, 50)) if first.size else None,
                       "later_clicks_p50": float(np.percentile(later, 50))},
        "dice_curve": [float(x) for x in d.mean(axis=0)],
    })
    structures = sorted(set(r.structure for r in results))
    summary["per_structure"] = {s: block(np.array([r.structure == s for r in results])) for s in structures}
    # each sample's own figures: two models compared sample by sample (a paired difference)
    summary["per_sample"] = [{"name": r.name, "structure": r.structure, "noc85": int(n85), "noc90": int(n90)}
                             for r, n85, n90 in zip(results, nocs["dice", 0.85], nocs["dice", 0.90])]
    return summary


class PredictorSegmenter:
    """Adapts PEMEDPredictor to the protocol: each step continues from the previous logits."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.prev = None

    def start(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)
        self.prev = None

    def step(self, clicks: Sequence[Click]) -> np.ndarray:
        out = self.predictor.predict(clicks, self.prev)
        self.prev = out.logits
        return out.probability


class GrabCutSegmenter:
    """OpenCV GrabCut seeded by the clicks: disks of the click radius as sure fore/background, and
    as probable foreground either the whole image inside a ``margin``-pixel frame of background
    (``init="image"``, GrabCut's usual start, which suits large objects) or the bounding box of the
    positive clicks grown by ``margin`` (``init="clicks"``, the project's earlier baseline, which
    suits small ones)."""

    def __init__(self, iterations: int = 5, margin: int = 15, radius: int = DISK_RADIUS, init: str = "image"):
        import cv2  # optional dependency, only this baseline needs it

        if init not in ("image", "clicks"):
            raise ValueError(f"init must be 'image' or 'clicks', got {init!r}")
        self.cv2 = cv2
        self.iterations, self.margin, self.radius, self.init = iterations, margin, radius, init
        self.image: Optional[np.ndarray] = None

    def start(self, image: np.ndarray) -> None:
        img = np.asarray(image, dtype=np.float32)
        if img.ndim == 3:
            img = img.mean(axis=0)
        img = np.clip(img * 255.0, 0, 255).astype(np.uint8)
        self.image = np.repeat(img[..., None], 3, axis=2)

    def step(self, clicks: Sequence[Click]) -> np.ndarray:
        cv2 = self.cv2
        h, w = self.image.shape[:2]
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        if self.init == "image":
            m = min(self.margin, h // 4, w // 4)
            mask[m:h - m, m:w - m] = cv2.GC_PR_FGD
        else:
            pos = [c for c in clicks if c.positive]
            rows, cols = [c.row for c in pos], [c.col for c in pos]
            r0, r1 = max(0, min(rows) - self.margin), min(h, max(rows) + self.margin + 1)
            c0, c1 = max(0, min(cols) - self.margin), min(w, max(cols) + self.margin + 1)
            mask[r0:r1, c0:c1] = cv2.GC_PR_FGD
        for c in clicks:
            cv2.circle(mask, (c.col, c.row), self.radius, int(cv2.GC_FGD if c.positive else cv2.GC_BGD), -1)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(self.image, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            pass  # degenerate seeds (e.g. no background left): keep the seeded mask
        return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


class RandomWalkerSegmenter:
    """scikit-image's random walker (Grady 2006) seeded by the clicks: disks of the click radius as
    foreground / background seeds, and the image border as background, so that a first positive
    click alone has something to walk against. Returns the foreground probability."""

    def __init__(self, beta: float = 130.0, radius: int = DISK_RADIUS):
        from skimage.segmentation import random_walker

        self.random_walker = random_walker
        self.beta, self.radius = beta, radius
        self.image: Optional[np.ndarray] = None

    def start(self, image: np.ndarray) -> None:
        img = np.asarray(image, dtype=np.float64)
        self.image = img.mean(axis=0) if img.ndim == 3 else img

    def step(self, clicks: Sequence[Click]) -> np.ndarray:
        h, w = self.image.shape
        seeds = np.zeros((h, w), np.int32)
        seeds[[0, -1], :] = 2
        seeds[:, [0, -1]] = 2
        yy, xx = np.ogrid[:h, :w]
        for c in clicks:
            seeds[(yy - c.row) ** 2 + (xx - c.col) ** 2 <= self.radius ** 2] = 1 if c.positive else 2
        if not (seeds == 1).any():
            return np.zeros((h, w), np.float32)
        prob = self.random_walker(self.image, seeds, beta=self.beta, mode="cg_j", tol=1e-3, return_full_prob=True)
        return np.clip(prob[0], 0.0, 1.0).astype(np.float32)
