"""Training the SAM-architecture foundation model (lib/networks/sam.py) with SAM's iterative prompt
simulation, as an ignite ``iteration_update`` on PE-MED's trainer machinery (data engine or saved
labels, resume, publish: lib/trainers/pemed.py).

Per batch: the image encoder runs once; the first prompt is, per sample, a box around the target
(SAM's box noise: each side moved by 10% of its length, at most 20 px; ``box_prob``) or the
training click sampler's initial clicks (1 + k positive, 0-2 negative: lib/prompts/clicks.py);
then k corrective rounds, k uniform in {0..max_rounds}: a click from the last mask's errors joins
the points and the last low-resolution logits become the mask prompt (detached, as SAM does). The
loss is Dice + BCE on every pass's mask plus the squared error of the decoder's IoU estimate, over
all passes. Validation: the box from the ground truth, then ``max_rounds`` NoC-protocol clicks.
"""

from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines.utils import IterationEvents
from monai.losses import DiceCELoss

from ..networks.sam import PromptableSAM, boxes_tensor, decode, encode, points_tensor
from ..prompts.boxes import box_of, jitter_box
from ..prompts.clicks import Click, TrainingClickSampler, next_eval_click
from .pemed import PEMEDTrain, learning_parameters


def _tensor(x, device):
    return (x.as_tensor() if hasattr(x, "as_tensor") else x).to(device)


def mask_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) boolean -> (B,) IoU (1 where both are empty)."""
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def finish_iteration(engine, train: bool, amp: bool, loss: torch.Tensor, image, labels, pred):
    """The end of an ``iteration_update`` step: backward and the optimiser's step (scaled under AMP)
    when training; then, as MONAI's engines' own step ends, the output and the event that
    decollates and post-processes it."""
    if train:
        if amp and getattr(engine, "scaler", None) is not None:
            engine.scaler.scale(loss).backward()
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.optimizer.step()
    engine.state.output = {"image": image, "label": labels, "pred": pred.detach(), "loss": loss.detach()}
    engine.fire_event(IterationEvents.MODEL_COMPLETED)
    return engine.state.output


class SAMPromptSimulation:
    def __init__(self, max_rounds: int = 3, train: bool = True, box_prob: float = 0.5, seed: Optional[int] = None,
                 iou_weight: float = 1.0):
        self.max_rounds, self.train, self.box_prob, self.iou_weight = max_rounds, train, box_prob, iou_weight
        self.sampler = TrainingClickSampler(seed=seed)
        self.rng = np.random.default_rng(seed)
        self.loss = DiceCELoss(sigmoid=True)

    def _first_prompts(self, gts: List[np.ndarray]):
        boxes, clicks = [], []
        for g in gts:
            box = box_of(g)
            use_box = box is not None and (not self.train or self.rng.random() < self.box_prob)
            boxes.append((jitter_box(box, g.shape, self.rng) if self.train else box) if use_box else None)
            clicks.append([] if use_box else self.sampler.initial(g))
        return boxes, clicks

    def _decode(self, sam, emb, boxes, clicks, prev):
        """One decoder pass; samples with a box and samples without go through SAM separately (its
        prompt encoder takes a box for all of a batch or for none)."""
        n, device = len(clicks), emb.device
        low = [None] * n
        iou = [None] * n
        groups = ([b for b in range(n) if boxes[b] is not None], [b for b in range(n) if boxes[b] is None])
        for members in groups:
            if not members:
                continue
            idx = torch.tensor(members, device=device)
            pts = points_tensor([clicks[b] for b in members], device)
            bx = boxes_tensor([boxes[b] for b in members], device) if boxes[members[0]] is not None else None
            if pts is None and bx is None:  # no prompt at all (an empty target): SAM's lone padding point
                pts = points_tensor([[Click(0, 0, False)] for _ in members], device)
                pts[1][:] = -1
            m, q = decode(sam, emb[idx], pts, bx, None if prev is None else prev[idx])
            for k, b in enumerate(members):
                low[b], iou[b] = m[k], q[k]
        return torch.stack(low), torch.stack(iou)

    def _loss(self, low, iou_pred, labels):
        logits = F.interpolate(low.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        true_iou = mask_iou(logits.detach() > 0, labels > 0.5)
        return self.loss(logits, labels) + self.iou_weight * F.mse_loss(iou_pred[:, 0].float(), true_iou), logits

    def passes(self, sam, emb, gts, labels):
        """SAM's interaction: the first prompt, then corrective clicks with the last mask as the mask
        prompt. -> (the loss of every pass, the last pass's logits)."""
        boxes, clicks = self._first_prompts(gts)
        rounds = int(self.rng.integers(0, self.max_rounds + 1)) if self.train else self.max_rounds
        prev, losses = None, []
        for r in range(rounds + 1):
            low, iou_pred = self._decode(sam, emb, boxes, clicks, prev)
            loss, logits = self._loss(low, iou_pred, labels)
            losses.append(loss)
            if r == rounds:
                break
            probs = torch.sigmoid(logits.detach())[:, 0].cpu().numpy()
            for b, (g, p) in enumerate(zip(gts, probs)):
                new = (self.sampler.corrective(g, p, clicks[b]) if self.train
                       else next_eval_click(g, p > 0.5, clicks[b]))
                if new is not None:
                    clicks[b].append(new)
            prev = low.detach()
        return losses, logits

    train_encoder = True

    def __call__(self, engine, batchdata):
        device = engine.state.device
        image, labels = _tensor(batchdata["image"], device)[:, :1], _tensor(batchdata["label"], device).float()
        gts = [g[0].detach().cpu().numpy() > 0.5 for g in labels]
        sam: PromptableSAM = engine.network
        amp = device.type == "cuda" and bool(getattr(engine, "amp", False))
        if self.train:
            sam.train()
            engine.optimizer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(self.train), torch.autocast(device.type, enabled=amp):
            if "embedding" in batchdata:  # cached by the trainer's FoundationEmbeddingd: no encoder pass
                emb = _tensor(batchdata["embedding"], device).float()
            else:
                with torch.set_grad_enabled(self.train and self.train_encoder):
                    emb, _ = encode(sam, image)
            losses, logits = self.passes(sam, emb, gts, labels)
            loss = torch.stack(losses).mean()
        return finish_iteration(engine, self.train, amp, loss, image, labels, logits)


class SAMTrain(PEMEDTrain):
    """The foundation model's trainer: PE-MED's data, resume and publishing; SAM's prompts and loss."""

    def __init__(self, model_dir: str, network: PromptableSAM, publish_path: str, box_prob: float = 0.5,
                 weight_decay: float = 0.01, **kwargs):
        self.box_prob, self.weight_decay = box_prob, weight_decay
        kwargs.setdefault("description", "Train the SAM-architecture foundation model with iterative prompts")
        super().__init__(model_dir, network, publish_path, **kwargs)

    def optimizer(self, context):
        params = learning_parameters(context.network, self.trainable)
        return torch.optim.AdamW(params, lr=float(context.request.get("lr", self.lr)), weight_decay=self.weight_decay)

    def loss_function(self, context):
        return DiceCELoss(sigmoid=True)  # the engine's own step is not used: SAMPromptSimulation's is

    def train_iteration_update(self, context):
        self._click_simulation = SAMPromptSimulation(self.max_rounds, True, self.box_prob,
                                                     seed=self._rank_seed(context) if context else self.seed)
        return self._click_simulation

    def val_iteration_update(self, context):
        return SAMPromptSimulation(self.max_rounds, train=False)
