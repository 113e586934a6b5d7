"""The interactive PE-MED infer task (deepgrow-style clicks from OHIF and 3D Slicer).

Request params:
    foreground, background  lists of voxel indices ([x, y] or [x, y, z], as MONAI's loader returns the array),
                            finite numbers, at most MAX_CLICKS points in all (each new one is a network step)
    label                   optional structure name; part of the session key (without it, as from OHIF,
                            the clicks themselves tell structures apart: SessionStore.key_for_clicks)
    axis                    for 3D images, the array axis the slice is taken along (default 2, the last)
    slice                   for 3D images, the slice to segment (default: the slice of the last click)
    reset_state             true to forget this (image, label, slice) session first
    client_id               optional, the client's own name for itself (e.g. one per browser tab)
Sessions are kept per client too: the server adds ``client`` (lib/http_guards.py: the signed-in user,
the address the request came from and ``client_id``), so two users clicking the same image, slice
and label never continue each other's state.
On a 3D image the clicked slice is segmented and a volume-sized label with only that slice filled is
returned; 2D images (PNG/JPEG, 2D NIfTI) are segmented directly.

Between requests the task keeps, per (client, image, label, axis, slice), the clicks and the logits after
each click (prompts.session): TSIP and the previous-mask channel read them, and the first click of a
session runs the Self-Loop.
"""

import logging
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from monai.data import MetaTensor
from monai.transforms import LoadImage
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from ..checkpoint import load_checkpoint
from ..errors import InvalidRequest
from ..predictor import PEMEDPredictor
from ..prompts.clicks import Click, clicks_by_slice
from ..automatic import as_previous_logits, corrects
from ..prompts.session import AUTOMATIC_RESULTS, SessionStore
from ..transforms.transforms import AUTO, detect_modality, normalize_intensity

logger = logging.getLogger(__name__)

RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageCache:
    """The last few images read, keyed by path and modification time: later clicks on the same image
    skip decoding it. Each keeps the modality found for the whole image (DICOM tag or intensities)."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: "OrderedDict[Tuple, Tuple[np.ndarray, np.ndarray, bool, str]]" = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: str) -> Tuple[np.ndarray, np.ndarray, bool, str]:
        """Returns (array, affine, is_rgb, modality): spatial axes first, an RGB image as (C, X, Y)."""
        if not path or not os.path.exists(path):
            raise InvalidRequest(f"image not found: {path or '(empty id)'}", 404)
        key = (path, os.path.getmtime(path), os.path.getsize(path))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            img = LoadImage(image_only=True)(path)
        except Exception as e:  # a corrupt or unsupported file is the client's problem, not a server fault
            raise InvalidRequest(f"cannot read image {os.path.basename(path)}: {e}", 422) from e
        array = np.asarray(img, dtype=np.float32)
        affine = np.asarray(img.affine) if isinstance(img, MetaTensor) else np.eye(4)
        is_rgb = path.lower().endswith(RGB_EXTENSIONS) and array.ndim == 3 and array.shape[-1] in (3, 4)
        if is_rgb:
            array = np.moveaxis(array[..., :3], -1, 0)
        item = (array, affine, is_rgb, detect_modality(array, getattr(img, "meta", None)))
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return item


MAX_CLICKS = 100  # points in one request: each new one is a network step, so a request's time is bounded


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_points(value: Any, name: str, ndim: int) -> List[Tuple[int, ...]]:
    if value is None or value == "":
        return []
    if not isinstance(value, (list, tuple)):
        raise InvalidRequest(f"'{name}' must be a list of [x, y{', z' if ndim == 3 else ''}] points")
    if len(value) > MAX_CLICKS:
        raise InvalidRequest(f"'{name}' holds {len(value)} points; at most {MAX_CLICKS} are taken in one request", 413)
    points = []
    for p in value:
        if not isinstance(p, (list, tuple)) or len(p) < ndim or not all(is_number(v) for v in p[:ndim]):
            raise InvalidRequest(f"'{name}' point {str(p)[:80]} is not a list of {ndim} numbers, each finite")
        points.append(tuple(int(round(v)) for v in p[:ndim]))
    return points


def int_param(data: Dict[str, Any], name: str, default: Optional[int]) -> Optional[int]:
    value = data.get(name, default)
    if value is None or isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequest(f"'{name}' must be an integer, got {str(value)[:80]}") from None


def parse_clicks(data: Dict[str, Any], spatial: Sequence[int], what: str = "image"):
    """The request's foreground and background points, checked: at least one, all inside ``spatial``."""
    fg = parse_points(data.get("foreground"), "foreground", len(spatial))
    bg = parse_points(data.get("background"), "background", len(spatial))
    if not fg and not bg:
        raise InvalidRequest("no clicks: send at least one 'foreground' or 'background' point")
    if len(fg) + len(bg) > MAX_CLICKS:
        raise InvalidRequest(f"{len(fg) + len(bg)} clicks; at most {MAX_CLICKS} are taken in one request", 413)
    for p in fg + bg:
        if any(not 0 <= v < s for v, s in zip(p, spatial)):
            raise InvalidRequest(f"click {list(p)} lies outside the {what} (shape {list(spatial)})")
    return fg, bg


def axis_param(data: Dict[str, Any]) -> int:
    axis = int_param(data, "axis", 2)
    if axis not in (0, 1, 2):
        raise InvalidRequest(f"'axis' must be 0, 1 or 2, got {axis}")
    return axis


def bool_param(data: Dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    return value.strip().lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)


def write_label_nrrd(label: np.ndarray, affine: Optional[np.ndarray], path: str) -> None:
    """A raw uint8 NRRD with the geometry MONAI Label's ITK writer gives (LPS space, x fastest), written
    in milliseconds: OHIF asks for the whole volume at every click, and ITK takes seconds to write it.
    The HTTP layer gzips it (a one-slice mask in a 7 MB volume travels as some kB)."""
    label = np.asarray(label, dtype=np.uint8)
    fields = [("type", "unsigned char"), ("dimension", label.ndim),
              ("sizes", " ".join(str(n) for n in label.shape))]
    if affine is not None and label.ndim == 3:
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
        vector = lambda v: "(" + ",".join(repr(float(x)) for x in v) + ")"  # noqa: E731
        fields += [("space", "left-posterior-superior"),
                   ("space directions", " ".join(vector(lps[:3, i]) for i in range(3))),
                   ("space origin", vector(lps[:3, 3]))]
    fields += [("kinds", " ".join(["domain"] * label.ndim)), ("encoding", "raw")]
    header = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields) + "\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(label.tobytes(order="F"))  # a plain copy when the label is Fortran-ordered already


def fast_nrrd_answer(data: Dict[str, Any], extension=None) -> Optional[Tuple[str, Dict]]:
    """An uncompressed NRRD answer (OHIF's) through write_label_nrrd, as (path, result); None for
    every other format, which MONAI Label's writer writes."""
    ext = str(extension or data.get("result_extension") or "").lower()
    if ext != ".nrrd" or data.get("result_compress"):
        return None
    path = tempfile.NamedTemporaryFile(suffix=".nrrd", delete=False).name
    write_label_nrrd(np.asarray(data["pred"]), data.get("pred_meta_dict", {}).get("affine"), path)
    return path, data.get("result", {})


class PEMEDInfer(BasicInferTask):
    def __init__(self, path: Sequence[str], labels: Dict[str, int], modality: str = AUTO, size: int = 256,
                 serve: Optional[Dict[str, Any]] = None,
                 description: str = "PE-MED interactive segmentation: click inside (foreground) or outside (background)",
                 session_ttl_s: float = 1800.0, max_sessions: int = 64):
        super().__init__(path=list(path), network=None, type=InferType.DEEPGROW, labels=labels, dimension=2,
                         description=description, config={"axis": 2, "reset_state": False})
        self.modality = modality
        self.size = size
        self.serve = dict(serve or {})  # PEMEDPredictor's zoom_* and refine_* settings
        self.sessions = SessionStore(session_ttl_s, max_sessions)
        self.images = ImageCache()
        self._predictors: Dict[str, Tuple[PEMEDPredictor, float, str]] = {}
        self._lock = threading.Lock()

    def is_valid(self) -> bool:
        return any(p and os.path.exists(p) for p in self.path)

    def pre_transforms(self, data=None):
        return []

    def inverse_transforms(self, data=None):
        return []

    def post_transforms(self, data=None):
        return []

    def predictor(self, device: str) -> PEMEDPredictor:
        """The network of the newest checkpoint, reloaded when its file changes (continual fine-tuning).
        Sessions begun under the old network are dropped: their stored logits are that network's."""
        path = self.get_path()
        if not path:
            raise InvalidRequest("no PE-MED checkpoint is available yet", 503)
        mtime = os.path.getmtime(path)
        cached = self._predictors.get(device)
        if cached is None or cached[1] != mtime or cached[2] != path:
            network, meta = load_checkpoint(path, device)
            logger.info(f"PE-MED loaded {path} on {device}: {meta}")
            cached = (PEMEDPredictor(network, device, self.size, **self.serve), mtime, path)
            self._predictors[device] = cached
            self.forget_sessions()
        return cached[0]

    def forget_sessions(self) -> None:
        self.sessions.clear()

    def _slice(self, array: np.ndarray, is_rgb: bool, data: Dict[str, Any]):
        """The 2D image to segment, the clicks on it and the session key parts."""
        spatial = array.shape[1:] if is_rgb else array.shape
        ndim = len(spatial)
        if ndim not in (2, 3):
            raise InvalidRequest(f"PE-MED segments 2D images or slices of 3D volumes; this image has shape {array.shape}", 422)
        fg, bg = parse_clicks(data, spatial)
        if ndim == 2:
            clicks = [Click(p[0], p[1], True) for p in fg] + [Click(p[0], p[1], False) for p in bg]
            return array, clicks, None, None
        axis = axis_param(data)
        index = int_param(data, "slice", (fg or bg)[-1][axis])
        if not 0 <= index < spatial[axis]:
            raise InvalidRequest(f"slice {index} is outside the volume (0..{spatial[axis] - 1} along axis {axis})")
        clicks = clicks_by_slice(fg, bg, axis).get(index)
        if not clicks:
            raise InvalidRequest(f"no click lies on slice {index} (axis {axis})")
        return np.take(array, index, axis=axis), clicks, axis, index

    @staticmethod
    def _start_from_automatic(session, data: Dict[str, Any], clicks: Sequence[Click], axis, index, shape) -> None:
        """A new session on a slice that an automatic task (curriculum, promise) has just segmented for
        this client starts from that mask as its previous mask, when the clicks correct it (a negative
        click inside it, a positive one near it) and name no other structure; ``start_from: "none"``
        asks for a fresh start."""
        if str(data.get("start_from", "auto")).lower() == "none":
            return
        found = AUTOMATIC_RESULTS.get((str(data.get("client") or ""), data.get("image"), axis, index))
        if found is None or (data.get("label") and data.get("label") != found.name):
            return
        if found.mask.shape == tuple(shape) and corrects(found.mask, clicks):
            session.start, session.started_from = as_previous_logits(found.mask), found.method

    def writer(self, data: Dict[str, Any], extension=None, dtype=None):
        return fast_nrrd_answer(data, extension) or super().writer(data, extension, dtype)

    def run_inferer(self, data: Dict[str, Any], convert_to_batch=True, device="cuda"):
        t0 = time.perf_counter()
        array, affine, is_rgb, found_modality = self.images.load(data.get("image_path") or data.get("image"))
        image, clicks, axis, index = self._slice(array, is_rgb, data)
        t_load = time.perf_counter()
        image = normalize_intensity(image, found_modality if self.modality.lower() == AUTO else self.modality)
        with self._lock:
            predictor = self.predictor(str(device))
            predictor.set_image(image)
            key = (str(data.get("client") or ""), data.get("image"), str(data.get("label") or ""), axis, index)
            if not data.get("label"):  # OHIF: the clicks tell its structures apart
                key = self.sessions.key_for_clicks(key, clicks)
            session = self.sessions.get(key, reset=bool_param(data, "reset_state"))
            if not session.clicks and session.start is None:
                self._start_from_automatic(session, data, clicks, axis, index, image.shape[-2:])
            # The session's clicks keep their order; clicks it has not seen come after them.
            known = [c for c in session.clicks if c in clicks]
            ordered = known + [c for c in clicks if c not in known]
            timings: Dict[str, float] = {}

            def step(so_far, prev):
                out = predictor.predict(so_far, prev)
                for k, v in out.timings_ms.items():
                    timings[k] = timings.get(k, 0.0) + v
                return out.logits

            logits, steps = session.advance(ordered, step)
            t_net = time.perf_counter()
            prob = predictor.probability(logits)
        mask = (prob > 0.5).astype(np.uint8)

        spatial = array.shape[1:] if is_rgb else array.shape
        if axis is None:
            label = mask
        else:
            label = np.zeros(spatial, dtype=np.uint8, order="F")  # x fastest, as NRRD stores it
            sl = [slice(None)] * 3
            sl[axis] = index
            label[tuple(sl)] = mask
        data["pred"] = label
        data["pred_meta_dict"] = {"affine": affine}
        data["result"] = {
            "label": data.get("label"), "axis": axis, "slice": index, "clicks": len(ordered), "steps_run": steps,
            "started_from": session.started_from or None,
            "foreground_pixels": int(mask.sum()),
            "timings_ms": {"load_and_slice": round((t_load - t0) * 1e3, 2),
                           **{k: round(v, 2) for k, v in timings.items()},
                           "total_inferer": round((t_net - t0) * 1e3, 2)},
        }
        return data
