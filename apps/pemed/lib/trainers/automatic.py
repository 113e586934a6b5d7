"""Trainers of the automatic methods, which learn named structures from labels: ProMISe's new modules,
Curriculum Prompting's box detector, edge-point network and SAM prompt encoder / decoder, and the
task-specific UNet baseline. All run on PE-MED's trainer machinery (BasicTrainTask, ignite; resume,
publish after each epoch or once at the end, replay of the data engine beside saved labels).

Samples: the engine's named draws (Colin27's AAL structures under random warps and contrasts:
DataEngine.draw_named) or saved label volumes (a slice holding a named structure); then one named
structure becomes the target and the image the [image, name plane] input (lib/transforms/named.py).
Left-right flips would swap a structure's side, so these trainers never flip.
"""

from typing import Dict, List, Optional

import os

import numpy as np
import torch
from monai.handlers import MeanSquaredError, from_engine
from monai.losses import DiceCELoss
from monailabel.interfaces.datastore import DefaultLabelTag
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized,
                              SpatialPadd)

from ..data.engine import NamedDrawd
from ..networks.curriculum import HeatmapLoss
from ..networks.promise import ProMISe
from ..prompts.boxes import box_of, edge_points, jitter_box
from ..prompts.clicks import Click
from ..named_labels import atlas_value
from ..transforms.named import HeatmapTargetd, KnownOnlyd, NamedClassesd, PickNamed
from ..transforms.transforms import MatchChannelsd, Memoized, RandStructureSliced, intensity_transform
from .pemed import PEMEDTrain, _EitherSourced
from .sam import SAMPromptSimulation, SAMTrain, _tensor, finish_iteration


class NamedStructures:
    """The data of the automatic methods (a mixin before PEMEDTrain): ``structures`` are the names
    and their values (lib/named_labels.py), in class order; ``pick`` False keeps the class map
    (every name at once: the baseline, the heatmap networks). Saved labels name their values with
    the ``label_info`` their client sent (``pre_process``)."""

    structures: Dict[str, int] = {}
    pick: bool = True
    target_transforms: list = []
    embeddings = None  # a FoundationEmbeddingd: samples in the foundation model's frame, embeddings cached
    replay_pool = 32  # with embeddings: the engine draws replayed beside saved labels

    def _pre_transforms(self, augment: bool):
        spatial = ("image", "label")
        to_tensors = EnsureTyped(keys=spatial, dtype=torch.float32, track_meta=False)
        pick = [PickNamed()] if self.pick else []
        if self.embeddings is not None:  # into the foundation model's frame, with the slice's cached features
            tail = [self.embeddings] + pick + list(self.target_transforms)
        else:
            tail = pick + [Resized(keys=spatial, spatial_size=self.size, size_mode="longest", mode=("bilinear", "nearest")),
                           SpatialPadd(keys=spatial, spatial_size=(self.size, self.size))] + list(self.target_transforms)
        if self.engine is not None:
            return [NamedDrawd(self.engine, self.values), to_tensors] + tail
        # saved labels: one slice along the axis they were drawn along, holding a structure they name,
        # normalised as serving normalises it (the whole image, then the slice)
        read = Memoized(Compose([LoadImaged(keys=spatial), EnsureChannelFirstd(keys=spatial),
                                 MatchChannelsd(keys="image", channels=1), NamedClassesd(self.structures), to_tensors,
                                 intensity_transform(self.modality, "image")]))
        saved = [read, RandStructureSliced(keys=spatial)] + tail
        replay = self.replay_engine()
        if replay is None:
            return saved
        return [_EitherSourced(Compose([NamedDrawd(replay, self.values), to_tensors] + tail), Compose(saved))]

    @property
    def values(self):
        return tuple(self.structures.values())

    def pre_process(self, request, datastore):
        """The saved labels, each with the segments its client named (``label_info``)."""
        items = super().pre_process(request, datastore)
        return items if datastore is None else with_label_info(items, datastore)

    def partition_datalist(self, context, shuffle=False):
        """With cached embeddings, the engine is replayed from a fixed pool of ``replay_pool`` draws
        (seeds 0 ..), each embedded once, instead of a fresh draw each time."""
        train, val = super().partition_datalist(context, shuffle)
        if self.embeddings is not None and self.engine is None and self.replay_engine() is not None:
            train = [d for d in train if "seed" not in d] + [{"seed": i, "fixed": True} for i in range(self.replay_pool)]
        return train, val

    def warm_replay(self) -> int:
        """Encode the replay pool into the embedding store now (the server does it in the background
        at start-up), so the first run a save starts pays no encoder pass for it; the number of
        draws encoded."""
        replay = self.replay_engine()
        if self.embeddings is None or replay is None:
            return 0
        before = self.embeddings.store.predictor.encoder_passes
        draw = Compose([NamedDrawd(replay, self.values), EnsureTyped(keys=("image", "label"), track_meta=False)])
        for seed in range(self.replay_pool):
            self.embeddings(draw({"seed": seed, "fixed": True}))
        return self.embeddings.store.predictor.encoder_passes - before

    def forward_cached(self, network, image, features):
        """The network on a batch whose foundation-model features are cached (``embeddings``)."""
        raise NotImplementedError

    # without cached features, the engine's own step: network(input) -> loss
    def train_iteration_update(self, context):
        return CachedFeaturesStep(self.forward_cached, True) if self.embeddings is not None else None

    def val_iteration_update(self, context):
        return CachedFeaturesStep(self.forward_cached, False) if self.embeddings is not None else None


def with_label_info(items: List[dict], datastore) -> List[dict]:
    """The datastore's training items, each with its final label's ``label_info`` (None without)."""
    final = DefaultLabelTag.FINAL.value
    info_by_path = {}
    for image_id in datastore.get_labeled_images():
        label_id = datastore.get_label_by_image_id(image_id, final)
        if label_id:
            segments = (datastore.get_label_info(label_id, final) or {}).get("label_info")
            info_by_path[os.path.realpath(datastore.get_label_uri(label_id, final))] = segments
    return [dict(d, label_info=info_by_path.get(os.path.realpath(d["label"]))) for d in items]


class CachedFeaturesStep:
    """An ignite ``iteration_update``: the engine's own step (network -> loss -> optimiser), with the
    batch's cached ``embedding`` and APM ``features`` handed to the network (``forward(network,
    image, (embeddings, features))``) instead of an encoder pass."""

    def __init__(self, forward, train: bool):
        self.forward, self.train = forward, train

    def __call__(self, engine, batchdata):
        device = engine.state.device
        image, label = _tensor(batchdata["image"], device), _tensor(batchdata["label"], device).float()
        features = (_tensor(batchdata["embedding"], device).float(),
                    [_tensor(f, device).float() for f in batchdata["features"]])
        amp = device.type == "cuda" and bool(getattr(engine, "amp", False))
        engine.network.train(self.train)
        if self.train:
            engine.optimizer.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(self.train), torch.autocast(device.type, enabled=amp):
            pred = self.forward(engine.network, image, features)
            loss = engine.loss_function(pred, label) if self.train else torch.zeros((), device=device)
        return finish_iteration(engine, self.train, amp, loss, image, label, pred)


class ProMISeTrain(NamedStructures, PEMEDTrain):
    """Only the APM and IPS learn (Adam); every foundation-model weight stays as it was. BCE + soft Dice."""

    def __init__(self, model_dir: str, network: ProMISe, publish_path: str, structures: Dict[str, int], embeddings=None,
                 **kwargs):
        self.structures, self.embeddings = dict(structures), embeddings
        kwargs.setdefault("description", "Train ProMISe's Auto-Prompting Module and pattern tokens")
        super().__init__(model_dir, network, publish_path, **kwargs)

    def optimizer(self, context):
        net = context.network
        return torch.optim.Adam(net.new_modules().parameters(), lr=float(context.request.get("lr", self.lr)))

    def loss_function(self, context):
        return DiceCELoss(sigmoid=True)

    def forward_cached(self, network, image, features):
        return network(image, features=features)


class HeatmapTrain(NamedStructures, PEMEDTrain):
    """Curriculum's box detector or edge-point network (``network.head``), a head on the cached
    embeddings (``embeddings``: a FoundationEmbeddingd), on every name of each slice at once."""

    pick = False

    def __init__(self, model_dir: str, network, publish_path: str, structures: Dict[str, int], embeddings=None, **kwargs):
        self.structures = dict(structures)
        replay_known = [atlas_value(v) for v in self.values]
        self.target_transforms = [HeatmapTargetd(network.head, len(self.values), size=network.map_size,
                                                 replay_known=replay_known)]
        self.embeddings = embeddings
        kwargs["size"] = network.size  # the foundation model's input side
        kwargs.setdefault("description", f"Train Curriculum Prompting's {network.head} network")
        super().__init__(model_dir, network, publish_path, **kwargs)

    def forward_cached(self, network, image, features):
        return network(features[0])

    def loss_function(self, context):
        return HeatmapLoss(self._network.head)

    # The detector's maps are masks: PE-MED's threshold and Dice metrics. The edge heatmaps: the
    # squared error of their probabilities. Either over what the samples say (no -1 targets).
    def train_post_transforms(self, context):
        if self._network.head == "box":
            return super().train_post_transforms(context) + [KnownOnlyd()]
        return [Activationsd(keys="pred", sigmoid=True), KnownOnlyd()]

    def train_key_metric(self, context):
        if self._network.head == "box":
            return super().train_key_metric(context)
        return {"train_heatmap_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))}

    def val_key_metric(self, context):
        if self._network.head == "box":
            return super().val_key_metric(context)
        return {"val_heatmap_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))}


class TaskUNetTrain(NamedStructures, PEMEDTrain):
    """The baseline: every named structure at once, softmax Dice + cross-entropy."""

    pick = False

    def __init__(self, model_dir: str, network, publish_path: str, structures: Dict[str, int], **kwargs):
        self.structures = dict(structures)
        kwargs["size"] = network.size
        kwargs.setdefault("description", "Train the task-specific UNet baseline")
        super().__init__(model_dir, network, publish_path, **kwargs)

    def loss_function(self, context):
        # Dice over the batch (nnU-Net's batch Dice): per sample, each of the many names absent from
        # a slice pushes its class to zero everywhere, and the network settles on all background.
        return DiceCELoss(softmax=True, to_onehot_y=True, batch=True)

    def train_post_transforms(self, context):
        n = 1 + len(self._network.names)
        return [Activationsd(keys="pred", softmax=True), AsDiscreted(keys=("pred", "label"), argmax=(True, False),
                                                                     to_onehot=(n, n))]


class CurriculumSimulation(SAMPromptSimulation):
    """Curriculum's two stages as its SAM fine-tuning sees them: the ground truth's box (SAM's box
    noise) -> the coarse mask; the 8 edge points (moved by up to ``point_noise`` pixels, labelled
    negative, or positive with ``edge_positive``) with the coarse logits as the mask prompt and no
    box -> the final mask. Dice + BCE on both; the image encoder stays frozen."""

    train_encoder = False

    def __init__(self, train: bool = True, seed: Optional[int] = None, point_noise: float = 2.0,
                 edge_positive: bool = False):
        super().__init__(0, train, 1.0, seed, iou_weight=0.0)
        self.point_noise, self.edge_positive = point_noise, edge_positive

    def _edges(self, g: np.ndarray):
        points = edge_points(g, self.edge_positive)
        if not self.train:
            return points
        n = np.clip(np.round(self.rng.normal(0, self.point_noise / 2, (len(points), 2))), -self.point_noise,
                    self.point_noise)
        return [Click(int(np.clip(p.row + dr, 0, g.shape[0] - 1)), int(np.clip(p.col + dc, 0, g.shape[1] - 1)),
                      p.positive) for p, (dr, dc) in zip(points, n)]

    def passes(self, sam, emb, gts, labels):
        boxes = [(jitter_box(b, g.shape, self.rng) if self.train else b) if (b := box_of(g)) else None for g in gts]
        low, iou = self._decode(sam, emb, boxes, [[] for _ in gts], None)
        coarse_loss, _ = self._loss(low, iou, labels)
        final, iou = self._decode(sam, emb, [None] * len(gts), [self._edges(g) for g in gts], low.detach())
        final_loss, logits = self._loss(final, iou, labels)
        return [coarse_loss, final_loss], logits


class CurriculumSAMTrain(NamedStructures, SAMTrain):
    """Fine-tunes the foundation model's prompt encoder and mask decoder (AdamW) for Curriculum's
    prompts; the image encoder is frozen and shared with the base model."""

    def __init__(self, model_dir: str, network, publish_path: str, structures: Dict[str, int],
                 edge_positive: bool = False, embeddings=None, **kwargs):
        self.structures, self.edge_positive, self.embeddings = dict(structures), edge_positive, embeddings
        kwargs.setdefault("trainable", ["prompt_encoder", "mask_decoder"])
        kwargs.setdefault("description", "Fine-tune SAM's prompt encoder and decoder for Curriculum Prompting")
        super().__init__(model_dir, network, publish_path, **kwargs)

    def train_iteration_update(self, context):
        self._click_simulation = CurriculumSimulation(True, self._rank_seed(context), edge_positive=self.edge_positive)
        return self._click_simulation

    def val_iteration_update(self, context):
        return CurriculumSimulation(False, edge_positive=self.edge_positive)

