"""One SAM-architecture model and the image embeddings it has computed, per (image, slice).

The image encoder is the costly part (the whole cost of a vit_b on a CPU); a new prompt on a slice
whose embedding is cached runs only the prompt encoder and the mask decoder (Meta's SamPredictor
caches one image; this keeps the ``cache_size`` most recently used). Prompts and masks are in the
slice's own array frame: the letterbox (lib/predictor.py's, the PE-MED network's) maps them to the
model's square input and back.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .networks.sam import PromptableSAM, boxes_tensor, decode, encode, points_tensor
from .predictor import Letterbox
from .prompts.boxes import Box
from .prompts.clicks import Click


@dataclass
class SliceEmbedding:
    embeddings: torch.Tensor  # (1, 256, E, E)
    intermediates: List[torch.Tensor]  # the spec's APM blocks' outputs, (1, E, E, width) each
    box: Letterbox  # the slice in the model's input frame
    image: torch.Tensor  # (1, 1, S, S), the model's input


@dataclass
class SlicePrediction:
    logits: np.ndarray  # (H, W) in the slice's frame
    low_res: torch.Tensor  # (1, 1, L, L): the decoder's logits, a later mask prompt
    iou: float  # the decoder's own estimate of the mask's IoU


class SAMPredictor:
    def __init__(self, sam: PromptableSAM, device: str = "cpu", cache_size: int = 32):
        self.sam = sam.to(device).eval()
        self.device = torch.device(device)
        self.cache_size = cache_size
        self._cache: "OrderedDict[Hashable, SliceEmbedding]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self.sam.spec.img_size

    def network_image(self, image: np.ndarray) -> SliceEmbedding:
        h, w = image.shape
        box = Letterbox(h, w, self.size)
        x = box.image_to_network(torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32,
                                                 device=self.device)[None, None])
        return SliceEmbedding(None, [], box, x)

    @torch.no_grad()
    def embed(self, image: np.ndarray, key: Optional[Hashable] = None) -> SliceEmbedding:
        """The slice's embedding (and the APM blocks' features), from the cache when ``key`` was seen."""
        if key is not None:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
        out = self.network_image(np.asarray(image, dtype=np.float32))
        out.embeddings, out.intermediates = encode(self.sam, out.image, self.sam.spec.apm_blocks)
        if key is not None:
            with self._lock:
                self._cache[key] = out
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def cached(self, key: Hashable) -> bool:
        return key in self._cache

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

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
        model's image embeddings (Curriculum's fine-tuned ones)."""
        if points is None and clicks:
            points = self.points([emb.box.to_network(c) for c in clicks])
        boxes = boxes_tensor([self.to_network_box(emb, box)], self.device) if box is not None else None
        low, iou = decode(model or self.sam, emb.embeddings, points, boxes, mask_logits, token_shift, multimask)
        best = int(torch.argmax(iou[0]))
        low, score = low[:, best:best + 1], float(iou[0, best])
        return SlicePrediction(self.to_slice(emb, low), low, score)

    def to_slice(self, emb: SliceEmbedding, low_res: torch.Tensor) -> np.ndarray:
        """Low-resolution logits -> logits on the slice's own pixels."""
        up = F.interpolate(low_res, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return emb.box.network_to_image(up)[0, 0].float().cpu().numpy()
