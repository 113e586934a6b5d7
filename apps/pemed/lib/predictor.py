"""Run a PE-MED network on one 2D image and a list of clicks, outside of any server.

The region the network sees (the whole image, or with zoom-in a box around the previous mask and
the clicks, as RITM does) is letterboxed to the network size: longest side resized to ``size``, then
padded symmetrically, as the training transforms do. Clicks are mapped into that frame and the output
back into the image frame. The caller keeps the previous logits (``Prediction.logits``, image frame)
and passes them to the next call: TSIP and the previous-mask channel read them.
"""

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .networks.pemed import PROMPT_CHANNELS, PEMEDNet, network_input
from .prompts.clicks import Click, disk_maps
from .refine import refine_probability
from .transforms.transforms import grown_span

BACKGROUND_LOGIT = -20.0  # previous logits where the network has not looked (padding, outside the zoom box)


@dataclass
class Letterbox:
    """Geometry of one image region (``height`` x ``width`` at ``top``, ``left``) in the network frame."""

    height: int
    width: int
    size: int
    top: int = 0
    left: int = 0
    corner: bool = False  # padded at the bottom and right only (LiteMedSAM's input), not centred

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def inner(self) -> Tuple[int, int]:
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    @property
    def offset(self) -> Tuple[int, int]:
        if self.corner:
            return 0, 0
        h, w = self.inner
        return (self.size - h) // 2, (self.size - w) // 2

    def to_network(self, click: Click) -> Click:
        (oy, ox), (h, w) = self.offset, self.inner
        row = min(h - 1, int((click.row - self.top + 0.5) * h / self.height))
        col = min(w - 1, int((click.col - self.left + 0.5) * w / self.width))
        return Click(row + oy, col + ox, click.positive)

    def contains(self, click: Click) -> bool:
        return self.top <= click.row < self.top + self.height and self.left <= click.col < self.left + self.width

    def image_to_network(self, image: torch.Tensor, fill: float = 0.0, nearest: bool = False) -> torch.Tensor:
        """(B, C, H_image, W_image) -> the region as (B, C, size, size), padded with ``fill``;
        ``nearest`` for label maps (no mixed classes)."""
        (oy, ox), (h, w) = self.offset, self.inner
        region = image[..., self.top:self.top + self.height, self.left:self.left + self.width]
        x = F.interpolate(region, size=(h, w), mode="nearest") if nearest else \
            F.interpolate(region, size=(h, w), mode="bilinear", align_corners=False)
        return F.pad(x, (ox, self.size - w - ox, oy, self.size - h - oy), value=fill)

    def whole(self, image_h: int, image_w: int) -> bool:
        return (self.top, self.left, self.height, self.width) == (0, 0, image_h, image_w)

    def grown(self, image_h: int, image_w: int, grow: float) -> "Letterbox":
        """The same centre, each side ``grow`` times longer, kept inside the image."""
        top, height = grown_span(self.top, self.top + self.height - 1, image_h, grow, 1)
        left, width = grown_span(self.left, self.left + self.width - 1, image_w, grow, 1)
        return Letterbox(height, width, self.size, top, left)

    def cuts(self, region_logits: torch.Tensor, image_h: int, image_w: int) -> bool:
        """Does the mask (``region_logits`` > 0, this box in the image frame) reach a side of the box
        that is not a side of the image? Then the object goes on outside the box."""
        fg = region_logits[0, 0] > 0
        return bool((self.top > 0 and fg[0].any()) or (self.left > 0 and fg[:, 0].any())
                    or (self.top + self.height < image_h and fg[-1].any())
                    or (self.left + self.width < image_w and fg[:, -1].any()))

    def network_to_image(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, size, size) -> the region, (B, C, height, width)."""
        (oy, ox), (h, w) = self.offset, self.inner
        return F.interpolate(x[..., oy:oy + h, ox:ox + w], size=(self.height, self.width), mode="bilinear",
                             align_corners=False)


ZOOM_EXPAND, ZOOM_MIN = 1.4, 0.4  # the zoom-in box: the mask and clicks' box grown 1.4x, >= 0.4 of the longer side


def zoom_box(clicks: Sequence[Click], prev_logits: torch.Tensor, shape: Tuple[int, int], size: int,
             expand: float = ZOOM_EXPAND, minimum: float = ZOOM_MIN, far: float = 0.0) -> Letterbox:
    """Zoom-in's view for a step after the first (RITM's ZoomIn): the bounding box of the previous mask
    (``prev_logits`` > 0, (1, 1, H, W) in the frame of ``shape``) and the clicks, grown ``expand``
    times, at least ``minimum`` of the longer side. ``far`` > 0: a newest positive click farther than
    ``far`` of the longer side from the mask says the object is larger than the mask, and the whole
    frame is shown. Serving and the training's click simulation both take their views from here."""
    h, w = shape
    fg = (prev_logits[0, 0] > 0).cpu().numpy()
    newest = clicks[-1]
    if far > 0 and newest.positive and fg.any() and not fg[newest.row, newest.col]:
        rows_fg, cols_fg = np.nonzero(fg)
        gap = np.sqrt(((rows_fg - newest.row) ** 2 + (cols_fg - newest.col) ** 2).min())
        if gap > far * max(h, w):
            return Letterbox(h, w, size)
    rows = [c.row for c in clicks] + ([int(r) for r in np.flatnonzero(fg.any(1))[[0, -1]]] if fg.any() else [])
    cols = [c.col for c in clicks] + ([int(c) for c in np.flatnonzero(fg.any(0))[[0, -1]]] if fg.any() else [])
    top, height = grown_span(min(rows), max(rows), h, expand, minimum * max(h, w))
    left, width = grown_span(min(cols), max(cols), w, expand, minimum * max(h, w))
    return Letterbox(height, width, size, top, left)


@dataclass
class Prediction:
    probability: np.ndarray  # (H, W) in the image frame, refined (what is shown and thresholded)
    logits: torch.Tensor  # (1, 1, H, W) in the image frame, the state for the next click
    timings_ms: Dict[str, float] = field(default_factory=dict)

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        return self.probability > threshold


# the settings the app serves with (and evaluate.py and the latency benchmark measure)
SERVE_DEFAULTS = {"zoom_in": True, "zoom_far": 0.05, "zoom_grow": 2, "refine_radius": 2, "refine_eps": 1e-4}


class PEMEDPredictor:
    """``trace=True`` runs a TorchScript trace of the network, frozen for inference: the input shape
    is fixed here (1 x C x size x size), and freezing folds and fuses operators, which made a click
    about 1.6x faster on a 2-core CPU (benchmarks/latency.py).

    ``zoom_in``: after the first click, the network sees the bounding box of the previous mask and
    the clicks, grown by ``zoom_expand`` and at least ``zoom_min`` of the image's longer side, so a
    small structure is segmented at a higher resolution (RITM's ZoomIn). ``zoom_far`` > 0: when the
    newest positive click lies farther from the previous mask than ``zoom_far`` times the image's longer
    side, the object is larger than the mask says, and the whole image is shown: a box that cuts
    through the object is a view training never shows (its crops hold the whole target with a margin).
    ``zoom_grow`` > 0: when the zoomed mask reaches a side of the box inside the image, the object goes
    on outside it: the box is grown twice as long per side and the step re-run, up to ``zoom_grow`` times.

    ``refine_radius`` > 0: the probability shown is pulled onto the image's edges by a guided filter
    (lib/refine.py) with ``refine_eps``, its radius ``refine_radius`` pixels per ``size`` pixels of the
    image's longer side, rounded up: the network's ramp widens with the image (lesions upsampled 2x: NoC@90 5.25
    at radius 2, 4.69 at 4). The logits kept for the next click stay the network's.
    """

    def __init__(self, network: PEMEDNet, device: str = "cpu", size: int = 256, trace: bool = True,
                 zoom_in: bool = False, zoom_expand: float = ZOOM_EXPAND, zoom_min: float = ZOOM_MIN, zoom_far: float = 0.0,
                 zoom_grow: int = 0, refine_radius: int = 0, refine_eps: float = 1e-4):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.size = size
        self.zoom_in, self.zoom_expand, self.zoom_min = zoom_in, zoom_expand, zoom_min
        self.zoom_far, self.zoom_grow = zoom_far, zoom_grow
        self.refine_radius, self.refine_eps = refine_radius, refine_eps
        self.image: Optional[torch.Tensor] = None  # (1, C, H, W), image frame
        self.guide: Optional[np.ndarray] = None  # (H, W), the refinement's guide
        self.run = self.network
        if trace:
            example = torch.zeros(1, network.in_channels + PROMPT_CHANNELS, size, size, device=self.device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.run = torch.jit.freeze(torch.jit.trace(self.network, example))
                for _ in range(3):  # the first calls of a frozen graph optimise it
                    self.run(example)

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.image.shape[-2:])

    def set_image(self, image: np.ndarray) -> None:
        """``image``: (H, W) or (C, H, W), intensities already normalised to about [0, 1]."""
        self.image, self.guide = self._as_input(image)

    def _as_input(self, image: np.ndarray) -> Tuple[torch.Tensor, np.ndarray]:
        """An image as the network's (1, C, H, W) tensor and the refinement's (H, W) guide."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3:
            raise ValueError(f"expected a 2D image, got shape {image.shape}")
        c = self.network.in_channels
        if image.shape[0] != c:
            if c == 1:
                image = image.mean(axis=0, keepdims=True)
            elif image.shape[0] == 1:
                image = np.repeat(image, c, axis=0)
            else:
                raise ValueError(f"the network takes {c} channels, the image has {image.shape[0]}")
        return torch.from_numpy(image)[None].to(self.device), image.mean(axis=0)

    def probability(self, logits: torch.Tensor, guide: Optional[np.ndarray] = None) -> np.ndarray:
        """The foreground probability shown for (1, 1, H, W) image-frame logits: sigmoid, then refined
        (on ``guide``, by default the current image's)."""
        guide = self.guide if guide is None else guide
        probability = torch.sigmoid(logits.float())[0, 0].cpu().numpy()
        return refine_probability(guide, probability, self.refine_radius_px(guide), self.refine_eps)

    def refine_radius_px(self, guide: Optional[np.ndarray] = None) -> int:
        """The refinement's radius in pixels of the current image (or ``guide``'s; 0: off)."""
        if self.refine_radius <= 0:
            return 0
        return math.ceil(self.refine_radius * max((self.guide if guide is None else guide).shape) / self.size)

    def region(self, clicks: Sequence[Click], prev_logits: Optional[torch.Tensor],
               shape: Optional[Tuple[int, int]] = None) -> Letterbox:
        """The whole image (of ``shape``, by default the current image's), or with zoom-in the box
        around the previous mask and the clicks."""
        h, w = shape or self.shape
        if not self.zoom_in or prev_logits is None:
            return Letterbox(h, w, self.size)
        return zoom_box(clicks, prev_logits, (h, w), self.size, self.zoom_expand, self.zoom_min, self.zoom_far)

    def _steps(self, jobs: Sequence["_Job"]) -> None:
        """The network's logits for each job's box (network frame), the jobs in one batch; each job's
        timings add up over re-runs and hold the whole batch's time."""
        t0 = time.perf_counter()
        images, maps, inputs = [], [], []
        for job in jobs:
            box = job.box
            maps.append(disk_maps([box.to_network(c) for c in job.clicks if box.contains(c)], (self.size, self.size),
                                  device=self.device)[None])
            images.append(box.image_to_network(job.image))
            prev = None if job.prev is None else box.image_to_network(job.prev, fill=BACKGROUND_LOGIT)
            inputs.append(network_input(images[-1], maps[-1], prev, self.network.prev_gain))
        t1 = time.perf_counter()
        logits = self.run(torch.cat(inputs))
        t2 = time.perf_counter()
        first = [i for i, job in enumerate(jobs) if job.prev is None] if self.network.self_loop else []
        if first:  # Self-Loop: M0 fed back as the previous mask with the same clicks
            again = self.run(torch.cat([network_input(images[i], maps[i], logits[i:i + 1]) for i in first]))
            logits = logits.clone()
            logits[first] = again
        t3 = time.perf_counter()
        for i, job in enumerate(jobs):
            job.logits = logits[i:i + 1]
            job.timings["clicks_ms"] = job.timings.get("clicks_ms", 0.0) + (t1 - t0) * 1e3
            job.timings["network_ms"] = job.timings.get("network_ms", 0.0) + (t2 - t1) * 1e3
            if job.prev is None and first:
                job.timings["self_loop_ms"] = (t3 - t2) * 1e3

    def _job(self, image: torch.Tensor, guide: np.ndarray, clicks: Sequence[Click],
             prev_logits: Optional[torch.Tensor]) -> "_Job":
        if not clicks:
            raise ValueError("at least one click is needed")
        h, w = image.shape[-2:]
        for c in clicks:
            if not (0 <= c.row < h and 0 <= c.col < w):
                raise ValueError(f"click ({c.row}, {c.col}) lies outside the {h}x{w} image")
        prev = None if prev_logits is None else prev_logits.to(self.device).float()
        return _Job(image, guide, list(clicks), prev)

    @torch.no_grad()
    def predict(self, clicks: Sequence[Click], prev_logits: Optional[torch.Tensor] = None) -> Prediction:
        """One interaction step on the current image. With no previous output and Self-Loop on, the
        net runs twice."""
        if self.image is None:
            raise RuntimeError("call set_image first")
        return self._predict([self._job(self.image, self.guide, clicks, prev_logits)])[0]

    @torch.no_grad()
    def predict_many(self, steps: Sequence[Tuple[np.ndarray, Sequence[Click], Optional[torch.Tensor]]]
                     ) -> List[Prediction]:
        """Independent interaction steps, each (image, clicks, previous logits), through the network
        in one batch: on a CPU two images in one call took 1.73x one image's time. The current image
        is left as it was."""
        return self._predict([self._job(*self._as_input(image), clicks, prev) for image, clicks, prev in steps])

    def _predict(self, jobs: List["_Job"]) -> List[Prediction]:
        for job in jobs:
            job.box = self.region(job.clicks, job.prev, job.shape)
        self._steps(jobs)
        for _ in range(self.zoom_grow):
            cut = [job for job in jobs if not job.box.whole(*job.shape)
                   and job.box.cuts(job.box.network_to_image(job.logits), *job.shape)]
            if not cut:
                break
            for job in cut:
                job.box = job.box.grown(*job.shape, 2.0)
            self._steps(cut)
        return [self._finish(job) for job in jobs]

    def _finish(self, job: "_Job") -> Prediction:
        """The job's logits pasted into the image frame (over its previous logits), and refined."""
        t3 = time.perf_counter()
        h, w = job.shape
        box = job.box
        full = job.prev.clone() if job.prev is not None else torch.full((1, 1, h, w), BACKGROUND_LOGIT,
                                                                          device=self.device)
        full[..., box.top:box.top + box.height, box.left:box.left + box.width] = box.network_to_image(job.logits)
        t4 = time.perf_counter()
        prob = self.probability(full, job.guide)
        job.timings["resample_ms"] = (t4 - t3) * 1e3
        job.timings["refine_ms"] = (time.perf_counter() - t4) * 1e3
        return Prediction(prob, full, job.timings)


@dataclass
class _Job:
    """One image's interaction step inside a predict call."""

    image: torch.Tensor  # (1, C, H, W), image frame
    guide: np.ndarray  # (H, W)
    clicks: List[Click]
    prev: Optional[torch.Tensor]  # (1, 1, H, W) logits, image frame
    box: Optional[Letterbox] = None
    logits: Optional[torch.Tensor] = None  # (1, 1, size, size), network frame, the box's
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.image.shape[-2:])
