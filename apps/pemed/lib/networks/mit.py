"""A SegFormer MiT-b0-style hierarchical transformer encoder and its all-MLP decoder.

Four stages produce features at 1/4, 1/8, 1/16 and 1/32 of the input. Each stage is an
overlapping patch embedding (a strided convolution) followed by transformer blocks whose
self-attention reduces the spatial size of keys and values ("efficient self-attention"), so the
1/4-resolution stage stays affordable on a CPU.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MiTConfig:
    widths: Tuple[int, ...] = (32, 64, 160, 256)
    depths: Tuple[int, ...] = (2, 2, 2, 2)
    heads: Tuple[int, ...] = (1, 2, 5, 8)
    sr_ratios: Tuple[int, ...] = (8, 4, 2, 1)
    patch_kernels: Tuple[int, ...] = (7, 3, 3, 3)
    patch_strides: Tuple[int, ...] = (4, 2, 2, 2)
    mlp_ratio: int = 4
    decoder_width: int = 256


class OverlapPatchEmbed(nn.Module):
    """Strided convolution + LayerNorm: image (B, C, H, W) -> tokens (B, C', H/s, W/s)."""

    def __init__(self, in_channels: int, width: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, width, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ReducedAttention(nn.Module):
    """Multi-head attention whose keys/values come from a spatially reduced copy of the context.

    With ``sr_ratio`` r the key/value grid is (H/r, W/r), so the cost is N * N / r^2 instead of N^2.
    Queries and context may differ (cross-attention) or be the same map (self-attention).
    """

    def __init__(self, width: int, heads: int, sr_ratio: int, scale: float = None):
        super().__init__()
        self.heads = heads
        self.scale = scale if scale is not None else (width // heads) ** -0.5
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(width, width, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(width)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """query, context: (B, C, H, W) maps of the same width; returns (B, C, Hq, Wq)."""
        b, c, h, w = query.shape
        q = self.q(query.flatten(2).transpose(1, 2))
        if self.sr_ratio > 1:
            context = self.sr(context)
            kv_tokens = self.sr_norm(context.flatten(2).transpose(1, 2))
        else:
            kv_tokens = context.flatten(2).transpose(1, 2)
        k, v = self.kv(kv_tokens).chunk(2, dim=-1)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, h * w, c)
        return self.proj(out).transpose(1, 2).reshape(b, c, h, w)


class MixFFN(nn.Module):
    """Linear -> 3x3 depth-wise conv (positional information) -> GELU -> Linear."""

    def __init__(self, width: int, ratio: int):
        super().__init__()
        hidden = width * ratio
        self.fc1 = nn.Conv2d(width, hidden, 1)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.dw(self.fc1(x))))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransformerBlock(nn.Module):
    def __init__(self, width: int, heads: int, sr_ratio: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = ChannelLayerNorm(width)
        self.attn = ReducedAttention(width, heads, sr_ratio)
        self.norm2 = ChannelLayerNorm(width)
        self.ffn = MixFFN(width, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.ffn(self.norm2(x))


class MiTStage(nn.Module):
    """One encoder stage: patch embedding, transformer blocks, final norm."""

    def __init__(self, in_channels: int, width: int, depth: int, heads: int, sr_ratio: int,
                 kernel: int, stride: int, mlp_ratio: int):
        super().__init__()
        self.embed = OverlapPatchEmbed(in_channels, width, kernel, stride)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, sr_ratio, mlp_ratio) for _ in range(depth))
        self.norm = ChannelLayerNorm(width)

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(self.embed(x))


class MiTEncoder(nn.Module):
    def __init__(self, in_channels: int, cfg: MiTConfig = MiTConfig()):
        super().__init__()
        chans = (in_channels,) + tuple(cfg.widths[:-1])
        self.stages = nn.ModuleList(
            MiTStage(chans[i], cfg.widths[i], cfg.depths[i], cfg.heads[i], cfg.sr_ratios[i],
                     cfg.patch_kernels[i], cfg.patch_strides[i], cfg.mlp_ratio)
            for i in range(4)
        )


class MLPDecoder(nn.Module):
    """SegFormer's all-MLP head: project each stage to one width, upsample to 1/4, fuse, predict.

    The fusion is a 1x1 convolution followed by a normalisation (BatchNorm) and ReLU.
    """

    def __init__(self, widths: Sequence[int], width: int, out_channels: int = 1):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(w, width, 1) for w in widths)
        self.fuse = nn.Sequential(nn.Conv2d(width * len(widths), width, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.predict = nn.Conv2d(width, out_channels, 1)

    def forward_reference(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """The textbook order: project, upsample, concatenate, fuse."""
        size = feats[0].shape[-2:]
        ups = [F.interpolate(p(f), size=size, mode="bilinear", align_corners=False) if i else p(f)
               for i, (p, f) in enumerate(zip(self.proj, feats))]
        return self.predict(self.fuse(torch.cat(ups, dim=1)))

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        """The same function, computed cheaply: the fusion conv's slice for each stage is folded into
        that stage's projection (two 1x1 convs compose into one) and applied before upsampling (1x1
        convs and bilinear upsampling commute), so no 1024-channel map is ever built at 1/4 size.
        This cuts the decoder's cost several-fold on a CPU."""
        size = feats[0].shape[-2:]
        fuse_conv = self.fuse[0]
        width = fuse_conv.out_channels
        fused = None
        for i, (p, f) in enumerate(zip(self.proj, feats)):
            w_fuse = fuse_conv.weight[:, i * width:(i + 1) * width, 0, 0]  # (width, width)
            weight = (w_fuse @ p.weight[:, :, 0, 0])[:, :, None, None]
            bias = w_fuse @ p.bias
            y = F.conv2d(f, weight, bias)
            if i:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        return self.predict(self.fuse[2](self.fuse[1](fused)))


class SegFormer(nn.Module):
    """The encoder and the all-MLP decoder on an image alone, ``out_channels`` maps at the input's
    size (the decoder's 1/4-resolution output upsampled). ``init_from`` copies a PE-MED network's
    encoder and decoder, whose weights have learned this app's images (all but the last 1 x 1 conv)."""

    def __init__(self, in_channels: int, out_channels: int, cfg: MiTConfig = MiTConfig()):
        super().__init__()
        self.encoder = MiTEncoder(in_channels, cfg)
        self.decoder = MLPDecoder(cfg.widths, cfg.decoder_width, out_channels)

    def init_from(self, pemed: nn.Module) -> None:
        state = {k: v for k, v in pemed.state_dict().items()
                 if k.startswith(("encoder.", "decoder.")) and not k.startswith("decoder.predict.")}
        try:
            missing, unexpected = self.load_state_dict(state, strict=False)
        except RuntimeError as e:  # a shape differs
            raise ValueError(f"the PE-MED network's encoder and decoder do not fit this SegFormer's: {e}") from e
        if unexpected or any(not k.startswith("decoder.predict.") for k in missing):
            raise ValueError("the PE-MED network's encoder and decoder do not fit this SegFormer's")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, f = [], x
        for stage in self.encoder.stages:
            f = stage(f)
            feats.append(f)
        return F.interpolate(self.decoder(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
