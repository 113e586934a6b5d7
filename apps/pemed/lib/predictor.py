"""Run a PE-MED network on one 2D image and a list of clicks, outside of any server.

The image is letterboxed to the network size (longest side resized to ``size``, then padded
symmetrically, as the training transforms do), clicks are mapped into that frame, and the output
is mapped back. The caller keeps the previous logits (``Prediction.logits``, network frame) and
passes them to the next call: that is what TSIP and the previous-mask channel read.
"""

import time
import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .networks.pemed import PROMPT_CHANNELS, PEMEDNet, network_prompts
from .prompts.clicks import Click, disk_maps


@dataclass
class Letterbox:
    """Geometry of one image in the network frame."""

    height: int
    width: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def inner(self) -> Tuple[int, int]:
        return max(1, round(self.height * self.scale)), max(1, round(self.width * self.scale))

    @property
    def offset(self) -> Tuple[int, int]:
        h, w = self.inner
        return (self.size - h) // 2, (self.size - w) // 2

    def to_network(self, click: Click) -> Click:
        (oy, ox), (h, w) = self.offset, self.inner
        row = min(h - 1, int((click.row + 0.5) * h / self.height))
        col = min(w - 1, int((click.col + 0.5) * w / self.width))
        return Click(row + oy, col + ox, click.positive)

    def image_to_network(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, size, size)."""
        (oy, ox), (h, w) = self.offset, self.inner
        x = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        return F.pad(x, (ox, self.size - w - ox, oy, self.size - h - oy))

    def network_to_image(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, size, size) -> (B, C, H, W)."""
        (oy, ox), (h, w) = self.offset, self.inner
        return F.interpolate(x[..., oy:oy + h, ox:ox + w], size=(self.height, self.width), mode="bilinear",
                             align_corners=False)


@dataclass
class Prediction:
    probability: np.ndarray  # (H, W) in the image frame
    logits: torch.Tensor  # (1, 1, size, size) in the network frame, the state for the next click
    timings_ms: Dict[str, float] = field(default_factory=dict)

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        return self.probability > threshold


class PEMEDPredictor:
    """``trace=True`` runs a TorchScript trace of the network, frozen for inference: the input shape
    is fixed here (1 x C x size x size), and freezing folds and fuses operators, which made a click
    about 1.6x faster on a 2-core CPU (benchmarks/latency.py)."""

    def __init__(self, network: PEMEDNet, device: str = "cpu", size: int = 256, trace: bool = True):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.size = size
        self.box: Optional[Letterbox] = None
        self.image: Optional[torch.Tensor] = None
        self.run = self.network
        if trace:
            example = torch.zeros(1, network.in_channels + PROMPT_CHANNELS, size, size, device=self.device)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.run = torch.jit.freeze(torch.jit.trace(self.network, example))
                for _ in range(3):  # the first calls of a frozen graph optimise it
                    self.run(example)

    def set_image(self, image: np.ndarray) -> None:
        """``image``: (H, W) or (C, H, W), intensities already normalised to about [0, 1]."""
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
        self.box = Letterbox(image.shape[1], image.shape[2], self.size)
        with torch.no_grad():
            self.image = self.box.image_to_network(torch.from_numpy(image)[None].to(self.device))

    def _forward(self, maps: torch.Tensor, prev_logits: Optional[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([self.image, network_prompts(maps[None], prev_logits)], dim=1)
        return self.run(x)

    @torch.no_grad()
    def predict(self, clicks: Sequence[Click], prev_logits: Optional[torch.Tensor] = None) -> Prediction:
        """One interaction step. With no previous output and Self-Loop on, the net runs twice."""
        if self.image is None:
            raise RuntimeError("call set_image first")
        if not clicks:
            raise ValueError("at least one click is needed")
        for c in clicks:
            if not (0 <= c.row < self.box.height and 0 <= c.col < self.box.width):
                raise ValueError(f"click ({c.row}, {c.col}) lies outside the {self.box.height}x{self.box.width} image")
        timings = {}
        t0 = time.perf_counter()
        maps = disk_maps([self.box.to_network(c) for c in clicks], (self.size, self.size), device=self.device)
        first = prev_logits is None
        prev = None if first else prev_logits.to(self.device).float()
        t1 = time.perf_counter()
        logits = self._forward(maps, prev)
        t2 = time.perf_counter()
        timings["clicks_ms"] = (t1 - t0) * 1e3
        timings["network_ms"] = (t2 - t1) * 1e3
        if first and self.network.self_loop:
            logits = self._forward(maps, logits)  # Self-Loop: M0 fed back as the previous mask
            timings["self_loop_ms"] = (time.perf_counter() - t2) * 1e3
        t3 = time.perf_counter()
        prob = torch.sigmoid(self.box.network_to_image(logits))[0, 0].cpu().numpy()
        timings["resample_ms"] = (time.perf_counter() - t3) * 1e3
        return Prediction(prob, logits, timings)
