"""PE-MED: a MiT-b0 interactive segmentation network with PALM-I, PALM-O and TSIP.

Input layout (one tensor, so MONAI/ignite engines can feed it like any image):
    x = [image (C channels), positive disk map, negative disk map, previous mask, previous logits]
The previous logits are the network output O_{t-1} of the last interaction (zeros before the
first one); only TSIP reads them.

Every module is switchable so the paper's ablation rows are configurations of one model:
    baseline  image + prompt maps embedded by a conv and added before stage 1 (iSegFormer style)
    palm_i    prompt features E_p from PALM-I (eq. 1-2) instead of the plain prompt embedding
    palm_o    E_p fused with the stage-1 image features F_I by PALM-O (eq. 3); without it E_p is added
    tsip      O_t = F(I_input) + sigmoid(MLP(O_{t-1})) (eq. 4)
    self_loop read by the predictor and the trainer: the first click runs twice, M0 fed back as
              the previous mask (the network itself is unchanged)

Choices the paper leaves open, stated here:
  * theta_c(Q, K, V) = softmax(Q K^T / d_k) V with learned linear projections of Q, K, V and the
    keys/values spatially reduced 8x (a strided conv, as MiT stage 1 does) so attention at 1/4
    resolution costs N x N/64. The scale is ``palm_scale``: "d" is 1/d_k as the paper writes it,
    "sqrt_d" the usual 1/sqrt(d_k), which gives the logits 5.7x the range at d_k = 32. New networks
    use "sqrt_d"; checkpoints saved before the option existed rebuild with "d". In the trained
    default model every PALM attention map is near uniform under either scale (the disk maps are
    zero almost everywhere, so the reduced keys are alike): PALM acts as a global summary.
  * PALM-I: M_pos and M_neg are patch embeddings of the positive / negative disk maps, M_global of
    the three prompt maps concatenated. The baseline prompt embedding stays in every variant, so
    the clicks' positions always reach the encoder; PALM adds to it.
  * TSIP's MLP is per pixel (1x1 convs, 1 -> 16 -> 1) on the previous logits.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .mit import ChannelLayerNorm, MiTConfig, MiTEncoder, MLPDecoder, OverlapPatchEmbed, ReducedAttention

PROMPT_CHANNELS = 4  # positive, negative, previous mask, previous logits


@dataclass(frozen=True)
class PEMEDModules:
    self_loop: bool = True
    palm_i: bool = True
    palm_o: bool = True
    tsip: bool = True


# The paper's ablation rows (Table 3) as module switches.
ABLATIONS: Dict[str, PEMEDModules] = {
    "baseline": PEMEDModules(False, False, False, False),
    "sl": PEMEDModules(True, False, False, False),
    "palm_i": PEMEDModules(False, True, False, False),
    "palm_o": PEMEDModules(False, False, True, False),
    "palm": PEMEDModules(False, True, True, False),
    "tsip": PEMEDModules(False, False, False, True),
    "all": PEMEDModules(True, True, True, True),
}


def network_input(image: torch.Tensor, maps: torch.Tensor, prev_logits: Optional[torch.Tensor],
                  gain: float = 1.0) -> torch.Tensor:
    """The network's input from (B, C, H, W) images, (B, 2, H, W) disk maps and the previous logits
    (None: no previous interaction, so an empty previous mask and zero logits), times ``gain``: a
    corrective click's step reads the previous answer at the network's ``prev_gain`` (the Self-Loop
    pass at 1), so a network trained so keeps a confident mask where no click says otherwise."""
    if prev_logits is None:
        prev_mask = prev_logits = torch.zeros_like(maps[:, :1])
    else:
        prev_logits = prev_logits * gain if gain != 1.0 else prev_logits
        prev_mask = torch.sigmoid(prev_logits)
    return torch.cat([image, maps, prev_mask, prev_logits], dim=1)


PALM_SCALES = {"d": lambda d: 1.0 / d, "sqrt_d": lambda d: d ** -0.5}
DEFAULT_PALM_SCALE = "sqrt_d"  # for new networks; checkpoints keep the scale they were saved with


class CrossAttention(nn.Module):
    """theta_c(Q, K, V) = softmax(Q K^T * scale) V, with keys and values taken from one context map."""

    def __init__(self, width: int, sr_ratio: int, scale: str):
        super().__init__()
        self.attn = ReducedAttention(width, heads=1, sr_ratio=sr_ratio, scale=PALM_SCALES[scale](width))

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.attn(query, context)


class PALMInput(nn.Module):
    """PALM-I: prompt features E_p from the positive map, negative map and previous mask (eq. 1-2)."""

    def __init__(self, width: int, kernel: int, stride: int, sr_ratio: int, scale: str):
        super().__init__()
        self.embed_pos = OverlapPatchEmbed(1, width, kernel, stride)
        self.embed_neg = OverlapPatchEmbed(1, width, kernel, stride)
        self.embed_global = OverlapPatchEmbed(3, width, kernel, stride)
        self.pos_from_neg = CrossAttention(width, sr_ratio, scale)
        self.neg_from_pos = CrossAttention(width, sr_ratio, scale)
        self.global_self = CrossAttention(width, sr_ratio, scale)
        self.pos_to_global = CrossAttention(width, sr_ratio, scale)
        self.neg_to_global = CrossAttention(width, sr_ratio, scale)

    def forward(self, pos: torch.Tensor, neg: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        m_pos, m_neg = self.embed_pos(pos), self.embed_neg(neg)
        m_global = self.embed_global(torch.cat([pos, neg, prev], dim=1))
        hat_pos = self.pos_from_neg(m_neg, m_pos)  # theta_c(M_neg, M_pos, M_pos)
        hat_neg = self.neg_from_pos(m_pos, m_neg)  # theta_c(M_pos, M_neg, M_neg)
        hat_global = self.global_self(m_global, m_global)  # eq. 1
        return self.pos_to_global(hat_pos, hat_global) + self.neg_to_global(hat_neg, hat_global)  # eq. 2


class PALMOutput(nn.Module):
    """PALM-O: EP = F_I + norm(theta_c(F_I, E_p, E_p)) + E_p + norm(theta_c(E_p, F_I, F_I)) (eq. 3)."""

    def __init__(self, width: int, sr_ratio: int, scale: str):
        super().__init__()
        self.image_to_prompt = CrossAttention(width, sr_ratio, scale)
        self.prompt_to_image = CrossAttention(width, sr_ratio, scale)
        self.norm_image = ChannelLayerNorm(width)
        self.norm_prompt = ChannelLayerNorm(width)

    def forward(self, f_i: torch.Tensor, e_p: torch.Tensor) -> torch.Tensor:
        return (f_i + self.norm_image(self.image_to_prompt(f_i, e_p))
                + e_p + self.norm_prompt(self.prompt_to_image(e_p, f_i)))


class TSIP(nn.Module):
    """Sigmoid(MLP(O_{t-1})), added to the current logits (eq. 4)."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(1, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 1, 1))

    def forward(self, prev_logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(prev_logits))


class PEMEDNet(nn.Module):
    def __init__(self, in_channels: int = 1, modules: PEMEDModules = PEMEDModules(), cfg: MiTConfig = MiTConfig(),
                 palm_scale: str = DEFAULT_PALM_SCALE, prev_gain: float = 1.0):
        super().__init__()
        self.prev_gain = float(prev_gain)  # network_input's gain on a corrective step's previous logits
        if palm_scale not in PALM_SCALES:
            raise ValueError(f"palm_scale must be one of {sorted(PALM_SCALES)}, got {palm_scale!r}")
        self.in_channels = in_channels
        self.palm_scale = palm_scale
        self.switches = modules
        self.cfg = cfg
        self.encoder = MiTEncoder(in_channels, cfg)
        w0, k0, s0, r0 = cfg.widths[0], cfg.patch_kernels[0], cfg.patch_strides[0], cfg.sr_ratios[0]
        self.prompt_embed = OverlapPatchEmbed(3, w0, k0, s0)
        self.palm_i = PALMInput(w0, k0, s0, r0, palm_scale) if modules.palm_i else None
        self.palm_o = PALMOutput(w0, r0, palm_scale) if modules.palm_o else None
        self.tsip = TSIP() if modules.tsip else None
        self.decoder = MLPDecoder(cfg.widths, cfg.decoder_width)

    @property
    def self_loop(self) -> bool:
        return self.switches.self_loop

    def describe(self) -> dict:
        """What a checkpoint needs to rebuild this network."""
        return {"in_channels": self.in_channels, "modules": asdict(self.switches), "mit": asdict(self.cfg),
                "palm_scale": self.palm_scale, "prev_gain": self.prev_gain}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        if x.shape[1] != c + PROMPT_CHANNELS:
            raise ValueError(f"expected {c + PROMPT_CHANNELS} input channels, got {x.shape[1]}")
        image, pos, neg, prev, prev_logits = x[:, :c], x[:, c:c + 1], x[:, c + 1:c + 2], x[:, c + 2:c + 3], x[:, c + 3:]
        stages = self.encoder.stages
        prompt_tokens = self.prompt_embed(torch.cat([pos, neg, prev], dim=1))
        e_p = self.palm_i(pos, neg, prev) if self.palm_i is not None else None

        if self.palm_o is None:
            tokens = stages[0].embed(image) + prompt_tokens
            if e_p is not None:
                tokens = tokens + e_p
            f = stages[0].run_blocks(tokens)
        else:
            # The image's stage 1 still sees the clicks (baseline embedding); PALM-O then fuses the
            # prompt features with F_I, the output of transformer block 1.
            f_i = stages[0].run_blocks(stages[0].embed(image) + prompt_tokens)
            f = self.palm_o(f_i, e_p if e_p is not None else prompt_tokens)

        feats = [f]
        for stage in stages[1:]:
            feats.append(stage(feats[-1]))
        logits = F.interpolate(self.decoder(feats), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.tsip is not None:
            logits = logits + self.tsip(prev_logits)
        return logits


def build_pemed(description: dict) -> PEMEDNet:
    """Rebuild a network from ``PEMEDNet.describe()`` (stored in every checkpoint)."""
    mit = {k: tuple(v) if isinstance(v, list) else v for k, v in description.get("mit", {}).items()}
    return PEMEDNet(description.get("in_channels", 1), PEMEDModules(**description.get("modules", {})), MiTConfig(**mit),
                    description.get("palm_scale", "d"), description.get("prev_gain", 1.0))
