"""PE-MED training on MONAI Label's BasicTrainTask: MONAI transforms, ignite engines, and the
iterative click simulation as the engines' ``iteration_update``."""

import logging
from typing import Iterable

import torch
from ignite.engine import Events
from monai.handlers import LrScheduleHandler, MeanDice, from_engine
from monai.inferers import SimpleInferer
from monai.transforms import (Activationsd, AsDiscreted, EnsureChannelFirstd, EnsureTyped, LoadImaged,
                              RandAdjustContrastd, RandFlipd, RandGaussianNoised, RandRotate90d, RandScaleIntensityd,
                              RandShiftIntensityd, RandZoomd, Resized, SpatialPadd)
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from ..checkpoint import save_checkpoint
from ..networks.pemed import PEMEDNet
from ..transforms.transforms import (MatchChannelsd, RandCropAroundTargetd, RandStructureSliced, SelectStructured,
                                     intensity_transform)
from .click_simulation import ClickSimulation
from .loss import NormalizedFocalLoss

logger = logging.getLogger(__name__)


class PEMEDTrain(BasicTrainTask):
    def __init__(self, model_dir: str, network: PEMEDNet, publish_path: str, size: int = 256, modality: str = "MR",
                 exclude_labels: Iterable[int] = (), max_rounds: int = 3, lr: float = 5e-4, lr_step_fraction: float = 0.2,
                 lr_gamma: float = 0.6, crop_prob: float = 0.5,
                 description: str = "Train PE-MED with iterative click simulation", **kwargs):
        self._network = network
        self.size = size
        self.modality = modality
        self.exclude_labels = tuple(int(v) for v in exclude_labels)
        self.max_rounds = max_rounds
        self.crop_prob = crop_prob  # share of training samples cropped around the target (zoom-in's view)
        self.lr, self.lr_step_fraction, self.lr_gamma = lr, lr_step_fraction, lr_gamma
        self.pemed_publish_path = publish_path
        kwargs.setdefault("config", {})
        kwargs["config"] = {"max_epochs": 20, "train_batch_size": 8, "val_batch_size": 8, "val_split": 0.1,
                            "dataset": "CacheDataset", "dataloader": "ThreadDataLoader",
                            # MLflow 3 refuses MONAI Label's default file store: tracking is opt-in
                            # (request {"tracking": "mlflow", "tracking_uri": "sqlite:///..."}).
                            "tracking": "None", **kwargs["config"]}
        super().__init__(model_dir, description, **kwargs)

    def network(self, context: Context):
        return self._network

    def optimizer(self, context: Context):
        return torch.optim.Adam(context.network.parameters(), lr=float(context.request.get("lr", self.lr)))

    def loss_function(self, context: Context):
        return NormalizedFocalLoss(alpha=0.5, gamma=2.0)

    def lr_scheduler_handler(self, context: Context):
        # The paper decays by 0.6 every 20 of 100 epochs: the same shape over any max_epochs.
        step = max(1, int(round(context.max_epochs * self.lr_step_fraction)))
        scheduler = torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=step, gamma=self.lr_gamma)
        return LrScheduleHandler(scheduler, print_lr=True)

    def _pre_transforms(self, augment: bool):
        spatial = ("image", "label")
        load = [
            LoadImaged(keys=spatial),
            EnsureChannelFirstd(keys=spatial),
            MatchChannelsd(keys="image", channels=self._network.in_channels),
            RandStructureSliced(keys=spatial, exclude=self.exclude_labels),
            EnsureTyped(keys=spatial, dtype=(torch.float32, torch.int16), track_meta=False),
            intensity_transform(self.modality, "image"),
            SelectStructured(keys="label", exclude=self.exclude_labels),
        ]
        # Clients send slices in any orientation and at any size.
        spatial_aug = [
            RandCropAroundTargetd(keys=spatial, prob=self.crop_prob),
            RandFlipd(keys=spatial, prob=0.5, spatial_axis=0),
            RandFlipd(keys=spatial, prob=0.5, spatial_axis=1),
            RandRotate90d(keys=spatial, prob=0.5, max_k=3),
            RandZoomd(keys=spatial, prob=0.5, min_zoom=0.8, max_zoom=1.5, mode=("bilinear", "nearest"), keep_size=True),
        ]
        to_network = [
            Resized(keys=spatial, spatial_size=self.size, size_mode="longest", mode=("bilinear", "nearest")),
            SpatialPadd(keys=spatial, spatial_size=(self.size, self.size)),
        ]
        intensity_aug = [
            RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.7, 1.5)),
            RandGaussianNoised(keys="image", prob=0.2, std=0.02),
        ]
        return load + spatial_aug + to_network + intensity_aug if augment else load + to_network

    def train_pre_transforms(self, context: Context):
        return self._pre_transforms(augment=True)

    def val_pre_transforms(self, context: Context):
        return self._pre_transforms(augment=False)

    def train_post_transforms(self, context: Context):
        return [Activationsd(keys="pred", sigmoid=True), AsDiscreted(keys="pred", threshold=0.5)]

    def val_inferer(self, context: Context):
        return SimpleInferer()

    def train_key_metric(self, context: Context):
        return {self.TRAIN_METRIC_MEAN_DICE: MeanDice(output_transform=from_engine(["pred", "label"]),
                                                      include_background=True)}

    def val_key_metric(self, context: Context):
        return {self.VAL_METRIC_MEAN_DICE: MeanDice(output_transform=from_engine(["pred", "label"]),
                                                    include_background=True)}

    def train_iteration_update(self, context: Context):
        return ClickSimulation(self.max_rounds, self_loop=self._network.self_loop, train=True)

    def val_iteration_update(self, context: Context):
        return ClickSimulation(self.max_rounds, self_loop=self._network.self_loop, train=False)

    def train_handlers(self, context: Context):
        handlers = super().train_handlers(context)
        if context.local_rank == 0:
            handlers.append(_PublishPEMED(self.pemed_publish_path, context))
        return handlers


class _PublishPEMED:
    """After every epoch, write a self-describing checkpoint (network description + weights) that the
    infer task, evaluate.py and the tests load without knowing how it was trained. Its meta keeps
    the mean training loss of every epoch."""

    def __init__(self, path: str, context: Context):
        self.path = path
        self.context = context
        self.epoch_losses = []
        self._sum, self._n = 0.0, 0

    def attach(self, engine):
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _accumulate(self, engine):
        self._sum += float(engine.state.output[0]["loss"])
        self._n += 1

    def __call__(self, engine):
        self.epoch_losses.append(self._sum / max(1, self._n))
        self._sum, self._n = 0.0, 0
        net = self.context.network.module if hasattr(self.context.network, "module") else self.context.network
        meta = {"epoch": engine.state.epoch, "iterations": engine.state.iteration, "epoch_losses": self.epoch_losses,
                "train_mean_dice": engine.state.metrics.get(BasicTrainTask.TRAIN_METRIC_MEAN_DICE)}
        if self.context.evaluator is not None:
            meta["val_mean_dice"] = self.context.evaluator.state.metrics.get(BasicTrainTask.VAL_METRIC_MEAN_DICE)
        save_checkpoint(self.path, net, meta)
        logger.info(f"PE-MED checkpoint written to {self.path}: {meta}")
