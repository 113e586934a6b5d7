"""Curriculum Prompting's prompt generators: a box detector and an edge-point network, each a
SegFormer (MiT-b0 and its all-MLP decoder: lib/networks/mit.py) predicting maps of every named
structure (papers/curriculum-prompting.txt; REFERENCE.md).

The paper fine-tunes pretrained networks (Grounding DINO for boxes, HRNet for keypoints). Here the
pretrained weights are the app's own: both networks start from PE-MED's encoder and decoder, which
have learned this engine's images of every contrast (``init_from``). Started from scratch (MONAI's
UNet with CenterNet's box head), the detector found no structure in the few hundred steps a CPU
session gave it (mean box IoU 0.04: README). A request names one structure, one instance per
slice, so the detector needs no anchors, proposals or suppression (what ``monai.apps.detection``'s
RetinaNet spends its time on):

    head "box"    per name 1 map, the structure itself (soft Dice + BCE: every pixel of it teaches,
                  where CenterNet's peak is one pixel); the box bounds its most probable connected
                  part above probability 0.5 (else above half the peak), the score is the peak
    head "edges"  per name 8 heatmaps, one per edge point (lib/prompts/boxes.py defines them),
                  CenterNet's focal loss
Input: [image, name plane] (lib/networks/promise.py's layout) -> the named structure's maps
(B, K, S, S); or the image alone -> every name's maps (B, N * K, S, S), as training sees them (each
slice teaches every name: where it is, and that the absent ones are nowhere). Maps as logits.
"""

from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from scipy import ndimage
from torch import nn

from ..prompts.boxes import Box, box_of, edge_points, gaussian_heatmaps, heatmap_peaks
from ..prompts.clicks import Click
from .mit import SegFormer
from .promise import split_input

HEADS = {"box": 1, "edges": 8}
EDGE_SIGMA = 2.0  # pixels of the network's input (128 px)
HEAT_PRIOR = 4.6  # logits start near sigmoid(-4.6) = 0.01: CenterNet's prior that almost no pixel is a peak


class PromptHeatmapNet(nn.Module):
    in_channels = 2

    def __init__(self, names: Sequence[str], head: str, size: int = 128):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        self.names, self.head = list(names), head
        self.size = size  # the input (and map) side: 128 finds a nucleus of a 256-px slice, at 1/4 of 256's cost
        self.k = HEADS[head]
        self.net = SegFormer(1, self.k * len(self.names))

    def init_from(self, pemed: nn.Module) -> None:
        """Start from a PE-MED network's encoder and decoder (lib/checkpoint.py's load_checkpoint)."""
        self.net.init_from(pemed)

    def describe(self) -> dict:
        return {"type": "heatmaps", "names": self.names, "head": self.head, "size": self.size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, :1]
        maps = (self.net(image) - HEAT_PRIOR).view(image.shape[0], len(self.names), self.k, *image.shape[-2:])
        if x.shape[1] == 1:
            return maps.flatten(1, 2)
        return maps[torch.arange(image.shape[0], device=x.device), split_input(x)[1]]


def heatmap_targets(mask: np.ndarray, head: str) -> np.ndarray:
    """The (K, H, W) maps a network of ``head`` should give for this binary mask."""
    if head == "box":
        return mask[None].astype(np.float32)
    points = edge_points(mask)
    if not points:
        return np.zeros((8,) + mask.shape, np.float32)
    return gaussian_heatmaps([(p.row, p.col) for p in points], mask.shape, EDGE_SIGMA)


def all_heatmap_targets(classes: np.ndarray, n_names: int, head: str) -> np.ndarray:
    """A class map (k + 1 for the k-th name) -> every name's target maps (N * K, H, W), zeros for
    the names absent from it."""
    return np.concatenate([heatmap_targets(classes == k + 1, head) for k in range(n_names)])


def decode_box(logits: np.ndarray) -> Tuple[Box, float]:
    """A structure's (H, W) map (logits) -> the box of its most probable connected part, in the
    map's frame, and the peak probability."""
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    peak = float(p.max())
    parts, n = ndimage.label(p > 0.5 if peak > 0.5 else p >= peak / 2)
    if n > 1:
        parts = parts == 1 + int(np.argmax(ndimage.sum(p, parts, range(1, n + 1))))
    return box_of(parts > 0), peak


def decode_edges(maps: np.ndarray, positive: bool = False) -> List[Click]:
    """(8, H, W) heatmaps -> the 8 edge points, labelled ``positive``."""
    return [Click(r, c, positive) for r, c, _ in heatmap_peaks(maps)]


class HeatmapLoss(nn.Module):
    """The box head: soft Dice over the batch per name plus BCE. The edge head: CenterNet's
    penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of peaks."""

    def __init__(self, head: str):
        super().__init__()
        self.head = head
        self.dice = DiceLoss(sigmoid=True, batch=True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.float()
        if self.head == "box":  # (B, N, ...): each name a channel of the batch Dice
            return self.dice(pred, target) + F.binary_cross_entropy_with_logits(pred, target)
        p = torch.sigmoid(pred).clamp(1e-4, 1 - 1e-4)
        peak = (target > 0.99).float()
        pos = -((1 - p) ** 2) * torch.log(p) * peak
        neg = -((1 - target) ** 4) * (p ** 2) * torch.log(1 - p) * (1 - peak)
        return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)
