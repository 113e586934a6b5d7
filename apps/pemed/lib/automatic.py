"""The automatic methods as predictors: a 2D slice and a structure's name -> a mask, no clicks.
Serving (lib/infers/automatic.py) and evaluation (evaluate_auto.py) both call these.

Both share one SAMPredictor (the foundation model and its cached image embeddings per (image,
slice)). Curriculum Prompting: a box -> the coarse mask; the edge-point network's 8 points,
labelled negative, with the coarse mask's logits as the mask prompt and no box -> the final mask,
decoded by Curriculum's fine-tuned prompt encoder and mask decoder. ``stages`` gives the paper's
ablation rows. The box (``box_source``): "edges", the bounds of the 8 edge points (they include the
structure's extreme points in the four axis directions, so they bound it as DEXTR's extreme points
do), or "detector", the box around the detector's map (the paper's); the edge points' box measures
better (docs/automatic.md), and their peaks say whether the structure is on the slice. ProMISe: the
APM's 16 points (and box) and IPS's token shifts on the frozen model; the mask thresholded at 0.5,
then a 5 x 5 morphological opening.
"""

from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np
import torch
from scipy import ndimage

from .checkpoint import float32_state, load_checkpoint
from .foundation import SAMPredictor, SliceEmbedding, load_decoder, load_foundation
from .networks.baseline import TaskUNet
from .networks.curriculum import PromptHeatmapNet, decode_box
from .networks.promise import ProMISe
from .networks.sam import PromptableSAM
from .predictor import Letterbox
from .prompts.boxes import Box, heatmap_peaks
from .prompts.clicks import Click

def load_network(path: str, device: str = "cpu", base_sam: Optional[PromptableSAM] = None):
    """Any checkpoint of the app, by the type its description names: "sam" (a whole foundation
    model), "promise" and "sam_decoder" (built on ``base_sam``, whose weights they do not hold),
    "heatmaps", "task_unet", or PE-MED's. -> (network, meta)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("network"), dict) or "model" not in ckpt:
        raise ValueError(f"{path} is not a checkpoint of this app (expected 'network' and 'model' entries)")
    desc, state = ckpt["network"], float32_state(ckpt["model"])
    kind = desc.get("type", "pemed")
    if kind == "sam":
        return load_foundation(path, device=device)
    if kind in ("promise", "sam_decoder") and base_sam is None:
        raise ValueError(f"{path} holds a {kind} without its foundation model: load it with base_sam")
    if kind == "sam_decoder":
        return load_decoder(path, base_sam, device, ckpt), ckpt.get("meta", {})
    if kind == "promise":
        network = ProMISe(base_sam, desc["names"], desc["use_ips"], desc.get("base", ""), desc.get("box", False))
        network.new_modules().load_state_dict(state)
    elif kind == "heatmaps":
        if "channels" not in desc:
            raise ValueError(f"{path} is a detector of an earlier version (on images, not the foundation model's "
                             f"embeddings): train it again (apps/pemed/train_auto.py box / edges)")
        network = PromptHeatmapNet(desc["names"], desc["head"], desc["size"], desc["channels"], desc["width"])
        network.load_state_dict(state)
    elif kind == "task_unet":
        network = TaskUNet(desc["names"], desc["channels"], desc.get("size", 256))
        network.load_state_dict(state)
    else:
        return load_checkpoint(path, device)
    return network.to(device).eval(), ckpt.get("meta", {})


STAGES = ("points", "box", "box_points", "box_mask", "curriculum")
BOX_SOURCES = ("edges", "detector")
OPENING = np.ones((5, 5), bool)


@dataclass
class AutoResult:
    logits: np.ndarray  # (H, W), the slice's frame
    mask: np.ndarray  # (H, W) bool
    box: Optional[Box] = None
    points: List[Click] = field(default_factory=list)
    score: float = 1.0  # the detector's confidence (Curriculum), 1 otherwise
    coarse: Optional[np.ndarray] = None  # Curriculum's first-stage logits


def bounds(points: Sequence[Click]) -> Box:
    """The box (r0, c0, r1, c1) bounding these points."""
    rows, cols = [p.row for p in points], [p.col for p in points]
    return min(rows), min(cols), max(rows), max(cols)


def from_network(box: Letterbox, row: float, col: float) -> Click:
    """A network-frame pixel -> the slice's pixel (the inverse of Letterbox.to_network)."""
    (oy, ox), (h, w) = box.offset, box.inner
    r = box.top + (row - oy + 0.5) * box.height / h - 0.5
    c = box.left + (col - ox + 0.5) * box.width / w - 0.5
    return Click(int(np.clip(round(r), 0, box.height - 1)), int(np.clip(round(c), 0, box.width - 1)), True)


class CurriculumPredictor:
    """``edges``: the edge-point network, whose 8 points bound the box and whose peaks (their mean
    probability) say whether the structure is on the slice (``min_score``); ``detector``: the
    paper's box detector, needed only for ``box_source`` "detector"."""

    def __init__(self, sam: SAMPredictor, edges: PromptHeatmapNet, decoder: Optional[PromptableSAM] = None,
                 min_score: float = 0.2, detector: Optional[PromptHeatmapNet] = None, box_source: str = "edges"):
        if box_source not in BOX_SOURCES:
            raise ValueError(f"box_source must be one of {BOX_SOURCES}")
        if box_source == "detector" and detector is None:
            raise ValueError("the detector's box needs a detector")
        heads = [edges] + ([detector] if detector is not None else [])
        if any(h.size != sam.size for h in heads):
            raise ValueError(f"the edge-point network or the detector reads another foundation model's embeddings "
                             f"(input {edges.size}, not {sam.size}): train them again on this one")
        self.sam, self.edges = sam, edges.to(sam.device).eval()
        self.detector = detector.to(sam.device).eval() if detector is not None else None
        self.decoder = (decoder or sam.sam).to(sam.device).eval()  # Curriculum's fine-tuned prompt encoder / decoder
        self.names, self.min_score, self.box_source = list(edges.names), min_score, box_source

    def index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(name)
        return self.names.index(name)

    @torch.no_grad()
    def detector_map(self, emb: SliceEmbedding, name: str) -> np.ndarray:
        """The detector's logits of the structure in the slice's frame (what its box bounds)."""
        logits = self.detector.name_maps(emb.embeddings, self.detector.names.index(name))
        return emb.box.network_to_image(logits)[0, 0].float().cpu().numpy()

    @torch.no_grad()
    def prompts(self, emb: SliceEmbedding, name: str, edge_positive: bool = False, box_source: str = ""):
        """(box, score, edge points) in the slice's frame, the box from ``box_source`` (default the
        predictor's): the edge points' bounds, scored by their peaks, or the detector's box and peak."""
        edge_maps = self.edges.name_maps(emb.embeddings, self.index(name))[0].float().cpu().numpy()
        peaks = heatmap_peaks(edge_maps)
        points = [from_network(emb.box, r, c)._replace(positive=edge_positive) for r, c, _ in peaks]
        if (box_source or self.box_source) == "edges":
            return bounds(points), float(np.mean([1 / (1 + np.exp(-v)) for _, _, v in peaks])), points
        detector_map = self.detector.name_maps(emb.embeddings, self.detector.names.index(name))
        (r0, c0, r1, c1), score = decode_box(detector_map[0, 0].float().cpu().numpy())
        a, b = from_network(emb.box, r0, c0), from_network(emb.box, r1, c1)
        return (a.row, a.col, b.row, b.col), score, points

    def segment(self, image: np.ndarray, name: str, key: Optional[Hashable] = None, stages: str = "curriculum",
                edge_positive: bool = False, box: Optional[Box] = None, box_source: str = "") -> AutoResult:
        """``box``: a given box instead of the predicted one (the ground truth's, in evaluation)."""
        if stages not in STAGES:
            raise ValueError(f"stages must be one of {STAGES}")
        emb = self.sam.embed(image, key)
        found, score, points = self.prompts(emb, name, edge_positive, box_source)
        box = found if box is None else box
        if score < self.min_score and stages != "points":
            empty = np.full(image.shape, -20.0, np.float32)
            return AutoResult(empty, np.zeros(image.shape, bool), box, points, score)
        decode = lambda **kw: self.sam.predict(emb, model=self.decoder, **kw)  # noqa: E731
        coarse = None
        if stages == "points":  # the edge points alone, as the object's own (positive) points
            out = decode(clicks=[p._replace(positive=True) for p in points])
        elif stages == "box":
            out = decode(box=box)
        elif stages == "box_points":
            out = decode(box=box, clicks=points)
        else:
            first = decode(box=box)
            coarse = first.logits
            out = decode(box=box, mask_logits=first.low_res) if stages == "box_mask" else \
                decode(clicks=points, mask_logits=first.low_res)
        return AutoResult(out.logits, out.logits > 0, box, points, score, coarse)


class ProMISePredictor:
    def __init__(self, sam: SAMPredictor, promise: ProMISe, opening: bool = True):
        self.sam, self.promise, self.opening = sam, promise.to(sam.device).eval(), opening
        self.names = list(promise.names)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(name)
        return self.names.index(name)

    @torch.no_grad()
    def segment(self, image: np.ndarray, name: str, key: Optional[Hashable] = None,
                points: Optional[Sequence[Click]] = None, use_ips: bool = True) -> AutoResult:
        """``points``: the GT-points mode (8 positive then 8 negative, in the slice's frame) instead of
        the APM's; ``use_ips`` False: the base model without the pattern tokens (ablation)."""
        emb = self.sam.embed(image, key)
        index = torch.tensor([self.index(name)], device=self.sam.device)
        box = None
        if points is None:
            net_points, boxes = self.promise.prompts(emb.intermediates, index)
            if boxes is not None:  # the APM's box, network frame (x0, y0, x1, y1) -> the slice's (r0, c0, r1, c1)
                x0, y0, x1, y1 = boxes[0].tolist()
                a, b = from_network(emb.box, y0, x0), from_network(emb.box, y1, x1)
                box = (a.row, a.col, b.row, b.col)
        else:
            net_points = self.sam.points([emb.box.to_network(p) for p in points])
        ips = self.promise.ips if use_ips else None
        shift = ips(emb.embeddings, index) if ips is not None else None
        out = self.sam.predict(emb, points=net_points, box=box, token_shift=shift)
        mask = out.logits > 0  # probability 0.5
        if self.opening:
            mask = ndimage.binary_opening(mask, structure=OPENING)
        shown = [from_network(emb.box, float(y), float(x_))._replace(positive=bool(lab > 0))
                 for (x_, y), lab in zip(net_points[0][0].tolist(), net_points[1][0].tolist())]
        return AutoResult(out.logits, mask, box, shown)


VOLUME_STEP = 10  # slices between two probes of a volume: a structure shorter than this may be missed
VOLUME_KEEP = 0.6  # a slice joins the structure while its score is at least this share of the seed's


def segment_volume(segment, volume: np.ndarray, axis: int, name: str, image_key: Hashable,
                   on_slice=None, step: int = VOLUME_STEP, keep: float = VOLUME_KEEP) -> Dict[str, object]:
    """A volume along ``axis`` (``segment(slice, name, key)`` each) -> the 3D mask, without running
    the image encoder on every slice: every ``step``-th slice is probed; the probe the method is
    surest of (its score, then its mask's area) is the seed, and its neighbours are segmented outward
    until a slice without the structure or whose score falls below ``keep`` x the seed's. A named
    structure is one object, so what lies apart from the seed's run of slices is never segmented: a
    structure spanning n slices costs about n + slices / step encoder passes. (On ch2bet, 8 named
    structures: the highest-scoring slice of the volume lay inside the structure for all 8, while an
    absolute threshold let through slices far from it; docs/automatic.md.) ``on_slice(index,
    result)`` sees each segmented slice's result."""
    n = volume.shape[axis]
    results: Dict[int, AutoResult] = {}

    def run(index: int) -> AutoResult:
        if index not in results:
            results[index] = segment(np.take(volume, index, axis=axis), name, (image_key, axis, index))
            if on_slice is not None:
                on_slice(index, results[index])
        return results[index]

    found = [i for i in range(min(step // 2, n - 1), n, max(1, step)) if run(i).mask.any()]
    kept = []
    if found:
        seed = max(found, key=lambda i: (results[i].score, int(results[i].mask.sum())))
        floor = keep * results[seed].score
        kept = [seed]
        for direction in (-1, 1):
            i = seed + direction
            while 0 <= i < n and run(i).mask.any() and results[i].score >= floor:
                kept.append(i)
                i += direction
    out = np.zeros(volume.shape, np.uint8)
    for index in kept:
        sl = [slice(None)] * 3
        sl[axis] = index
        out[tuple(sl)] = results[index].mask
    return {"mask": out, "slices_with_structure": len(kept), "slices_segmented": len(results)}


def as_previous_logits(mask: np.ndarray) -> torch.Tensor:
    """An automatic mask as PE-MED's previous logits (1, 1, H, W): a ramp across the mask's edge
    (signed distance / 2, clipped to +-1) scaled to +-3, the confidence of a PE-MED mask away from
    its edge, whatever scale the automatic method's own logits have."""
    mask = np.asarray(mask, bool)
    signed = ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    return torch.from_numpy((np.clip(signed / 2.0, -1.0, 1.0) * 3.0).astype(np.float32))[None, None]


def corrects(mask: np.ndarray, clicks: Sequence[Click], near: float = 0.1) -> bool:
    """Do these first clicks correct this automatic mask (not start another structure)? Yes when a
    negative click lies inside it or a positive one within ``near`` x the slice's longer side of it."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return False
    distance = ndimage.distance_transform_edt(~mask)
    reach = near * max(mask.shape)
    return any((not c.positive and mask[c.row, c.col]) or (c.positive and distance[c.row, c.col] <= reach)
               for c in clicks)
