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
    pemed_modules    ablation row for a network trained from scratch when no checkpoint exists
                     (baseline, sl, palm_i, palm_o, palm, tsip, all; default all)
The bundled checkpoint is model/pemed.pt; training in the server writes model/pemed_finetuned.pt at
the end of each run, which the infer task prefers once it exists and reloads when it changes
(continual fine-tuning starts from the newest one).
"""

import logging
import os
from typing import Optional

import torch

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from ..checkpoint import load_checkpoint
from ..infers.pemed import PEMEDInfer
from ..networks.pemed import ABLATIONS, PEMEDNet
from ..predictor import SERVE_DEFAULTS
from ..trainers.pemed import PEMEDTrain
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

    def newest_checkpoint(self) -> Optional[str]:
        existing = [p for p in self.path if os.path.exists(p)]
        return existing[-1] if existing else None

    def infer(self) -> InferTask:
        return PEMEDInfer(self.path, labels=self.labels, modality=self.modality, size=self.size, serve=self.serve)

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
            config={"max_epochs": 5},
            publish_each_epoch=False,  # a run replaces the served model once, at its end
            amp=torch.cuda.is_available(),
            tracking=None,
        )
