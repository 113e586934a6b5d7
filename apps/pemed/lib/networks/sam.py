"""The promptable foundation model: Meta's SAM architecture (``segment_anything``'s image encoder,
prompt encoder and mask decoder), configured per model kind, never rewritten.

Kinds (``SAM_KINDS``):
    pemed_sam_tiny  the app's default, trained here from scratch (apps/pemed/train_sam.py): a 6-block
                    ViT of width 192 on 256 x 256 inputs (16 x 16 tokens, global attention in every
                    block: 256 tokens cost little), SAM's prompt encoder and mask decoder at width 256
                    with a 1024-wide decoder MLP; input: the app's normalised intensities in [0, 1]
    vit_b, vit_l, vit_h  Meta's SAM (1024 x 1024 inputs, 0-255 RGB, ImageNet mean / std)
    medsam          MedSAM (the vit_b architecture, 1024 x 1024, intensities min-max scaled to [0, 1])
A user's checkpoint of any kind loads from a local path (``load_sam``); nothing is downloaded.

``ShiftableMaskDecoder`` is SAM's MaskDecoder with two additions, same weights: one image
embedding per prompt set when their counts match (batched training), and an optional per-sample
shift added to the mask tokens (ProMISe's Incremental Pattern Shifting).
"""

import copy
import os
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..prompts.clicks import Click

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SAMSpec:
    """Everything that rebuilds a SAM-architecture model and prepares its input."""

    kind: str
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
    apm_blocks: Tuple[int, ...] = field(default=())  # 1-based encoder blocks ProMISe's APM reads

    def __post_init__(self):
        if not self.apm_blocks:  # ViT-B reads blocks 6, 9, 12: the half, three quarters and the end
            object.__setattr__(self, "apm_blocks", (self.depth // 2, 3 * self.depth // 4, self.depth))

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:  # the decoder's masks and the mask prompt: 4x the embedding
        return 4 * self.embedding_size


SAM_KINDS: Dict[str, SAMSpec] = {
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


def build_sam(spec: SAMSpec) -> PromptableSAM:
    """A SAM-architecture model of ``spec``, random weights, in eval mode."""
    prompt_dim = 256
    sam = PromptableSAM(
        spec,
        image_encoder=ImageEncoderViT(
            img_size=spec.img_size, patch_size=spec.patch_size, embed_dim=spec.embed_dim, depth=spec.depth,
            num_heads=spec.num_heads, mlp_ratio=4, out_chans=prompt_dim, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=spec.use_rel_pos,
            window_size=spec.window_size, global_attn_indexes=spec.global_attn_indexes),
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


def _state_dict_in(ckpt) -> dict:
    """SAM's files are a bare state dict; MedSAM's training saves {"model": ...}; the app's own
    checkpoints are {"network": ..., "model": ..., "meta": ...}."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise ValueError("not a SAM checkpoint: expected a state dict, or a dict with a 'model' state dict")


def load_sam(path: str, kind: Optional[str] = None, device: str = "cpu") -> Tuple[PromptableSAM, dict]:
    """A SAM-architecture model from a local file: the app's own self-describing checkpoint (kind
    read from it) or a user's SAM / MedSAM file (``kind`` names its architecture). -> (model, meta)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no SAM checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = {}
    if isinstance(ckpt, dict) and isinstance(ckpt.get("network"), dict):
        described = dict(ckpt["network"])
        if described.pop("type", None) != "sam":
            raise ValueError(f"{path} is not a whole SAM checkpoint of this app (a decoder alone loads with "
                             f"lib.checkpoint.load_network and its foundation model)")
        spec = SAMSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in described.items()})
        meta = ckpt.get("meta", {})
    else:
        if kind is None:
            raise ValueError(f"{path} does not say its architecture: name the kind ({sorted(SAM_KINDS)})")
        spec = spec_of(kind)
    sam = build_sam(spec)
    state = {k: v.float() if v.is_floating_point() else v for k, v in _state_dict_in(ckpt).items()}
    try:
        missing, unexpected = sam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes of another architecture
        raise ValueError(f"{path} does not fit the {spec.kind} architecture: {str(e).splitlines()[1:2]}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the {spec.kind} architecture: missing {list(missing)[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")
    return sam.to(device).eval(), meta


def save_sam(path: str, sam: PromptableSAM, meta: Optional[dict] = None, half: bool = False) -> None:
    from ..checkpoint import write_checkpoint  # the app's one checkpoint writer (atomic)
    write_checkpoint(path, sam.describe(), sam, meta, half)


def encode(sam: PromptableSAM, image: torch.Tensor, blocks: Sequence[int] = ()) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """(B, 1 or 3, S, S) images in [0, 1] -> (image embeddings (B, 256, S/16, S/16), the outputs of
    the 1-based encoder ``blocks`` (B, S/16, S/16, width) each). The normalisation is the spec's."""
    spec = sam.spec
    x = image.clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(spec.pixel_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(spec.pixel_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    x = (x * spec.scale - mean) / std
    captured: List[torch.Tensor] = []
    hooks = [sam.image_encoder.blocks[b - 1].register_forward_hook(lambda m, i, out: captured.append(out))
             for b in sorted(blocks)]
    try:
        embeddings = sam.image_encoder(x)
    finally:
        for h in hooks:
            h.remove()
    return embeddings, captured


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
