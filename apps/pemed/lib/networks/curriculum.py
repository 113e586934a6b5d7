"""Curriculum Prompting's prompt generators: an edge-point network and a box detector, each a small
head on the foundation model's image embedding predicting maps of every named structure
(papers/curriculum-prompting.txt; REFERENCE.md). Served, the edge points give the first stage's box
too (their bounds: lib/automatic.py), which measured far better than the detector's box (mean IoU
0.44 against 0.18, docs/automatic.md); the detector stays for the paper's form.

The paper fine-tunes pretrained networks (Grounding DINO for boxes, HRNet for keypoints). Here the
pretrained part is the foundation model's frozen image encoder (LiteMedSAM's, trained on a million
medical images): its embedding (256 channels, 64 x 64 for LiteMedSAM) is computed once per slice
and cached (lib/foundation.py), so each head is a small U-Net on it (plus each pixel's position)
that trains on cached embeddings with no encoder pass. A head of three convolutions (a receptive
field of 7 embedding pixels) reached a validation Dice of 0.12: it could not tell a left structure
from its right twin, nor one gyrus from the next, without the whole slice in view. Before,
SegFormers on the image started from PE-MED's encoder found boxes of mean IoU 0.21 after about 4
hours of this CPU (docs/automatic.md). A request names one
structure, one instance per slice, so the detector needs no anchors, proposals or suppression:

    head "box"    per name 1 map, the structure itself (soft Dice + BCE: every pixel of it teaches,
                  where CenterNet's peak is one pixel); the box bounds its most probable connected
                  part above probability 0.5 (else above half the peak), the score is the peak
    head "edges"  per name 8 heatmaps, one per edge point (lib/prompts/boxes.py defines them),
                  CenterNet's focal loss
Input: the image embeddings (B, 256, E, E) -> every name's maps (B, N * K, S/2, S/2) as logits, S the
foundation model's input side, in its input frame (its letterbox); ``name_maps`` picks one name's
at the side S.
Each training slice teaches every name it says something about: where it is, and that the absent
ones are nowhere (a saved label that names some structures says nothing of the others: their
targets are -1, and the loss skips them). ``with_names`` grows a network by names learnt from
saved labels.
"""

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from scipy import ndimage
from torch import nn

from ..named_labels import appended_names
from ..prompts.boxes import Box, box_of, edge_points, gaussian_heatmaps

HEADS = {"box": 1, "edges": 8}
EDGE_SIGMA = 2.0  # pixels of the maps (128 px a side for a 256-px input)
UNET_MIN_SIDE = 32  # the trunk halves its input four times, and instance norm needs 2 x 2 at the bottom
HEAT_PRIOR = 4.6  # logits start near sigmoid(-4.6) = 0.01: CenterNet's prior that almost no pixel is a peak


def coordinate_planes(batch: int, side: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 2, side, side): each pixel's row and column in [-1, 1]. Convolutions see only a
    neighbourhood; where a structure lies in the letterbox (left or right of the midline, high or
    low) is what tells a left structure from its right twin."""
    line = torch.linspace(-1, 1, side, device=like.device, dtype=like.dtype)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    return torch.stack([rows, cols])[None].expand(batch, -1, -1, -1)


class PromptHeatmapNet(nn.Module):
    def __init__(self, names: Sequence[str], head: str, size: int = 256, channels: int = 256, width: int = 96):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {sorted(HEADS)}, got {head!r}")
        self.names, self.head = list(names), head
        self.size, self.channels, self.width = size, channels, width  # size: the foundation model's input side
        self.k = HEADS[head]
        # a U-Net down to 1/16 of the embedding's side: every output pixel sees the whole slice
        self.trunk = BasicUNet(spatial_dims=2, in_channels=channels + 2, out_channels=width,
                               features=(width, width, 128, 128, 192, width))
        self.out = nn.Conv2d(width, self.k * len(self.names), 1)

    @property
    def map_size(self) -> int:
        """The side of the maps it learns and predicts: half the input's (an edge point to 2 pixels)."""
        return self.size // 2

    def describe(self) -> dict:
        return {"type": "heatmaps", "names": self.names, "head": self.head, "size": self.size,
                "channels": self.channels, "width": self.width}

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, 256, E, E) -> every name's maps (B, N * K, M, M), M = ``map_size``."""
        side = max(UNET_MIN_SIDE, -(-embeddings.shape[-1] // 16) * 16)
        if side != embeddings.shape[-1]:  # a small foundation model's embedding (tests; pemed_sam_tiny)
            embeddings = F.interpolate(embeddings, size=(side, side), mode="bilinear", align_corners=False)
        x = torch.cat([embeddings, coordinate_planes(embeddings.shape[0], side, embeddings)], 1)
        logits = self.out(F.relu(self.trunk(x))) - HEAT_PRIOR
        return F.interpolate(logits, size=(self.map_size,) * 2, mode="bilinear", align_corners=False)

    def with_names(self, names: Sequence[str]) -> "PromptHeatmapNet":
        """This network for ``names`` (its own first, in its order, then new ones): the trunk and the
        known names' output channels as they are; a new name's channels start as the mean of the
        known names' (a structure somewhere, nowhere in particular), to be learnt from labels."""
        names = list(names)
        new = appended_names(self.names, names)
        if not new:
            return self
        grown = PromptHeatmapNet(names, self.head, self.size, self.channels, self.width)
        grown.trunk.load_state_dict(self.trunk.state_dict())
        old = len(self.names) * self.k
        with torch.no_grad():
            weight, bias = self.out.weight.view(len(self.names), self.k, -1), self.out.bias.view(len(self.names), self.k)
            grown.out.weight[:old] = self.out.weight
            grown.out.bias[:old] = self.out.bias
            grown.out.weight[old:] = weight.mean(0, keepdim=True).expand(new, -1, -1).reshape(new * self.k, -1, 1, 1)
            grown.out.bias[old:] = bias.mean(0, keepdim=True).expand(new, -1).reshape(-1)
        return grown.to(self.out.weight.device)

    def name_maps(self, embeddings: torch.Tensor, index: int) -> torch.Tensor:
        """One name's maps (B, K, S, S) at the input's side S."""
        maps = self.forward(embeddings)
        maps = maps.view(maps.shape[0], len(self.names), self.k, *maps.shape[-2:])[:, index]
        return F.interpolate(maps, size=(self.size, self.size), mode="bilinear", align_corners=False)


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


class HeatmapLoss(nn.Module):
    """The box head: soft Dice over the batch per name plus BCE. The edge head: CenterNet's
    penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of peaks. A target of -1
    marks a name the sample says nothing about (a saved label that names other structures): no loss."""

    def __init__(self, head: str):
        super().__init__()
        self.head = head

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.float()
        known = (target >= 0).float()
        target = target.clamp(min=0)
        if self.head == "box":  # (B, N, ...): each name a channel of the batch Dice
            p = torch.sigmoid(pred) * known
            dims = [0] + list(range(2, pred.ndim))
            inter, total = (p * target).sum(dims), (p + target).sum(dims)
            seen = known.sum(dims) > 0
            dice = 1 - (2 * inter + 1e-5) / (total + 1e-5)
            bce = F.binary_cross_entropy_with_logits(pred, target, weight=known, reduction="sum") / known.sum().clamp(min=1)
            return (dice[seen].mean() if seen.any() else pred.sum() * 0) + bce
        p = torch.sigmoid(pred).clamp(1e-4, 1 - 1e-4)
        peak = (target > 0.99).float()
        pos = -((1 - p) ** 2) * torch.log(p) * peak
        neg = -((1 - target) ** 4) * (p ** 2) * torch.log(1 - p) * (1 - peak) * known
        return (pos.sum() + neg.sum()) / peak.sum().clamp(min=1)
