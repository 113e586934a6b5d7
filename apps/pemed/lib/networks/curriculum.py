"""Curriculum Prompting's prompt generators: a box detector and an edge-point network, each a MONAI
UNet predicting heatmaps for a named structure (papers/curriculum-prompting.txt; REFERENCE.md).

The paper fine-tunes Grounding DINO (boxes) and HRNet (keypoints). Here both are CenterNet-style
heatmap networks on MONAI's 2D UNet: the app asks for one named structure per request, which is
one instance per slice, so a detector needs no anchors, no proposals and no suppression (what
``monai.apps.detection``'s RetinaNet spends its time on); a full-resolution heatmap finds a 10-pixel
nucleus as well as a lobe, and one network runs in tens of milliseconds on a CPU.

    head "box"    per name 3 maps: the box centre's heatmap, the box's height and width over the
                  input size (read at the peak)
    head "edges"  per name 8 heatmaps, one per edge point (lib/prompts/boxes.py defines them)
Input: [image, name plane] (lib/networks/promise.py's layout) -> the named structure's maps
(B, K, S, S); or the image alone -> every name's maps (B, N * K, S, S), as training sees them (each
slice teaches every name: where it is, and that the absent ones are nowhere). Heatmaps as logits.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from ..prompts.boxes import Box, box_of, edge_points, gaussian_heatmaps, heatmap_peaks
from ..prompts.clicks import Click
from .promise import split_input

HEADS = {"box": 3, "edges": 8}
CENTRE_SIGMA, EDGE_SIGMA = 2.0, 1.5  # pixels of the network's input (128 px)
HEAT_PRIOR = 4.6  # heatmap logits start near sigmoid(-4.6) = 0.01: CenterNet's prior that almost no pixel is a peak


class PromptHeatmapNet(nn.Module):
    in_channels = 2

    def __init__(self, names: Sequence[str], head: str, channels: Sequence[int] = (16, 32, 64, 128, 256),
                 size: int = 128):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        self.names, self.head, self.channels = list(names), head, tuple(channels)
        self.size = size  # the input (and heatmap) side: 128 finds a nucleus of a 256-px slice within 2 px, at 1/4 of 256's cost
        self.k = HEADS[head]
        self.unet = UNet(spatial_dims=2, in_channels=1, out_channels=self.k * len(self.names), channels=self.channels,
                         strides=(2,) * (len(self.channels) - 1), num_res_units=1)

    def describe(self) -> dict:
        return {"type": "heatmaps", "names": self.names, "head": self.head, "channels": list(self.channels),
                "size": self.size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, :1]
        maps = self.unet(image).view(image.shape[0], len(self.names), self.k, *image.shape[-2:])
        heat = 1 if self.head == "box" else self.k  # the box head's first map, or every edge map
        maps = torch.cat([maps[:, :, :heat] - HEAT_PRIOR, maps[:, :, heat:]], dim=2)
        if x.shape[1] == 1:
            return maps.flatten(1, 2)
        return maps[torch.arange(image.shape[0], device=x.device), split_input(x)[1]]


def heatmap_targets(mask: np.ndarray, head: str) -> np.ndarray:
    """The (K, H, W) maps a network of ``head`` should give for this binary mask."""
    if head == "box":
        box = box_of(mask)
        out = np.zeros((3,) + mask.shape, np.float32)
        if box is None:
            return out
        r0, c0, r1, c1 = box
        out[0] = gaussian_heatmaps([((r0 + r1) // 2, (c0 + c1) // 2)], mask.shape, CENTRE_SIGMA)[0]  # a pixel peaks at 1
        out[1], out[2] = (r1 - r0 + 1) / mask.shape[0], (c1 - c0 + 1) / mask.shape[1]
        return out
    points = edge_points(mask)
    if not points:
        return np.zeros((8,) + mask.shape, np.float32)
    return gaussian_heatmaps([(p.row, p.col) for p in points], mask.shape, EDGE_SIGMA)


def all_heatmap_targets(classes: np.ndarray, n_names: int, head: str) -> np.ndarray:
    """A class map (k + 1 for the k-th name) -> every name's target maps (N * K, H, W), zeros for
    the names absent from it."""
    return np.concatenate([heatmap_targets(classes == k + 1, head) for k in range(n_names)])


def decode_box(maps: np.ndarray) -> Tuple[Box, float]:
    """(3, H, W) maps (heatmap as logits) -> the box in the maps' frame and its peak probability."""
    (r, c, peak), = heatmap_peaks(maps[:1])
    h, w = max(1.0, maps[1, r, c] * maps.shape[1]), max(1.0, maps[2, r, c] * maps.shape[2])
    r0, r1 = int(round(r - (h - 1) / 2)), int(round(r + (h - 1) / 2))
    c0, c1 = int(round(c - (w - 1) / 2)), int(round(c + (w - 1) / 2))
    clip = lambda v, n: int(min(max(v, 0), n - 1))  # noqa: E731
    box = (clip(r0, maps.shape[1]), clip(c0, maps.shape[2]), clip(r1, maps.shape[1]), clip(c1, maps.shape[2]))
    return box, float(1 / (1 + np.exp(-peak)))


def decode_edges(maps: np.ndarray, positive: bool = False) -> List[Click]:
    """(8, H, W) heatmaps -> the 8 edge points, labelled ``positive``."""
    return [Click(r, c, positive) for r, c, _ in heatmap_peaks(maps)]


class HeatmapLoss(nn.Module):
    """CenterNet's penalty-reduced focal loss on the heatmaps (alpha 2, beta 4), normalised by the
    number of peaks; for the box head plus the L1 error of the size maps where the centre heatmap
    exceeds 0.5, weighted 5."""

    def __init__(self, head: str, size_weight: float = 5.0):
        super().__init__()
        self.head, self.size_weight = head, size_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = HEADS[self.head]  # every name's maps (B, N * K, ...) are N samples of K maps
        pred, target = pred.reshape(-1, k, *pred.shape[-2:]), target.reshape(-1, k, *target.shape[-2:])
        heat_p = pred[:, :1] if self.head == "box" else pred
        heat_t = target[:, :1] if self.head == "box" else target
        p = torch.sigmoid(heat_p.float()).clamp(1e-4, 1 - 1e-4)
        peak = (heat_t > 0.99).float()
        pos = -((1 - p) ** 2) * torch.log(p) * peak
        neg = -((1 - heat_t) ** 4) * (p ** 2) * torch.log(1 - p) * (1 - peak)
        loss = (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)
        if self.head == "box":
            near = (heat_t > 0.5).float()
            loss = loss + self.size_weight * (F.l1_loss(pred[:, 1:].float(), target[:, 1:], reduction="none")
                                              * near).sum() / near.sum().clamp(min=1) / 2
        return loss
