"""The ``pemed_3d`` infer task: clicks on one or more slices of a volume, the structure segmented in 3D.

Request params as for ``pemed`` (foreground, background, label, axis, reset_state). The clicked
slices are segmented from their clicks, then the result is propagated slice by slice in both
directions (lib/propagation.py) until the structure ends. Clicks on another slice correct it: that
slice starts from the propagated result as its previous mask and becomes an anchor the propagation
starts from too. Per (image, label, axis) the task keeps each clicked slice's clicks and result, and
the last propagated result of every slice, so a request that adds clicks re-runs only what they change
on their slice (the propagation is redone from the anchors).
"""

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import InvalidRequest
from ..prompts.clicks import Click, clicks_by_slice
from ..prompts.session import matching_key
from ..propagation import SliceResult, propagate, segment_anchor, to_volume
from ..transforms.transforms import AUTO, normalize_intensity
from .pemed import PEMEDInfer, axis_param, bool_param, parse_clicks


NEAR_SLICES = 2  # a first click this close to the propagated slices starts from the nearest one


def nearest(results: Dict[int, SliceResult], index: int) -> Optional[SliceResult]:
    """The propagated result on slice ``index``, or on the nearest slice at most NEAR_SLICES away: a
    click just past where a walk stopped says the structure goes on there, and a first click alone
    on a large structure segments only a part of it (the 2D task's first answer)."""
    for offset in range(NEAR_SLICES + 1):
        for i in (index - offset, index + offset):
            if i in results:
                return results[i]
    return None


@dataclass
class VolumeState:
    anchors: Dict[int, Tuple[List[Click], SliceResult]] = field(default_factory=dict)
    results: Dict[int, SliceResult] = field(default_factory=dict)


class PEMED3DInfer(PEMEDInfer):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("description", "PE-MED 3D: click on a slice, the structure is propagated through the volume")
        self.volumes: Dict[Tuple, VolumeState] = {}
        super().__init__(*args, **kwargs)
        self.dimension = 3

    def forget_sessions(self) -> None:
        super().forget_sessions()
        self.volumes.clear()

    def run_inferer(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        t0 = time.perf_counter()
        array, affine, is_rgb, modality = self.images.load(data.get("image_path") or data.get("image"))
        if is_rgb or array.ndim != 3:
            raise InvalidRequest(f"pemed_3d segments 3D volumes; this image has shape {array.shape}", 422)
        fg, bg = parse_clicks(data, array.shape, "volume")
        axis = axis_param(data)
        modality = modality if self.modality.lower() == AUTO else self.modality

        @functools.lru_cache(maxsize=16)  # the anchors' slices are read again by the propagation
        def slice_image(index: int) -> np.ndarray:
            return normalize_intensity(np.take(array, index, axis=axis), modality)

        by_slice = clicks_by_slice(fg, bg, axis)
        key = (str(data.get("client") or ""), data.get("image"), str(data.get("label") or ""), axis)
        with self._lock:
            predictor = self.predictor(str(device))
            if not data.get("label"):  # OHIF: the clicks tell its structures apart
                marked = lambda anchors: {(i, c) for i, clicks in anchors for c in clicks}  # noqa: E731
                stored = {k: marked((i, a[0]) for i, a in v.anchors.items()) for k, v in self.volumes.items()}
                wanted = marked(by_slice.items())
                key = matching_key(key, stored, wanted, {m for m in wanted if m[1].positive})
            state = VolumeState() if bool_param(data, "reset_state") else self.volumes.get(key, VolumeState())
            anchors: Dict[int, SliceResult] = {}
            rerun = 0
            for index, clicks in by_slice.items():
                known = state.anchors.get(index)
                if known and known[0] == clicks:
                    anchors[index] = known[1]
                    continue
                # more clicks on a clicked slice go on from its result, a first click on or just beyond
                # the propagated slices from the nearest propagated result
                start = known[1] if known and clicks[:len(known[0])] == known[0] else nearest(state.results, index)
                anchors[index] = segment_anchor(predictor, slice_image(index), clicks,
                                                start.logits.float() if start else None)
                state.anchors[index] = (clicks, anchors[index])
                rerun += 1
            state.anchors = {i: a for i, a in state.anchors.items() if i in anchors}
            spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)  # voxel size along each array axis
            in_plane = float(np.mean([spacing[a] for a in range(3) if a != axis])) or 1.0
            results = propagate(predictor, slice_image, array.shape[axis], anchors,
                                slice_ratio=float(spacing[axis]) / in_plane or 1.0)
            state.results = {i: SliceResult(r.logits.half(), r.mask) for i, r in results.items()}
            self.volumes.pop(key, None)
            self.volumes[key] = state
            while len(self.volumes) > self.sessions.max_sessions:
                self.volumes.pop(next(iter(self.volumes)))
        label = to_volume(results, array.shape, axis)
        data["pred"] = label
        data["pred_meta_dict"] = {"affine": affine}
        data["result"] = {"label": data.get("label"), "axis": axis, "anchors": sorted(anchors),
                          "anchors_rerun": rerun, "slices": [min(results), max(results)],
                          "foreground_voxels": int(label.sum()),
                          "timings_ms": {"total_inferer": round((time.perf_counter() - t0) * 1e3, 2)}}
        return data
