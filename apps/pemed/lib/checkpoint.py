"""Self-describing PE-MED checkpoints: {"network": PEMEDNet.describe(), "model": state_dict, "meta": ...}.

Written atomically (temporary file + rename) so a server reading the file never sees half of it.
"""

import os
from typing import Optional, Tuple

import torch

from .networks.pemed import PEMEDNet, build_pemed


def save_checkpoint(path: str, network: PEMEDNet, meta: Optional[dict] = None, half: bool = False) -> None:
    """``half``: floating-point weights stored as float16, half the bytes (the bundled default lives in
    git, where every version stays); loading puts them back into the float32 network."""
    write_checkpoint(path, network.describe(), network, meta, half)


def write_checkpoint(path: str, description: dict, network: torch.nn.Module, meta: Optional[dict] = None,
                     half: bool = False) -> None:
    """{"network": description, "model": weights, "meta": meta}, atomically; any model of the app."""
    # a network that carries frozen weights of another checkpoint (ProMISe: the foundation model's)
    # stores only its own
    state = network.checkpoint_state() if hasattr(network, "checkpoint_state") else network.state_dict()
    _save(path, {"network": description, "model": {k: v.detach().cpu() for k, v in state.items()}, "meta": meta or {}},
          half)


def publish_half(src: str, dst: str) -> None:
    """Any checkpoint of the app, its floating-point weights stored as float16 at ``dst`` (atomically):
    how the bundled models live in git at half the bytes."""
    _save(dst, torch.load(src, map_location="cpu", weights_only=True), half=True)


def _save(path: str, ckpt: dict, half: bool) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if half:
        ckpt = dict(ckpt, model={k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    tmp = path + ".tmp"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):  # a full disk leaves half a file: never keep it
            os.remove(tmp)
        raise


def float32_state(state: dict) -> dict:
    """A state dict with its floating-point tensors in float32 (checkpoints may store float16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_checkpoint(path: str, device: str = "cpu") -> Tuple[PEMEDNet, dict]:
    """Rebuild the network a checkpoint describes and load its weights (no network access needed)."""
    ckpt = torch.load(path, map_location=torch.device(device), weights_only=True)
    if not isinstance(ckpt, dict) or "network" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a PE-MED checkpoint (expected 'network' and 'model' entries)")
    network = build_pemed(ckpt["network"])
    network.load_state_dict(ckpt["model"])
    return network.to(device).eval(), ckpt.get("meta", {})
