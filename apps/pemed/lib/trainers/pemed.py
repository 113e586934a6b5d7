"""PE-MED training on MONAI Label's BasicTrainTask: MONAI transforms, ignite engines, and the
iterative click simulation as the engines' ``iteration_update``.

Samples come from a datastore (images + saved labels: the server's continual fine-tuning) or, with
``engine``, from the training-data engine (lib.data: items {"seed": ...}). With ``replay_maps`` (a
Colin27 maps cache, built from mricron-data on first use), a datastore run mixes engine draws in
(``replay_share`` of the draws) so the network does not forget what it knew while it learns the
annotators' structures. With ``samples_per_epoch`` (request key) an epoch is that many draws, the
saved labels equally likely among themselves however few there are. With ``gate`` (a PublishGate), a
run's model replaces the served one only if it is no worse than the run's start under the click
protocol (lib/trainers/publish_gate.py); ``freeze_norm_statistics`` keeps BatchNorm's statistics as
they were. Validation images are chosen by a hash of their name (``stable_validation``), so an image
stays on its side of the split however many labels arrive. The published checkpoint is replaced after every epoch
(``publish_each_epoch``, for long runs cut by a session's end) or, as the server does, once at the
end of a run whose loss stayed finite, so a failed run leaves the last good model serving. ``resume_path`` keeps,
after every epoch, what a run needs to continue in a later sitting: weights, optimiser, scheduler,
epoch, iteration and every random state (torch, numpy, Python, the transforms', the click simulation's).
"""

import copy
import dataclasses
import errno
import hashlib
import logging
import math
import os
import random
import shutil
import socket
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from ignite.engine import Events
from monai.handlers import LrScheduleHandler, MeanDice, from_engine
from monai.data import DataLoader, ThreadDataLoader
from monai.inferers import SimpleInferer
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged,
                              MapTransform, Randomizable,
                              RandAdjustContrastd, RandFlipd, RandGaussianNoised, RandRotate90d, RandScaleIntensityd,
                              RandShiftIntensityd, RandZoomd, Resized, SpatialPadd)
from monailabel.tasks.train.basic_train import BasicTrainTask, Context

from ..background import yield_to_clicks
from ..checkpoint import save_checkpoint
from ..data.atlases import load_maps
from ..data.engine import DataEngine, DataEngined
from ..networks.pemed import PEMEDNet
from ..transforms.transforms import (AUTO, MatchChannelsd, RandCropAroundTargetd, RandStructureSliced, SelectStructured,
                                     intensity_transform)
from .click_simulation import ClickSimulation
from .loss import NormalizedFocalLoss
from .publish_gate import PublishGate

logger = logging.getLogger(__name__)


MIN_ITEMS_FOR_VALIDATION = 10  # with fewer labelled images, every one of them trains


class PEMEDTrain(BasicTrainTask):
    def __init__(self, model_dir: str, network: PEMEDNet, publish_path: str, size: int = 256, modality: str = AUTO,
                 exclude_labels: Iterable[int] = (), max_rounds: int = 3, lr: float = 5e-4, lr_step_fraction: float = 0.2,
                 lr_gamma: float = 0.6, crop_prob: float = 0.5, engine: Optional[DataEngine] = None,
                 resume_path: str = "", seed: Optional[int] = None, num_workers: int = 0,
                 publish_each_epoch: bool = True, replay_maps: str = "", replay_share: float = 0.5,
                 trainable: Optional[Sequence[str]] = None, gate: Optional[PublishGate] = None,
                 freeze_norm_statistics: bool = False, zoom_far: Optional[float] = None, prev_perturb: float = 0.0,
                 description: str = "Train PE-MED with iterative click simulation", **kwargs):
        self._network = network
        self.engine = engine
        self.resume_path = resume_path
        self.seed = seed
        self.num_workers = num_workers  # data-loading processes: the engine's draws in parallel (a GPU needs them)
        self._scheduler = None
        self._click_simulation: Optional[ClickSimulation] = None
        self.size = size
        self.modality = modality
        self.exclude_labels = tuple(int(v) for v in exclude_labels)
        self.max_rounds = max_rounds
        self.crop_prob = crop_prob  # share of training samples cropped around the target (zoom-in's view)
        self.zoom_far = zoom_far  # not None: corrective rounds in serving's zoom-in view (ClickSimulation)
        self.prev_perturb = prev_perturb  # share of last rounds on a perturbed target as the previous mask
        self.lr, self.lr_step_fraction, self.lr_gamma = lr, lr_step_fraction, lr_gamma
        self.pemed_publish_path = publish_path
        self.publish_each_epoch = publish_each_epoch
        self.replay_maps, self.replay_share = replay_maps, replay_share
        self._replay: Optional[DataEngine] = None
        self.trainable = trainable  # the network's top-level parts that learn (None: all); the rest stay frozen
        self.gate = gate  # with publish_each_epoch off: the run's model must pass it to replace the served one
        if freeze_norm_statistics:
            keep_norm_statistics(network)
        kwargs.setdefault("config", {})
        kwargs["config"] = {"max_epochs": 20, "train_batch_size": 8, "val_batch_size": 8, "val_split": 0.1,
                            "dataset": "CacheDataset", "dataloader": "ThreadDataLoader",
                            # MLflow 3 refuses MONAI Label's default file store: tracking is opt-in
                            # (request {"tracking": "mlflow", "tracking_uri": "sqlite:///..."}).
                            "tracking": "None", **kwargs["config"]}
        super().__init__(model_dir, description, **kwargs)

    def replay_engine(self) -> Optional[DataEngine]:
        """The engine replayed beside saved labels, loaded on first use (None: no replay)."""
        if self._replay is None and self.replay_maps and self.engine is None:
            try:
                self._replay = DataEngine(load_maps(cache=self.replay_maps))
            except (OSError, ValueError) as e:
                logger.warning(f"no replay of the data engine ({self.replay_maps}): {e}")
                self.replay_maps = ""
        return self._replay

    def network(self, context: Context):
        return self._network

    def train(self, rank, world_size, request, datalist):
        """MONAI Label numbers the processes of one machine 0 .. world_size - 1; on several machines
        (``nodes`` > 1) they take their global ranks, and the world is every machine's processes."""
        nodes = int(request.get("nodes", 1) or 1)
        if nodes > 1:
            rank, world_size = int(request.get("node_rank", 0)) * world_size + rank, nodes * world_size
        return super().train(rank, world_size, request, datalist)

    def _device(self, context: Context):
        if context.multi_gpu and not torch.cuda.is_available():  # DDP on CPU processes (gloo)
            logger.info(f"{context.local_rank} - Using Device: cpu (DDP over gloo, {context.world_size} processes)")
            return torch.device("cpu")
        if context.multi_gpu and int(context.request.get("nodes", 1) or 1) > 1:  # this machine's GPU of the rank
            gpus = context.request.get("gpus", "all")
            ids = list(range(torch.cuda.device_count())) if gpus == "all" else [int(g) for g in gpus.split(",")]
            device = torch.device(f"cuda:{ids[context.local_rank % len(ids)]}")
            torch.cuda.set_device(device)
            return device
        return super()._device(context)

    def _create_network_and_optimizer(self, context: Context):
        if not (context.multi_gpu and context.device.type == "cpu"):
            return super()._create_network_and_optimizer(context)
        network = self.network(context).to(context.device)
        context.network = network
        optimizer = self.optimizer(context)
        return torch.nn.parallel.DistributedDataParallel(network, find_unused_parameters=self._find_unused_parameters), optimizer

    def _rank_seed(self, context: Context) -> Optional[int]:
        """Each DDP process draws its own samples and clicks."""
        if not context.multi_gpu:
            return self.seed
        return (self.seed or 0) + 7919 * context.local_rank

    def load_path(self, output_dir, pretrained=True):
        # The network handed in is the start (a checkpoint, or a resumed run's weights); BasicTrainTask
        # would otherwise load the run folder's best-metric model.pt over it.
        return None

    def train_data_loader(self, context: Context, num_workers=0, shuffle=True):
        num_workers = max(num_workers, self.num_workers)
        samples = int(context.request.get("samples_per_epoch", 0))
        if not samples:
            return super().train_data_loader(context, num_workers, shuffle)
        dataset, datalist = self._dataset(context, context.train_datalist, is_train=True)
        replayed = ["seed" in d for d in datalist]
        n_saved = len(datalist) - sum(replayed)
        share = self.replay_share if n_saved and any(replayed) else float(any(replayed))
        weights = [share / sum(replayed) if r else (1 - share) / n_saved for r in replayed]
        generator = None
        if context.multi_gpu:  # each process its share, from its own stream
            samples = max(1, samples // context.world_size)
            generator = torch.Generator().manual_seed(self._rank_seed(context))
        sampler = torch.utils.data.WeightedRandomSampler(weights, samples, replacement=True, generator=generator)
        loader = ThreadDataLoader if context.dataloader_type == "ThreadDataLoader" else DataLoader
        logger.info(f"an epoch: {samples} draws, {share:.0%} replayed from the engine, the rest from "
                    f"{n_saved} saved label(s)")
        return loader(dataset, batch_size=context.train_batch_size, sampler=sampler, num_workers=num_workers)

    def partition_datalist(self, context: Context, shuffle=False):
        val = self._load_external_ds(context.request.get("val_ds")) or []
        train = self._load_external_ds(context.request.get("train_ds", context.datalist)) or []
        val_split = float(context.request.get("val_split", 0.0))
        if not val and val_split > 0 and len(train) >= MIN_ITEMS_FOR_VALIDATION:
            held = [stable_validation(d, val_split) for d in train]
            train, val = [d for d, h in zip(train, held) if not h], [d for d, h in zip(train, held) if h]
            if not train:  # too few labels to hold any back
                train, val = val, []
        if self.replay_engine() is not None:
            train = train + [{"seed": 0, "fixed": False}]  # each draw a fresh engine sample
        logger.info(f"training on {len(train)} items, validating on {len(val)}")
        return train, val

    def pre_process(self, request, datastore):
        yield_to_clicks()  # a run in MONAI Label's background process leaves the CPU to clicks first
        # engine runs have no datastore: their items come in the request's train_ds / val_ds
        return request.get("train_ds", []) if datastore is None else super().pre_process(request, datastore)

    def optimizer(self, context: Context):
        learning = learning_parameters(_unwrapped(context.network), self.trainable)
        return torch.optim.Adam(learning, lr=float(context.request.get("lr", self.lr)))

    def loss_function(self, context: Context):
        return NormalizedFocalLoss(alpha=0.5, gamma=2.0)

    def lr_scheduler_handler(self, context: Context):
        # The paper decays by 0.6 every 20 of 100 epochs: the same shape over any max_epochs.
        step = max(1, int(round(context.max_epochs * self.lr_step_fraction)))
        self._scheduler = torch.optim.lr_scheduler.StepLR(context.optimizer, step_size=step, gamma=self.lr_gamma)
        return LrScheduleHandler(self._scheduler, print_lr=True)

    def _pre_transforms(self, augment: bool):
        spatial = ("image", "label")
        to_tensors = EnsureTyped(keys=spatial, dtype=(torch.float32, torch.int16), track_meta=False)
        # Clients send slices in any orientation and at any size.
        spatial_aug = [
            RandCropAroundTargetd(keys=spatial, prob=self.crop_prob),
            RandFlipd(keys=spatial, prob=0.5, spatial_axis=0),
            RandFlipd(keys=spatial, prob=0.5, spatial_axis=1),
            RandRotate90d(keys=spatial, prob=0.5, max_k=3),
        ]
        to_network = [
            Resized(keys=spatial, spatial_size=self.size, size_mode="longest", mode=("bilinear", "nearest")),
            SpatialPadd(keys=spatial, spatial_size=(self.size, self.size)),
        ]
        if self.engine is not None:  # the engine draws, warps, degrades and normalises each sample
            load = [DataEngined(self.engine), to_tensors]
            return load + spatial_aug + to_network if augment else load + to_network
        load = [
            LoadImaged(keys=spatial),
            EnsureChannelFirstd(keys=spatial),
            MatchChannelsd(keys="image", channels=self._network.in_channels),
            RandStructureSliced(keys=spatial, exclude=self.exclude_labels),
            to_tensors,
            intensity_transform(self.modality, "image"),
            SelectStructured(keys="label", exclude=self.exclude_labels),
        ]
        spatial_aug.append(
            RandZoomd(keys=spatial, prob=0.5, min_zoom=0.8, max_zoom=1.5, mode=("bilinear", "nearest"), keep_size=True))
        intensity_aug = [
            RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.7, 1.5)),
            RandGaussianNoised(keys="image", prob=0.2, std=0.02),
        ]
        saved = load + spatial_aug + to_network + intensity_aug if augment else load + to_network
        replay = self.replay_engine()
        if replay is None:
            return saved
        replayed = [DataEngined(replay), to_tensors] + (spatial_aug if augment else []) + to_network
        return [_EitherSourced(Compose(replayed), Compose(saved))]

    def __call__(self, request, datastore):
        """A run that fails says why in its last log line, which the train status shows (a full or
        unwritable model folder by name and free space), and leaves the served model as it was.

        ``{"processes": N}`` in the request (N >= 2, no GPU) trains with PyTorch DDP on N CPU processes
        over gloo, through MONAI Label's own multi-GPU path (which starts DDP only when it counts 2 or
        more CUDA devices): each process draws ``samples_per_epoch / N`` samples with its own random
        streams, gradients are averaged, rank 0 publishes. With GPUs, MONAI Label's ``multi_gpu`` and
        ``gpus`` work as they do for any app (NCCL). Several machines: the same request on each, with
        ``"nodes": M``, its ``"node_rank"`` (0 .. M-1) and node 0's ``"distributed_url"``; a machine's
        processes take the global ranks ``node_rank * per_machine + i`` (``train``)."""
        request = dict(request)
        processes = int(request.pop("processes", 0) or 0)
        if int(request.get("nodes", 1) or 1) > 1 and not request.get("distributed_url"):
            raise ValueError("a run on several machines needs 'distributed_url' (tcp://<node 0's address>:<port>)")
        if processes >= 2 and not torch.cuda.is_available():
            request.update(multi_gpu=True, gpus=",".join(str(i) for i in range(processes)), distributed_backend="gloo",
                           distributed_url=request.get("distributed_url") or f"tcp://127.0.0.1:{free_port()}")
        try:
            return super().__call__(request, datastore)
        except Exception as e:
            raise RuntimeError(f"PE-MED: training failed, the served model stays: "
                               f"{failure_reason(e, os.path.dirname(os.path.abspath(self.pemed_publish_path)))}") from e

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
        self._click_simulation = ClickSimulation(self.max_rounds, self_loop=self._network.self_loop, train=True,
                                                 seed=self._rank_seed(context) if context else self.seed,
                                                 zoom_far=self.zoom_far,
                                                 prev_perturb=self.prev_perturb, prev_gain=self._network.prev_gain)
        return self._click_simulation

    def val_iteration_update(self, context: Context):
        return ClickSimulation(self.max_rounds, self_loop=self._network.self_loop, train=False, zoom_far=self.zoom_far,
                               prev_gain=self._network.prev_gain)

    def train_handlers(self, context: Context):
        handlers = super().train_handlers(context)
        if context.local_rank == 0:
            check = None if self.gate is None or self.publish_each_epoch else (
                lambda before, after: self.gate.decide(before, after, self._gate_samples(context)))
            publisher = _PublishPEMED(self.pemed_publish_path, context, self.publish_each_epoch, check)
            handlers.append(publisher)
            if self.resume_path:
                handlers.append(_ResumeState(self.resume_path, self, context, publisher))
        return handlers

    def _gate_samples(self, context: Context):
        """The gate's samples: the saved labels (held-back ones first) and, with replay, engine draws."""
        saved = [d for d in list(context.val_datalist or []) + list(context.train_datalist) if "seed" not in d]
        replay = self.replay_engine()
        kinds = sorted(k for k, w in replay.kind_weights.items() if w > 0) if replay is not None else ()
        return self.gate.samples(Compose(self._pre_transforms(augment=False)), saved, kinds)


def keep_norm_statistics(network: torch.nn.Module) -> None:
    """BatchNorm layers normalise with the statistics the network was trained with, in training too,
    and keep them: batches of a few labels are no estimate of them. Measured on fine-tuning on the 8
    putamen slices (benchmarks/results/fine_tuning/NOTES.md): slightly better everywhere (NoC@90 held back
    13.38 against 13.54, lesions 5.46 against 5.67, large 4.25 against 4.56)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(_use_stored_statistics)


def _use_stored_statistics(module, args):  # a module-level function: a DDP run pickles the network
    module.training = False


def learning_parameters(net: torch.nn.Module, trainable: Optional[Sequence[str]]) -> list:
    """The parameters that learn: all, or those of the named top-level parts (the rest frozen)."""
    if trainable is not None:
        unknown = set(trainable) - {name for name, _ in net.named_children()}
        if unknown:
            raise ValueError(f"no such part of the network to train: {sorted(unknown)}")
        for name, part in net.named_children():
            part.requires_grad_(name in trainable)
    return [p for p in net.parameters() if p.requires_grad]


def _unwrapped(network: torch.nn.Module) -> torch.nn.Module:
    """The network itself, out of a DistributedDataParallel wrapper if it is in one."""
    return network.module if hasattr(network, "module") else network


class _EitherSourced(Randomizable, MapTransform):
    """An engine item ({"seed": ...}) through the engine's chain, a saved label through the datastore's;
    either way {"image", "label"} tensors of the network's size (and the foundation model's cached
    ``embedding`` and ``features`` where the chains add them), so one batch can hold both."""

    def __init__(self, engine_chain: Compose, saved_chain: Compose):
        MapTransform.__init__(self, keys=["image", "label"], allow_missing_keys=True)
        self.engine_chain, self.saved_chain = engine_chain, saved_chain

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.engine_chain.set_random_state(seed, state)
        self.saved_chain.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data):
        d = (self.engine_chain if "seed" in data else self.saved_chain)(data)
        return {k: d[k] for k in ("image", "label", "embedding", "features") if k in d}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failure_reason(error: Exception, folder: str) -> str:
    """A training failure in words, the model folder's state first when that is the cause."""
    try:
        free_mb = shutil.disk_usage(folder).free / 2 ** 20
    except OSError:
        free_mb = float("nan")
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or free_mb < 64:
        return f"the model folder {folder} is full ({free_mb:.1f} MB free): {type(error).__name__}: {error}"
    if isinstance(error, PermissionError) or (os.path.isdir(folder) and not os.access(folder, os.W_OK)):
        return f"the model folder {folder} cannot be written: {type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


def stable_validation(item: dict, val_split: float) -> bool:
    """Does this datalist item belong to validation? Decided by a hash of its image's file name (or of
    the item), the same in every run."""
    name = os.path.basename(str(item.get("image", sorted(item.items()))))
    return int(hashlib.md5(name.encode()).hexdigest()[:8], 16) / 16 ** 8 < val_split


class _PublishPEMED:
    """Write a self-describing checkpoint (network description + weights) that the infer task,
    evaluate.py and the tests load without knowing how it was trained: after every epoch
    (``each_epoch``) or at the end of the run if every epoch's loss was finite and ``check`` (the
    publish gate: the network the run started from, the run's network -> GateResult) lets it. Its
    meta keeps the mean training loss of every epoch and the gate's figures."""

    def __init__(self, path: str, context: Context, each_epoch: bool = True, check=None):
        self.path = path
        self.context = context
        self.each_epoch = each_epoch
        self.check = check
        self.epoch_losses = []
        self._sum, self._n = 0.0, 0
        self._start: Optional[torch.nn.Module] = None

    def attach(self, engine):
        if self.check is not None:
            engine.add_event_handler(Events.STARTED, self._keep_start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if not self.each_epoch:
            engine.add_event_handler(Events.COMPLETED, self._run_completed)

    def _keep_start(self, engine):
        self._start = copy.deepcopy(_unwrapped(self.context.network)).eval()

    def _accumulate(self, engine):
        self._sum += float(engine.state.output[0]["loss"])
        self._n += 1

    def _epoch_completed(self, engine):
        self.epoch_losses.append(self._sum / max(1, self._n))
        self._sum, self._n = 0.0, 0
        if self.each_epoch:
            self.publish(engine)

    def _run_completed(self, engine):
        if not all(math.isfinite(v) for v in self.epoch_losses):
            logger.error(f"PE-MED: not published, the training loss was not finite: {self.epoch_losses}")
            return
        gate = None
        if self.check is not None and self._start is not None:
            net = _unwrapped(self.context.network)
            was_training = net.training
            gate = dataclasses.asdict(self.check(self._start, net))
            net.train(was_training)
            if not gate["publish"]:
                logger.warning(f"PE-MED: not published, the served model stays: {gate['reason']}; "
                               f"mean Dice over the first clicks: {gate['scores']}")
                return
            logger.info(f"PE-MED: publish gate passed: {gate['scores']}")
        self.publish(engine, gate)

    def publish(self, engine, gate: Optional[dict] = None):
        net = _unwrapped(self.context.network)
        meta = {"epoch": engine.state.epoch, "iterations": engine.state.iteration, "epoch_losses": self.epoch_losses,
                "train_mean_dice": engine.state.metrics.get(BasicTrainTask.TRAIN_METRIC_MEAN_DICE)}
        if gate:
            meta["gate"] = gate
        if self.context.evaluator is not None:
            meta["val_mean_dice"] = self.context.evaluator.state.metrics.get(BasicTrainTask.VAL_METRIC_MEAN_DICE)
        try:
            save_checkpoint(self.path, net, meta)
        except OSError as e:
            raise RuntimeError(f"PE-MED: not published, cannot write {self.path} ({e}); the served model "
                               f"stays") from e
        logger.info(f"PE-MED checkpoint written to {self.path}: {meta}")


def _random_states(transforms) -> list:
    return [t.R.get_state() for t in getattr(transforms, "transforms", ()) if hasattr(t, "R")]


class _ResumeState:
    """Everything a run needs to go on in a later sitting, written atomically after every epoch and
    read back when the run starts (if the file exists): the run continues at the next epoch with the
    optimiser, learning-rate schedule and random streams where they were."""

    def __init__(self, path: str, task: "PEMEDTrain", context: Context, publisher: _PublishPEMED):
        self.path, self.task, self.context, self.publisher = path, task, context, publisher

    def attach(self, engine):
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _transforms(self, engine):
        return engine.data_loader.dataset.transform

    def save(self, engine):
        net = _unwrapped(self.context.network)
        sim = self.task._click_simulation
        state = {
            "epoch": engine.state.epoch, "iteration": engine.state.iteration,
            "epoch_losses": list(self.publisher.epoch_losses),
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": self.context.optimizer.state_dict(),
            "scheduler": self.task._scheduler.state_dict() if self.task._scheduler else None,
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
            "transform_rng": _random_states(self._transforms(engine)),
            "click_rng": (sim.rng.bit_generator.state, sim.sampler.rng.bit_generator.state) if sim else None,
        }
        tmp = self.path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self, engine):
        if not os.path.exists(self.path):
            return
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        net = _unwrapped(self.context.network)
        net.load_state_dict(state["model"])
        self.context.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] and self.task._scheduler:
            self.task._scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        transforms = [t for t in getattr(self._transforms(engine), "transforms", ()) if hasattr(t, "R")]
        for t, r in zip(transforms, state["transform_rng"]):
            t.R.set_state(r)
        sim = self.task._click_simulation
        if sim and state["click_rng"]:
            sim.rng.bit_generator.state, sim.sampler.rng.bit_generator.state = state["click_rng"]
        self.publisher.epoch_losses = list(state["epoch_losses"])
        engine.state.epoch, engine.state.iteration = state["epoch"], state["iteration"]
        logger.info(f"resumed from {self.path} after epoch {state['epoch']}")
