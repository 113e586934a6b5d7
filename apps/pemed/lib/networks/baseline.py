"""The papers' kind of baseline: a plain task-specific network, MONAI's 2D UNet segmenting every
named structure at once (softmax over background + one class per name), trained on the same labels,
at the same input size as Curriculum's detector (``size``)."""

from typing import Sequence

import torch
from monai.networks.nets import UNet
from torch import nn


class TaskUNet(nn.Module):
    in_channels = 1

    def __init__(self, names: Sequence[str], channels: Sequence[int] = (16, 32, 64, 128, 256), size: int = 128):
        super().__init__()
        self.names, self.channels, self.size = list(names), tuple(channels), size
        self.unet = UNet(spatial_dims=2, in_channels=1, out_channels=1 + len(self.names), channels=self.channels,
                         strides=(2,) * (len(self.channels) - 1), num_res_units=2)

    def describe(self) -> dict:
        return {"type": "task_unet", "names": self.names, "channels": list(self.channels), "size": self.size}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x[:, :1])
