"""Iterative click-simulation training as an ignite ``iteration_update`` (like MONAI's deepgrow
``Interaction``): before the engine's own step, the model itself makes the previous outputs.

Per batch: initial clicks from the ground truth; with Self-Loop on, one pass with the same clicks
whose output becomes the previous mask (exactly what serving does on a first click); then k rounds,
k uniform in {0..max_rounds}, of predict without gradients -> one corrective click per sample from
its errors -> the prediction fed back. The loss is taken on the final pass only (the engine's step).

In evaluation mode the clicks follow the NoC protocol (deterministic) with ``max_rounds`` corrective
clicks, so the validation Dice is the Dice after 1 + max_rounds clicks.
"""

from typing import List, Optional

import numpy as np
import torch

from ..networks.pemed import network_input
from ..prompts.clicks import Click, TrainingClickSampler, disk_maps, next_eval_click


class ClickSimulation:
    def __init__(self, max_rounds: int = 3, self_loop: bool = True, train: bool = True, seed: Optional[int] = None):
        self.max_rounds = max_rounds
        self.self_loop = self_loop
        self.train = train
        self.sampler = TrainingClickSampler(seed=seed)
        self.rng = np.random.default_rng(seed)

    def _maps(self, clicks: List[List[Click]], shape, device) -> torch.Tensor:
        return torch.stack([disk_maps(c, shape, device=device) for c in clicks])

    def _inputs(self, image, clicks, prev_logits):
        return network_input(image, self._maps(clicks, image.shape[-2:], image.device), prev_logits)

    def __call__(self, engine, batchdata):
        device = engine.state.device
        image = batchdata["image"].as_tensor().to(device) if hasattr(batchdata["image"], "as_tensor") else batchdata["image"].to(device)
        gts = [g[0].detach().cpu().numpy() > 0.5 for g in batchdata["label"]]
        if self.train:
            clicks = [self.sampler.initial(g) for g in gts]
            rounds = int(self.rng.integers(0, self.max_rounds + 1))
        else:
            clicks = [[c] if (c := next_eval_click(g, np.zeros_like(g))) else [] for g in gts]
            rounds = self.max_rounds

        network = engine.network
        was_training = network.training
        prev_logits = None
        passes = (1 if self.self_loop else 0) + rounds
        if passes:
            network.eval()
            with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda" and bool(getattr(engine, "amp", False))):
                for i in range(passes):
                    prev_logits = network(self._inputs(image, clicks, prev_logits)).float()
                    if self.self_loop and i == 0:
                        continue  # the Self-Loop pass adds no click
                    probs = torch.sigmoid(prev_logits)[:, 0].cpu().numpy()
                    for b, (g, p) in enumerate(zip(gts, probs)):
                        new = (self.sampler.corrective(g, p, clicks[b]) if self.train
                               else next_eval_click(g, p > 0.5, clicks[b]))
                        if new is not None:
                            clicks[b].append(new)
            network.train(was_training)
        batchdata["image"] = self._inputs(image, clicks, prev_logits)
        return engine._iteration(engine, batchdata)
