"""The app's datastores: what a client may name and store is checked before anything on disk changes,
and a label that is replaced or removed is kept as a version that can be restored.

MONAI Label's LocalDatastore joins ids and tags into paths as they come (a tag of ``../../tmp/x``
writes outside the studies folder), copies any upload over the stored label (7 bytes of garbage
replaced a hand-drawn atlas), and rewrites its index file in place (a kill during the write leaves a
datastore that no longer starts). Here:

- ids and tags match ``NAME`` (letters, digits, ``.``, ``_``, ``-``; no ``..``): never a path;
- a label upload must read as an image of the labelled image's size (2D or 3D, one channel) whose
  values are finite integers from the app's label set, 0 and 255 (a binary mask as many tools save it);
  OHIF's raw ``.bin`` labelmaps are made an image on the labelled image's grid first, then checked;
- a new image must read as a 2D or 3D image with finite values, under an id not already taken;
- labels and the index are written to a temporary file and renamed over the old one (atomic on POSIX),
  after the label they replace is copied to ``<studies>/.pemed_versions/<tag>/<image>/`` (outside
  ``labels/``, whose folders MONAI Label reads as tags); ``restore_label`` puts a version back.
"""

import contextlib
import json
import logging
import os
import re
import shutil
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import requests
from filelock import FileLock
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import DataModel, ImageLabelModel, LocalDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.interfaces.datastore import DefaultLabelTag

from .errors import InvalidRequest

logger = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd")
RAW_LABELMAP = ".bin"  # OHIF's labelmap bytes, in the labelled image's voxel order
BINARY_FOREGROUND = 255
VERSIONS_DIR = ".pemed_versions"
PENDING_DIR = ".pemed_pending"
UNREACHABLE = (requests.ConnectionError, requests.Timeout)


def check_name(value: Any, what: str) -> str:
    """An image id, label id or tag as the datastore may use it in a file name, else a 400."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise InvalidRequest(f"invalid {what} {value!r}: use letters, digits, '.', '_' and '-' (at most 128, "
                             f"no '..', no path)")
    return value


def upload_extension(filename: str, allowed: Iterable[str]) -> str:
    name = os.path.basename(filename or "").lower()
    for ext in sorted(allowed, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    raise InvalidRequest(f"unsupported file type {os.path.basename(filename or '')!r}: send one of "
                         f"{', '.join(sorted(allowed))}", 415)


def read_array(path: str, what: str) -> Tuple[np.ndarray, Tuple[int, ...], int]:
    """(voxels, size in x-y-z order without trailing 1s, components per voxel), or a 422. NIfTI is read
    with nibabel, as the infer and train tasks read it (ITK read an all-NaN volume as zeros)."""
    try:
        if path.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            array = np.asanyarray(nib.load(path).dataobj)
            size, components = list(array.shape), len(array.dtype.names or ()) or 1
        else:
            import SimpleITK as sitk

            image = sitk.ReadImage(path)
            array = sitk.GetArrayFromImage(image)
            size, components = list(image.GetSize()), image.GetNumberOfComponentsPerPixel()
    except Exception as e:  # noqa: BLE001 - whatever the reader says, the file is the client's problem
        message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        message = message.replace(path, "the upload")  # the server's temporary path means nothing to a client
        raise InvalidRequest(f"cannot read the {what}: {message}", 422) from None
    return array, spatial_size(size), components


def image_size(path: str) -> Tuple[int, ...]:
    """The stored image's size (x-y-z, trailing 1s dropped), from its header only."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return spatial_size(reader.GetSize())


def spatial_size(size) -> Tuple[int, ...]:
    """A size without trailing 1s beyond two axes: a 2D slice stored as x-y-1 is x-y."""
    size = list(size)
    while len(size) > 2 and size[-1] == 1:
        size.pop()
    return tuple(size)


def check_label_file(path: str, allowed_values: Iterable[int], expected_size: Optional[Tuple[int, ...]]) -> None:
    array, size, components = read_array(path, "label")
    if components != 1 or len(size) not in (2, 3):
        raise InvalidRequest(f"a label must be a 2D or 3D image with one value per voxel, got size {list(size)} "
                             f"with {components} components", 422)
    if expected_size is not None and size != tuple(expected_size):
        raise InvalidRequest(f"the label's size {list(size)} does not match the image's {list(expected_size)}", 422)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InvalidRequest("the label holds NaN or infinite values", 422)
        if (array != np.round(array)).any():
            raise InvalidRequest("the label holds non-integer values", 422)
    elif array.dtype.kind not in "iub":
        raise InvalidRequest(f"unsupported label voxel type {array.dtype}", 422)
    values = np.unique(array).astype(np.int64)
    unknown = sorted(set(values.tolist()) - set(int(v) for v in allowed_values) - {0})
    if unknown:
        raise InvalidRequest(f"label values {unknown[:10]} are not in the app's label set (0, its labels' values, "
                             f"{BINARY_FOREGROUND})", 422)


def check_image_file(path: str) -> None:
    array, size, components = read_array(path, "image")
    if len(size) not in (2, 3) or components not in (1, 3, 4):
        raise InvalidRequest(f"PE-MED segments 2D and 3D grey or RGB images, got size {list(size)} with "
                             f"{components} components", 422)
    if array.dtype.kind == "f" and not np.isfinite(array).any():
        raise InvalidRequest("the image holds no finite values", 422)


def replace_atomically(dest: str, content) -> None:
    """``dest`` holds what ``content(file)`` writes, all or nothing: a temporary file beside it,
    flushed to disk, renamed over it."""
    part = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.part")
    with open(part, "wb") as out:
        content(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, dest)


def write_atomically(source: str, dest: str) -> None:
    """``source``'s bytes at ``dest``, all or nothing."""
    with open(source, "rb") as src:
        replace_atomically(dest, lambda out: shutil.copyfileobj(src, out, 1 << 20))


class GuardedSaves:
    """The checks shared by the app's datastores, in front of their save and remove methods."""

    allowed_values: Tuple[int, ...] = ()

    def set_label_values(self, values: Iterable[int]) -> None:
        self.allowed_values = tuple(sorted({int(v) for v in values} | {BINARY_FOREGROUND}))

    def known_image(self, image_id: Any) -> str:
        check_name(image_id, "image id")
        if image_id not in self.list_images():
            raise InvalidRequest(f"unknown image id {image_id!r}", 404)
        return image_id

    @contextlib.contextmanager
    def _checked_label(self, image_id: str, label_filename: str, label_tag: Any, label_info: Any):
        """The upload's path (or, for a raw labelmap, the image made of it, removed afterwards) once it
        has passed every check."""
        self.known_image(image_id)
        check_name(label_tag, "label tag")
        if label_info is not None and not isinstance(label_info, dict):
            raise InvalidRequest("'params' must be a JSON object")
        ext = upload_extension(label_filename, LABEL_EXTENSIONS + (RAW_LABELMAP,))
        image_path = self.get_image_uri(image_id)
        checked = label_filename
        if ext == RAW_LABELMAP:
            try:
                checked = binary_to_image(image_path, label_filename)
            except ValueError as e:  # its length is not the image's voxel count
                raise InvalidRequest(f"the raw labelmap does not fit the image: {e}", 422) from None
        try:
            expected = image_size(image_path) if os.path.isfile(image_path) else None  # a DICOM series folder: values only
            check_label_file(checked, self.allowed_values, expected)
            yield checked
        finally:
            if checked != label_filename:
                os.remove(checked)

    def versions_root(self) -> str:
        return os.path.join(self._datastore_path, VERSIONS_DIR)

    def _keep_version(self, image_id: str, label_tag: str) -> Optional[str]:
        """Copy the stored label of (image, tag), if any, into the versions folder; its path."""
        obj = self._datastore.objects.get(image_id)
        label = obj.labels.get(label_tag) if obj else None
        if label is None:
            return None
        current = os.path.join(self._datastore.label_path(label_tag), self._filename(image_id, label.ext))
        if not os.path.isfile(current):
            return None
        folder = os.path.join(self.versions_root(), label_tag, image_id)
        os.makedirs(folder, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
        kept = os.path.join(folder, stamp + label.ext)
        write_atomically(current, kept)
        with open(kept + ".json", "w") as f:
            json.dump(label.info, f, default=str)
        return kept

    def label_versions(self, image_id: str, label_tag: str = DefaultLabelTag.FINAL.value) -> List[str]:
        """The kept versions of (image, tag), oldest first (their names are UTC times)."""
        folder = os.path.join(self.versions_root(), check_name(label_tag, "label tag"),
                              check_name(image_id, "image id"))
        if not os.path.isdir(folder):
            return []
        return sorted(f for f in os.listdir(folder) if f.endswith(LABEL_EXTENSIONS))

    def restore_label(self, image_id: str, version: str, label_tag: str = DefaultLabelTag.FINAL.value) -> str:
        """Put a kept version back as the label of (image, tag); the label it replaces is kept in turn."""
        if check_name(version, "version") not in self.label_versions(image_id, label_tag):
            raise InvalidRequest(f"no version {version!r} of the {label_tag} label of {image_id!r}", 404)
        path = os.path.join(self.versions_root(), label_tag, image_id, version)
        info_path = path + ".json"
        info = {}
        if os.path.exists(info_path):
            with open(info_path) as f:
                info = json.load(f)
        info = {k: v for k, v in info.items() if k not in ("ts", "name")}
        return self.save_label(image_id, path, label_tag, {**info, "restored_from": version})

    def remove_label(self, label_id: str, label_tag: str) -> None:
        check_name(label_id, "label id")
        check_name(label_tag, "label tag")
        with FileLock(self._lock_file):
            self._keep_version(label_id, label_tag)
        super().remove_label(label_id, label_tag)

    def remove_image(self, image_id: str) -> None:
        self.known_image(image_id)
        obj = self._datastore.objects.get(image_id)
        with FileLock(self._lock_file):
            for tag in list(obj.labels) if obj else []:
                self._keep_version(image_id, tag)
        super().remove_image(image_id)

    def update_image_info(self, image_id: str, info: Dict[str, Any]) -> None:
        self.known_image(image_id)
        if not isinstance(info, dict):
            raise InvalidRequest("'info' must be a JSON object")
        super().update_image_info(image_id, info)

    def update_label_info(self, label_id: str, label_tag: str, info: Dict[str, Any]) -> None:
        self.known_image(label_id)
        check_name(label_tag, "label tag")
        if not isinstance(info, dict):
            raise InvalidRequest("'info' must be a JSON object")
        super().update_label_info(label_id, label_tag, info)

    def follow_replaced_index(self) -> None:
        """With auto-reload on, MONAI Label reloads its index when the file is modified in place; the
        index is now replaced by a rename (below), so reload on that too (scoring and training write
        it from their own processes)."""
        handler = getattr(self, "_handler", None)
        if handler is not None:
            handler.on_moved = lambda event: (self._init_from_datastore_file()
                                              if event.dest_path == self._datastore_config_path else None)

    def _update_datastore_file(self, lock=True):
        """MONAI Label's index, written to a temporary file and renamed over the old one."""
        def write():
            self._ignore_event_config = True
            index = json.dumps(self._datastore.model_dump(exclude={"base_path"}), indent=2, default=str)
            replace_atomically(self._datastore_config_path, lambda out: out.write(index.encode()))
            self._config_ts = os.stat(self._datastore_config_path).st_mtime

        if lock:
            with FileLock(self._lock_file):
                write()
        else:
            write()


class PEMEDLocalDatastore(GuardedSaves, LocalDatastore):
    """A studies folder, guarded (see the module's docstring)."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any]) -> str:
        with self._checked_label(image_id, label_filename, label_tag, label_info) as checked:
            self._store_label(image_id, checked, label_tag, label_info)
        return image_id

    def _store_label(self, image_id: str, path: str, label_tag: str, label_info: Optional[Dict[str, Any]]) -> None:
        ext = upload_extension(path, LABEL_EXTENSIONS)
        label_path = self._datastore.label_path(label_tag)
        name = self._filename(image_id, ext)
        with FileLock(self._lock_file):
            os.makedirs(label_path, exist_ok=True)
            self._keep_version(image_id, label_tag)
            old = self._datastore.objects[image_id].labels.get(label_tag)
            write_atomically(path, os.path.join(label_path, name))
            if old is not None and old.ext != ext:  # the same label under another extension: kept above
                stale = os.path.join(label_path, self._filename(image_id, old.ext))
                if os.path.exists(stale):
                    os.remove(stale)
            info = dict(label_info or {}, ts=int(time.time()), name=name)
            self._datastore.objects[image_id].labels[label_tag] = DataModel(info=info, ext=ext)
            self._update_datastore_file(lock=False)
        logger.info(f"label saved: {image_id} ({label_tag}) {name}")

    def add_image(self, image_id: str, image_filename: str, image_info: Dict[str, Any]) -> str:
        check_name(image_id, "image id")
        if image_id in self._datastore.objects:
            raise InvalidRequest(f"image id {image_id!r} is taken: an image with labels is never replaced; "
                                 f"choose another id", 409)
        if image_info is not None and not isinstance(image_info, dict):
            raise InvalidRequest("'params' must be a JSON object")
        ext = upload_extension(image_filename, [e.lstrip("*") for e in self._extensions])
        check_image_file(image_filename)
        name = self._filename(image_id, ext)
        with FileLock(self._lock_file):
            write_atomically(image_filename, os.path.join(self._datastore.image_path(), name))
            info = dict(image_info or {}, ts=int(time.time()), name=name)
            self._datastore.objects[image_id] = ImageLabelModel(image=DataModel(info=info, ext=ext))
            self._update_datastore_file(lock=False)
        return image_id


class PEMEDDICOMWebDatastore(GuardedSaves, DICOMWebDatastore):
    """A DICOMweb study list, guarded: a label is checked before it becomes a DICOM SEG on the server.
    While the DICOMweb server cannot be reached a saved label is kept here, in
    ``<cache>/.pemed_pending/`` (the client gets a 503 saying so), and ``send_pending`` stores it as
    soon as the server answers again."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: Dict[str, Any],
                   label_id: str = "") -> str:
        with self._checked_label(image_id, label_filename, label_tag, label_info) as checked:
            with FileLock(self._lock_file):
                self._keep_version(image_id, label_tag)
            try:
                return super().save_label(image_id, checked, label_tag, dict(label_info or {}), label_id)
            except UNREACHABLE as e:
                self._hold(image_id, checked, label_tag, label_info or {})
                raise InvalidRequest(f"the DICOMweb server cannot be reached ({type(e).__name__}): the label is "
                                     f"kept on this server and will be stored there when it answers again", 503) from None

    def pending_root(self) -> str:
        return os.path.join(self._datastore_path, PENDING_DIR)

    def _hold(self, image_id: str, path: str, label_tag: str, label_info: Dict[str, Any]) -> None:
        folder = os.path.join(self.pending_root(), image_id)
        os.makedirs(folder, exist_ok=True)
        kept = os.path.join(folder, f"{time.time():.6f}{upload_extension(path, LABEL_EXTENSIONS)}")
        with open(kept + ".json", "w") as f:  # first: a label file always has its tag and info beside it
            json.dump({"tag": label_tag, "info": label_info}, f, default=str)
        write_atomically(path, kept)
        logger.warning(f"label of {image_id} ({label_tag}) kept until the DICOMweb server answers: {folder}")

    def pending_labels(self) -> List[Tuple[str, str]]:
        """(image id, label file) of every label kept while the server was unreachable, oldest first."""
        root = self.pending_root()
        found = [(image, os.path.join(root, image, f)) for image in (os.listdir(root) if os.path.isdir(root) else [])
                 for f in os.listdir(os.path.join(root, image)) if f.endswith(LABEL_EXTENSIONS)]
        return sorted(found, key=lambda item: os.path.basename(item[1]))

    def send_pending(self) -> int:
        """Store the kept labels, oldest first, until one fails; how many were stored."""
        sent = 0
        for image_id, path in self.pending_labels():
            meta_path = path + ".json"
            with open(meta_path) as f:
                meta = json.load(f)
            try:
                super().save_label(image_id, path, meta["tag"], meta["info"])
            except UNREACHABLE:
                break
            os.remove(path)
            os.remove(meta_path)
            sent += 1
            logger.info(f"kept label of {image_id} stored on the DICOMweb server")
        return sent
