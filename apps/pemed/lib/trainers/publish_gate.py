"""The check a fine-tuning run passes before its model replaces the one serving.

A run on a handful of saved labels can leave the network worse: at what it knew (forgetting), or
even at the labels it was shown. So, before publishing, the run's network and the network it
started from are both put through the click protocol (NoC protocol clicks, served as the app serves:
zoom-in, refinement) on the same fixed samples: the saved labels (through the trainer's validation
chain: one structure per label, at the network's size) and fixed draws of the training-data engine,
``per_kind`` of each target kind (what it already knew, every kind of it: a run can forget lesions
while the average over kinds holds). The score is the mean Dice over clicks 1..``clicks``, which
moves with every click where NoC@90 only moves when a sample crosses 0.90. The new model is
published only if it is no worse on the saved labels, at most ``tolerance`` worse on all the
engine's draws, and at most ``kind_tolerance`` worse on any one kind's.
"""

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..evaluation import PredictorSegmenter, run_protocol
from ..predictor import PEMEDPredictor

Sample = Tuple[np.ndarray, np.ndarray]  # (C, H, W) normalised image, (H, W) bool target
GATE_SEED_BASE = 2 ** 31 + 10 ** 6  # engine seeds no training draw uses (training seeds are below 2**31)


@dataclass
class GateResult:
    publish: bool
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)  # group -> {"before", "after", "n"}
    reason: str = ""


class PublishGate:
    def __init__(self, serve: Optional[dict] = None, size: int = 256, clicks: int = 5, per_kind: int = 3,
                 saved_samples: int = 16, tolerance: float = 0.01, kind_tolerance: float = 0.03):
        self.serve = dict(serve or {})
        self.size, self.clicks = size, clicks
        self.tolerance, self.kind_tolerance = tolerance, kind_tolerance
        self.per_kind, self.saved_samples = per_kind, saved_samples

    def samples(self, transform: Callable[[dict], dict], saved_items: Sequence[dict],
                kinds: Sequence[str] = ()) -> Dict[str, List[Sample]]:
        """The fixed samples of each group ("saved", and "known:<kind>" for each engine target kind),
        through ``transform`` (the trainer's validation chain)."""
        groups = {"saved": [dict(d) for d in saved_items[: self.saved_samples]]}
        for kind in kinds:
            groups[f"known:{kind}"] = [{"seed": GATE_SEED_BASE + i, "fixed": True, "kind": kind}
                                       for i in range(self.per_kind)]
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(seed=0)  # which structure of a multi-label map: the same every run
        out = {}
        for name, items in groups.items():
            out[name] = []
            for item in items:
                d = transform(item)
                target = np.asarray(d["label"])[0] > 0.5
                if target.any():
                    out[name].append((np.asarray(d["image"], dtype=np.float32), target))
        return out

    def score(self, network: torch.nn.Module, samples: Sequence[Sample]) -> float:
        """Mean Dice over clicks 1..clicks, averaged over the samples."""
        device = next(network.parameters()).device
        segmenter = PredictorSegmenter(PEMEDPredictor(network, device, self.size, trace=False, **self.serve))
        return float(np.mean([np.mean(run_protocol(segmenter, image, target, self.clicks).dice)
                              for image, target in samples]))

    def decide(self, before: torch.nn.Module, after: torch.nn.Module, groups: Dict[str, List[Sample]]) -> GateResult:
        result = GateResult(publish=True)
        for name, samples in groups.items():
            if samples:
                result.scores[name] = {"before": round(self.score(before, samples), 4),
                                       "after": round(self.score(after, samples), 4), "n": len(samples)}
        known = [s for name, s in result.scores.items() if name.startswith("known:")]
        if known:  # every engine draw counts once, whatever its kind
            n = sum(s["n"] for s in known)
            result.scores["known"] = {key: round(sum(s[key] * s["n"] for s in known) / n, 4) for key in ("before", "after")}
            result.scores["known"]["n"] = n
        drop = {name: s["before"] - s["after"] for name, s in result.scores.items()}
        worst = max((name for name in drop if name.startswith("known:")), key=drop.get, default=None)
        if "saved" in drop and drop["saved"] > 0:
            result.publish, result.reason = False, "worse on the saved labels"
        elif "known" in drop and drop["known"] > self.tolerance:
            result.publish, result.reason = False, f"worse by more than {self.tolerance} on the engine's draws"
        elif worst and drop[worst] > self.kind_tolerance:
            result.publish, result.reason = False, f"worse by more than {self.kind_tolerance} on {worst[6:]}"
        return result
