"""ProMISe: a frozen SAM-architecture model prompted by itself (papers/promise.txt; REFERENCE.md).

    Auto-Prompting Module (APM): the encoder's intermediate features (the spec's ``apm_blocks``, for
        ViT-B blocks 6, 9 and 12) concatenated -> two 3x3 convolutions down to 256 channels -> a
        ResNet-34-style trunk (MONAI's ResNet, basic blocks 3-4-6-3, at half ResNet-34's widths so it
        trains on a CPU) -> global pooling -> 2N values -> sigmoid x input size: N point coordinates,
        the first N/2 positive and the rest negative (fixed labels; N = 16)
    Incremental Pattern Shifting (IPS): the image embedding's global average (256) -> Linear 256 ->
        1024 -> GELU -> Linear 1024 -> 1024 -> 4 x 256, added to the mask decoder's 4 mask tokens
    the foundation model's prompt encoder and mask decoder turn the points and the shifted tokens
        into the mask; gradients reach the APM and IPS through them, never change them.

The app segments structures by name, so one ProMISe serves several: a learned embedding of the
name (its index in ``names``) is added to the APM's 256-channel features and to IPS's input. The
network's input is one tensor [image, name plane] (B, 2, S, S), the name's index filling the second
channel, so MONAI's engines and inferers feed it like any image. Output: mask logits (B, 1, S, S).
``points_from``: "apm" (the module's own points) or given points (the GT-points mode).
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn

from ..named_labels import appended_names
from .sam import PromptableSAM, decode, encode

N_POINTS = 16
WIDTH = 256


def split_input(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """[image, name plane] -> (image (B, 1, S, S), name indices (B,))."""
    return x[:, :1], x[:, 1, 0, 0].round().long()


def with_name(image: torch.Tensor, index: int) -> torch.Tensor:
    """(B, 1, S, S) image -> the [image, name plane] input for structure ``index``."""
    return torch.cat([image, torch.full_like(image, float(index))], dim=1)


def point_labels(batch: int, n_points: int = N_POINTS, device=None) -> torch.Tensor:
    labels = torch.zeros(batch, n_points, device=device)
    labels[:, : n_points // 2] = 1
    return labels


class AutoPromptingModule(nn.Module):
    def __init__(self, feature_widths: Sequence[int], n_names: int, img_size: int, n_points: int = N_POINTS,
                 box: bool = False):
        super().__init__()
        self.img_size, self.n_points, self.box = img_size, n_points, box
        self.reduce = nn.Sequential(
            nn.Conv2d(sum(feature_widths), WIDTH, 3, padding=1), nn.BatchNorm2d(WIDTH), nn.ReLU(inplace=True),
            nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.BatchNorm2d(WIDTH), nn.ReLU(inplace=True))
        self.name_embed = nn.Embedding(n_names, WIDTH)
        self.trunk = ResNet(block="basic", layers=(3, 4, 6, 3), block_inplanes=(32, 64, 128, 256), spatial_dims=2,
                            n_input_channels=WIDTH, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True,
                            num_classes=2 * n_points + 4 * box)

    def forward(self, features: Sequence[torch.Tensor], names: torch.Tensor) -> torch.Tensor:
        """Block outputs (B, F, F, width) each -> points (B, N, 2) as SAM's (x, y) in the input frame;
        with ``box``, two more rows: the box's corners (x0, y0), (x1, y1)."""
        x = torch.cat([f.permute(0, 3, 1, 2) for f in features], dim=1)
        x = self.reduce(x) + self.name_embed(names)[:, :, None, None]
        return torch.sigmoid(self.trunk(x)).view(-1, self.n_points + 2 * self.box, 2) * self.img_size


class PatternShift(nn.Module):
    def __init__(self, n_names: int, n_tokens: int = 4):
        super().__init__()
        self.n_tokens = n_tokens
        self.name_embed = nn.Embedding(n_names, WIDTH)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 1024), nn.GELU(), nn.Linear(1024, n_tokens * WIDTH))

    def forward(self, embeddings: torch.Tensor, names: torch.Tensor) -> torch.Tensor:
        """(B, 256, E, E) image embeddings -> (B, 4, 256) shifts of the mask tokens."""
        return self.mlp(embeddings.mean(dim=(2, 3)) + self.name_embed(names)).view(-1, self.n_tokens, WIDTH)


class ProMISe(nn.Module):
    def __init__(self, sam: PromptableSAM, names: Sequence[str], use_ips: bool = True, base: str = "",
                 box: bool = False):
        super().__init__()
        self.sam = sam
        self.names = list(names)
        self.use_ips = use_ips
        self.box = box  # the APM also predicts a box prompt (a variant beside the paper's points alone)
        self.base = base  # the foundation model's checkpoint, kept in this one's description
        spec = sam.spec
        self.apm = AutoPromptingModule(spec.feature_widths, len(self.names), spec.img_size, box=box)
        self.ips = PatternShift(len(self.names)) if use_ips else None
        freeze(sam)

    in_channels = 2

    def describe(self) -> dict:
        return {"type": "promise", "names": self.names, "use_ips": self.use_ips, "base": self.base, "box": self.box}

    def new_modules(self) -> nn.ModuleDict:
        """What trains (and what a ProMISe checkpoint holds): the APM and IPS."""
        return nn.ModuleDict({"apm": self.apm, **({"ips": self.ips} if self.ips is not None else {})})

    def checkpoint_state(self) -> dict:
        """A ProMISe checkpoint holds the new modules only; the foundation model is its own file."""
        return self.new_modules().state_dict()

    def train(self, mode: bool = True):
        super().train(mode)
        self.sam.eval()  # frozen: no dropout, no statistics of its own change
        return self

    def forward(self, x: torch.Tensor, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                features=None) -> torch.Tensor:
        """[image, name plane] -> mask logits at the input size. ``points``: SAM points to use instead of
        the APM's (the GT-points mode); ``features``: the frozen encoder's (embeddings, block outputs)
        for this image, when a predictor has them cached."""
        image, names = split_input(x)
        if features is None:
            with torch.no_grad():
                features = encode(self.sam, image, self.sam.spec.apm_blocks)
        embeddings, blocks = features
        boxes = None
        if points is None:
            points, boxes = self.prompts(blocks, names)
        shift = self.ips(embeddings, names) if self.ips is not None else None
        low, _ = decode(self.sam, embeddings, points, boxes, token_shift=shift)
        return F.interpolate(low, size=image.shape[-2:], mode="bilinear", align_corners=False)

    def with_names(self, names: Sequence[str]) -> "ProMISe":
        """This ProMISe for ``names`` (its own first, then new ones): a new name's embeddings in the
        APM and IPS start as the mean of the known names'."""
        names = list(names)
        new = appended_names(self.names, names)
        if not new:
            return self
        grown = ProMISe(self.sam, names, self.use_ips, self.base, self.box)
        state = self.new_modules().state_dict()
        for key in [k for k in state if k.endswith("name_embed.weight")]:
            old = state[key]
            state[key] = torch.cat([old, old.mean(0, keepdim=True).expand(new, -1)])
        grown.new_modules().load_state_dict(state)
        return grown.to(next(self.apm.parameters()).device)

    def prompts(self, blocks: Sequence[torch.Tensor], names: torch.Tensor):
        """The APM's prompts: (SAM's points (coords (B, N, 2) as x, y; labels (B, N)), the box
        (B, 4) as x0, y0, x1, y1, or None without ``box``)."""
        out = self.apm(blocks, names)
        coords = out[:, :self.apm.n_points]
        points = (coords, point_labels(coords.shape[0], coords.shape[1], coords.device))
        if not self.box:
            return points, None
        corners = out[:, self.apm.n_points:]
        return points, torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
