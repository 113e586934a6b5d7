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
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    # a network that carries frozen weights of another checkpoint (ProMISe: the foundation model's)
    # stores only its own
    state = network.checkpoint_state() if hasattr(network, "checkpoint_state") else network.state_dict()
    state = {k: v.detach().cpu() for k, v in state.items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    try:
        torch.save({"network": description, "model": state, "meta": meta or {}}, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):  # a full disk leaves half a file: never keep it
            os.remove(tmp)
        raise


def load_checkpoint(path: str, device: str = "cpu") -> Tuple[PEMEDNet, dict]:
    """Rebuild the network a checkpoint describes and load its weights (no network access needed)."""
    ckpt = torch.load(path, map_location=torch.device(device), weights_only=True)
    if not isinstance(ckpt, dict) or "network" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path} is not a PE-MED checkpoint (expected 'network' and 'model' entries)")
    network = build_pemed(ckpt["network"])
    network.load_state_dict(ckpt["model"])
    return network.to(device).eval(), ckpt.get("meta", {})


def load_network(path: str, device: str = "cpu", base_sam=None) -> Tuple[torch.nn.Module, dict]:
    """Any checkpoint of the app, by the type its description names: "sam", "promise" and
    "sam_decoder" (built on ``base_sam``, whose weights they do not hold), "heatmaps", "task_unet", or
    PE-MED's. -> (network, meta)."""
    from .networks.baseline import TaskUNet
    from .networks.curriculum import PromptHeatmapNet
    from .networks.promise import ProMISe
    from .networks.sam import load_sam, with_own_decoder

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network"), dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a checkpoint of this app (expected 'network' and 'model' entries)")
    desc, state = ckpt["network"], {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    kind = desc.get("type", "pemed")
    if kind == "sam":
        return load_sam(path, device=device)
    if kind in ("promise", "sam_decoder") and base_sam is None:
        raise ValueError(f"{path} holds a {kind} without its foundation model: load it with base_sam")
    if kind == "promise":
        network = ProMISe(base_sam, desc["names"], desc["use_ips"], desc.get("base", ""))
        network.new_modules().load_state_dict(state)
    elif kind == "sam_decoder":
        network = with_own_decoder(base_sam)
        missing, unexpected = network.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("image_encoder.") for k in missing):
            raise ValueError(f"{path} does not fit this foundation model's prompt encoder and decoder")
    elif kind == "heatmaps":
        network = PromptHeatmapNet(desc["names"], desc["head"], desc.get("size", 128))
        network.load_state_dict(state)
    elif kind == "task_unet":
        network = TaskUNet(desc["names"], desc["channels"], desc.get("size", 256))
        network.load_state_dict(state)
    else:
        return load_checkpoint(path, device)
    return network.to(device).eval(), ckpt.get("meta", {})
