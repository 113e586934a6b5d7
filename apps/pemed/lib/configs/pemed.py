"""TaskConfig for PE-MED: the interactive infer task and its trainer.

conf keys (``--conf key value`` on ``monailabel start_server``):
    pemed_modality   auto (default: per image, from the DICOM Modality tag or else the intensity range),
                     or CT / MR to force one normalisation for every image
    pemed_size       network input size (default 256)
    pemed_zoom_in    false to segment later clicks on the whole image; by default (true) they are
                     segmented in a box around the mask and the clicks, which the bundled model was
                     fine-tuned for (crops around the target) and measured better with
    pemed_zoom_far   the whole image is shown when a positive click lies farther from the mask than
                     this share of the image's longer side (default 0.05; 0: never): the object is
                     larger than the mask, and a box would cut through it
    pemed_zoom_grow  how many times a click's step is re-run on a box twice as long when the zoomed
                     mask reaches the box's side (default 2; 0 keeps the first box): large objects
                     are not cut at the box
    pemed_refine_radius  radius of the guided filter that pulls the shown mask onto the image's edges,
                     in pixels per 256 pixels of the image's longer side, rounded up (default 2;
                     0: off; lib/refine.py)
    pemed_refine_eps the filter's eps in squared normalised intensity (default 1e-4): edges of
                     contrast well above its square root steer the mask
    pemed_replay_maps  the Colin27 maps cache whose engine draws are replayed beside saved labels in
                     fine-tuning (default model/colin27_maps.npz, built from mricron-data on first use;
                     "none": no replay)
    pemed_train_epochs, pemed_train_samples, pemed_train_lr, pemed_train_replay
                     a fine-tuning run's budget: epochs, draws per epoch, Adam's learning rate, and
                     the share of draws replayed from the engine (defaults 6, 64, 1e-4, 0.5)
    pemed_train_rounds  the most corrective clicks the click simulation adds to a fine-tuning sample
                     (uniform from 0; default 3). More reach the late-click states the NoC protocol
                     ends in, and leave fewer first-click states (benchmarks/results/fine_tuning/NOTES.md)
    pemed_train_parts  the network's parts fine-tuning changes, comma-separated top-level module names
                     (encoder, prompt_embed, palm_i, palm_o, tsip, decoder) or all (default all)
    pemed_publish_gate  a run's model replaces the served one only if, under the click protocol (mean
                     Dice over 5 clicks), it is no worse on the saved labels, at most this much
                     worse on fixed engine draws of every target kind (default 0.01) and at most 0.03
                     on any one kind ("off": every finite run publishes; lib/trainers/publish_gate.py)
    pemed_modules    ablation row for a network trained from scratch when no checkpoint exists
                     (baseline, sl, palm_i, palm_o, palm, tsip, all; default all)
The bundled checkpoint is model/pemed.pt; training in the server writes model/pemed_finetuned.pt at
the end of each run, which the infer task prefers once it exists and reloads when it changes
(continual fine-tuning starts from the newest one).
"""

import logging
import os
from typing import Dict, Optional

import torch

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from ..checkpoint import load_checkpoint
from ..infers.pemed import PEMEDInfer
from ..infers.pemed_3d import PEMED3DInfer
from ..networks.pemed import ABLATIONS, PEMEDNet
from ..predictor import SERVE_DEFAULTS
from ..trainers.pemed import PEMEDTrain
from ..trainers.publish_gate import PublishGate
from ..transforms.transforms import AUTO
from .labels import AAL_LABELS

logger = logging.getLogger(__name__)


class PEMED(TaskConfig):
    def init(self, name: str, model_dir: str, conf, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = dict(AAL_LABELS)
        self.modality = conf.get("pemed_modality", AUTO)
        self.size = int(conf.get("pemed_size", 256))
        self.serve = {"zoom_in": str(conf.get("pemed_zoom_in", SERVE_DEFAULTS["zoom_in"])).lower() == "true",
                      "zoom_far": float(conf.get("pemed_zoom_far", SERVE_DEFAULTS["zoom_far"])),
                      "zoom_grow": int(conf.get("pemed_zoom_grow", SERVE_DEFAULTS["zoom_grow"])),
                      "refine_radius": int(conf.get("pemed_refine_radius", SERVE_DEFAULTS["refine_radius"])),
                      "refine_eps": float(conf.get("pemed_refine_eps", SERVE_DEFAULTS["refine_eps"]))}
        self.bundled_path = os.path.join(model_dir, "pemed.pt")
        self.finetuned_path = os.path.join(model_dir, "pemed_finetuned.pt")
        self.path = [self.bundled_path, self.finetuned_path]
        modules = conf.get("pemed_modules", "all")
        if modules not in ABLATIONS:
            raise ValueError(f"pemed_modules must be one of {sorted(ABLATIONS)}, got {modules!r}")
        self.fresh_modules = ABLATIONS[modules]
        replay = conf.get("pemed_replay_maps", os.path.join(model_dir, "colin27_maps.npz"))
        self.replay_maps = "" if replay.lower() == "none" else replay
        self.replay_share = float(conf.get("pemed_train_replay", 0.5))
        self.train_rounds = int(conf.get("pemed_train_rounds", 3))
        # corrective rounds in the view serving shows them in (its zoom-in box), while serving zooms in
        train_zoom = str(conf.get("pemed_train_zoom", "false")).lower() == "true" and self.serve["zoom_in"]
        self.train_zoom_far = self.serve["zoom_far"] if train_zoom else None
        self.train_prev_perturb = float(conf.get("pemed_train_prev_perturb", 0.0))
        parts = conf.get("pemed_train_parts", "all")
        self.train_parts = None if parts == "all" else [p.strip() for p in parts.split(",") if p.strip()]
        tolerance = str(conf.get("pemed_publish_gate", "0.01")).lower()
        self.gate = None if tolerance == "off" else PublishGate(self.serve, self.size, tolerance=float(tolerance))
        self.train_budget = {"max_epochs": int(conf.get("pemed_train_epochs", 6)),
                             "samples_per_epoch": int(conf.get("pemed_train_samples", 64)),
                             "lr": float(conf.get("pemed_train_lr", 1e-4))}

    def newest_checkpoint(self) -> Optional[str]:
        existing = [p for p in self.path if os.path.exists(p)]
        return existing[-1] if existing else None

    def infer(self) -> Dict[str, InferTask]:
        """``pemed``: one slice per request; ``pemed_3d``: propagated through the volume."""
        common = dict(labels=self.labels, modality=self.modality, size=self.size, serve=self.serve)
        return {self.name: PEMEDInfer(self.path, **common), f"{self.name}_3d": PEMED3DInfer(self.path, **common)}

    def trainer(self) -> Optional[TrainTask]:
        start = self.newest_checkpoint()
        network = load_checkpoint(start)[0] if start else PEMEDNet(1, self.fresh_modules)
        logger.info(f"PE-MED trainer starts from {start or 'random weights'}")
        return PEMEDTrain(
            model_dir=os.path.join(self.model_dir, "train_pemed"),
            network=network,
            publish_path=self.finetuned_path,
            size=self.size,
            modality=self.modality,
            max_rounds=self.train_rounds,
            config=dict(self.train_budget),
            publish_each_epoch=False,  # a run replaces the served model once, at its end
            replay_maps=self.replay_maps,
            replay_share=self.replay_share,
            trainable=self.train_parts,
            gate=self.gate,
            freeze_norm_statistics=True,  # a few labels' batches must not re-estimate them
            zoom_far=self.train_zoom_far,
            prev_perturb=self.train_prev_perturb,
            amp=torch.cuda.is_available(),
            tracking=None,
        )
