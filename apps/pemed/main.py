"""PE-MED Label: the MONAI Label app.

    monailabel start_server --app apps/pemed --studies datasets/sample/volumes --host 127.0.0.1

Registers the interactive ``pemed`` infer task (deepgrow-style clicks in OHIF and 3D Slicer), its 3D
form ``pemed_3d`` (the clicked slice propagated through the volume), the automatic tasks
``curriculum`` and ``promise`` (lib/configs/automatic.py: a named structure, no clicks), the
``pemed`` trainer (continual fine-tuning on the labels saved in the datastore) and the automatic
methods' trainers once their models exist, and the active
learning strategies ``random``, ``first`` and ``uncertainty`` (lib/activelearning, scored by
``pemed_uncertainty``). Each saved final
label schedules a fine-tuning run in the background (lib/continual.py; ``--conf pemed_auto_train
false`` turns it off, ``pemed_train_quiet_s`` sets how long the server waits for more saves, default
10 s). Requests the client must fix get a 4xx with a clear message instead of a 500 (see
``install_error_handlers``).
"""

import json
import logging
import os
import sys
import threading
import time
from typing import Dict

import numpy as np
import requests

from monailabel.interfaces.app import MONAILabelApp
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.async_tasks.utils import processes
from monailabel.utils.others.generic import name_to_device

from lib import auth, http_guards
from lib.activelearning.uncertainty import MostUncertain, PEMEDUncertaintyScoring
from lib.configs.automatic import Curriculum, ProMISeConfig
from lib.configs.pemed import PEMED
from lib.continual import NewLabelWatcher, TrainingScheduler
from lib.datastore import GuardedSaves, PEMEDDICOMWebDatastore, PEMEDLocalDatastore, read_array
from lib.errors import InvalidRequest
from lib.named_labels import segment_names

logger = logging.getLogger(__name__)


def install_error_handlers() -> None:
    """Map client mistakes to 4xx on MONAI Label's FastAPI app.

    MONAI Label answers any exception with a 500. Malformed ``params`` JSON fails inside its route
    and our validation errors (InvalidRequest) inside the infer task, so both are mapped here.
    Starlette builds its middleware stack on the first event (the lifespan that creates this app),
    so the stack is dropped to be rebuilt with these handlers on the next request.
    """
    from fastapi.responses import JSONResponse
    from monailabel.app import app as api

    def reply(status: int, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": message})

    api.add_exception_handler(InvalidRequest, lambda request, e: reply(e.status, str(e)))
    api.add_exception_handler(json.JSONDecodeError,
                              lambda request, e: reply(400, f"'params' must be a JSON object: {e}"))
    api.add_exception_handler(
        requests.ConnectionError,
        lambda request, e: reply(503, f"a server this app reads from cannot be reached (the DICOMweb study list?): "
                                      f"{type(e).__name__}"))
    api.add_exception_handler(
        requests.Timeout, lambda request, e: reply(503, "a server this app reads from did not answer in time"))
    api.add_exception_handler(
        MONAILabelException,
        lambda request, e: reply(400 if e.error == MONAILabelError.INVALID_INPUT else 500, e.msg),
    )
    api.middleware_stack = None


def serve_nested_ohif_files() -> None:
    """MONAI Label's /ohif/ route joins a nested path with os.pathsep (':' on Linux) instead of '/', so
    every file below OHIF's top folder (icons, assets) comes back as index.html. This route, put in
    front of it, serves them from the same folder; a path that leaves the folder, or names no file
    (one of OHIF's own page routes), gets index.html as before."""
    from fastapi import Depends
    from fastapi.responses import FileResponse
    from monailabel.app import app as api
    from monailabel.config import settings
    from monailabel.endpoints import ohif
    from monailabel.endpoints.user.auth import RBAC
    from monailabel.utils.others.generic import get_mime_type

    root = os.path.realpath(os.path.join(os.path.dirname(ohif.__file__), "static", "ohif"))

    def nested(path: str):
        file = os.path.realpath(os.path.join(root, path))
        if not (file.startswith(root + os.sep) and os.path.isfile(file)):
            file = os.path.join(root, "index.html")
        return FileResponse(file, media_type=get_mime_type(file))

    api.add_api_route("/ohif/{path:path}", nested, methods=["GET"], include_in_schema=False,
                      dependencies=[Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))])
    api.router.routes.insert(0, api.router.routes.pop())  # matched before MONAI Label's own


def compress_responses() -> None:
    """Gzip answers for clients that accept it. OHIF asks for every click's result as a whole
    uncompressed volume (7 MB for the sample) with one slice filled; gzip at level 1 sends it as some
    kB in about 15 ms, and the browser inflates it before OHIF reads it. Files are streamed in 16 MB
    chunks instead of Starlette's 64 kB: each chunk passes through every middleware, and 110 small
    ones cost OHIF's click 50 ms more (benchmarks/ohif_latency.py)."""
    from monailabel.app import app as api
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.responses import FileResponse

    api.middleware_stack = None  # rebuilt on the next request (see install_error_handlers)
    api.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=1)
    FileResponse.chunk_size = 16 * 1024 * 1024


def prepare_dicomweb(modalities: str) -> None:
    """Settings a DICOMweb study list needs, set before MONAI Label's datastore reads them.

    dcmqi's ``itkimage2segimage`` (which writes saved labels as DICOM SEG) comes with the ``dcmqi``
    wheel in this interpreter's bin folder; without it on PATH MONAI Label would download dcmqi from
    the internet. MONAI Label's default series filter lists CT only: while it is unchanged, the
    series of ``modalities`` (a QIDO-RS value list, conf ``pemed_dicomweb_modalities``) are listed."""
    from monailabel.config import settings

    bin_dir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bin_dir, "itkimage2segimage")) and bin_dir not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    if settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER == {"Modality": "CT"}:
        settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER = {"Modality": modalities}


class PEMEDApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]):
        conf = conf or {}
        self.model_dir = os.path.join(app_dir, "model")
        self.pemed = PEMED()
        self.pemed.init("pemed", self.model_dir, conf, None)
        self.automatic = [Curriculum(), ProMISeConfig()]  # Curriculum Prompting and ProMISe (lib/configs/automatic.py)
        for config, name in zip(self.automatic, ("curriculum", "promise")):
            config.init(name, self.model_dir, conf, None)
        self.auto_train = str(conf.get("pemed_auto_train", "true")).lower() == "true"
        self.seg_watcher = None
        self.continual = TrainingScheduler(start=lambda: self.async_training(self.continual_order(), enqueue=True),
                                           running=lambda: bool(processes("train")),
                                           quiet_s=float(conf.get("pemed_train_quiet_s", 10)))
        # a list in value order: OHIF's MONAI Label panel appends to it (an object breaks the panel)
        labels = sorted(self.pemed.labels, key=self.pemed.labels.get)
        prepare_dicomweb(conf.get("pemed_dicomweb_modalities", "CT,MR,US,ES"))
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="PE-MED Label",
                         description="Interactive segmentation with PE-MED (Self-Loop, PALM, TSIP)", version="0.1",
                         labels=labels)
        if str(conf.get("install_error_handlers", "true")).lower() == "true":
            install_error_handlers()
            auth.install()
            http_guards.install(int(float(conf.get("pemed_max_upload_mb", 1024)) * (1 << 20)))
            serve_nested_ohif_files()
            compress_responses()

    def init_datastore(self) -> Datastore:
        """MONAI Label's datastore for the study list, with the app's guards (lib/datastore.py): names
        checked, uploads checked before they replace anything, replaced labels kept as versions."""
        store = super().init_datastore()
        if isinstance(store, DICOMWebDatastore):
            store.__class__ = PEMEDDICOMWebDatastore  # adds methods only: the client MONAI Label built stays
        elif type(store) is LocalDatastore:
            store.__class__ = PEMEDLocalDatastore
        if isinstance(store, GuardedSaves):
            store.set_label_values(self.pemed.labels.values())
            store.follow_replaced_index()
        return store

    def on_init_complete(self):
        """Load and trace the networks before the first click arrives (it takes seconds on a CPU). On a
        DICOMweb study list, watch for DICOM SEGs stored by other clients: they schedule fine-tuning
        as a save through this server does (``--conf pemed_seg_poll_s``, default 30; 0 turns it off);
        each poll first stores the labels kept while the DICOMweb server could not be reached."""
        super().on_init_complete()
        for task in self._infers.values():
            if task.is_valid():
                task.predictor(name_to_device(task.config().get("device")))
        warm = self._trainers.get("curriculum_edges")
        if self.auto_train and warm is not None:  # the first save's run then starts training at once
            threading.Thread(target=self._warm_replay, args=(warm,), name="pemed-warm-replay", daemon=True).start()
        poll_s = float(self.conf.get("pemed_seg_poll_s", 30))
        store = self.datastore()
        if poll_s > 0 and isinstance(store, PEMEDDICOMWebDatastore):
            def new_labels():
                if self.auto_train:
                    self.continual.label_saved()

            def seg_series():  # QIDO-RS on the store's own client: its labeled-image list is cached for hours
                if store.send_pending():  # labels kept while the server could not be reached
                    new_labels()
                found = store._client.search_for_series(search_filters={"Modality": "SEG"})
                return {ds["0020000E"]["Value"][0] for ds in found}

            self.seg_watcher = NewLabelWatcher(seg_series, new_labels, poll_s).start()

    @staticmethod
    def _warm_replay(trainer) -> None:
        try:
            t0 = time.monotonic()
            logger.info("automatic methods: encoding the replayed engine draws for continual training")
            n = trainer.warm_replay()
            logger.info(f"automatic methods: {n} replayed draws encoded in {time.monotonic() - t0:.0f} s")
        except Exception:  # the first run encodes them itself
            logger.exception("automatic methods: the replayed draws could not be encoded ahead")

    def info(self):
        return {**super().info(), "continual_training": {"enabled": self.auto_train, **self.continual.status()}}

    def on_save_label(self, image_id, label_id):
        """A saved final label (not a draft) schedules fine-tuning on every final label; the names of
        its segments join the automatic methods' names (lib/named_labels.py)."""
        super().on_save_label(image_id, label_id)
        final = self.datastore().get_label_by_image_id(image_id, DefaultLabelTag.FINAL.value)
        if final:
            try:
                self.learn_names(final)
            except Exception:  # the label is saved; its names wait for the next save
                logger.exception(f"label {final}: its segment names could not be read")
        if self.auto_train and final:
            self.continual.label_saved()
            if self.seg_watcher is not None:
                self.seg_watcher.check(notify=False)  # the SEG just written is this save's
        return {"image": image_id, "label": label_id}

    def learn_names(self, label_id: str) -> None:
        """The saved label's segment names become names the automatic methods learn."""
        store, final = self.datastore(), DefaultLabelTag.FINAL.value
        info = store.get_label_info(label_id, final) or {}
        try:
            values = np.unique(read_array(store.get_label_uri(label_id, final), "label")[0]).tolist()
        except InvalidRequest:  # a label this server does not read back (a DICOM SEG): the values its segments give
            values = [s.get("idx", s.get("value")) for s in info.get("label_info") or [] if isinstance(s, dict)]
        new = self.automatic[0].names.learn(segment_names(info, values).values())
        if new:
            logger.info(f"automatic methods: new names from label {label_id}: {new}")

    def init_infers(self) -> Dict[str, InferTask]:
        """PE-MED's tasks, and the automatic ones whose models exist (a client lists only what can run)."""
        infers = self.pemed.infer()
        for config in self.automatic:
            for name, task in config.infer().items():
                if task.is_valid():
                    infers[name] = task
                else:
                    logger.info(f"{name}: not served, no trained model in {self.model_dir} (README: automatic "
                                f"segmentation)")
        return infers

    def init_trainers(self) -> Dict[str, TrainTask]:
        """PE-MED's, and the automatic methods' once their models exist; each saved label queues them all."""
        trainers = {"pemed": self.pemed.trainer()}
        for config in self.automatic:
            trainers.update(config.trainer() or {})
        return trainers

    def continual_order(self):
        """The trainers a saved label queues: the edge-point network first (it learns the names saved
        labels bring, and is the one model a new name needs: served about a minute after the save),
        then PE-MED's (clicks are what an annotator waits on), then the rest."""
        first = [t for t in ("curriculum_edges", "pemed") if t in self._trainers]
        return first + sorted(t for t in self._trainers if t not in first)

    def init_scoring_methods(self) -> Dict[str, ScoringMethod]:
        """Scores every unlabeled image at start-up, after each training run and on next-sample
        requests (MONAI Label runs them), again only for images scored by an older checkpoint."""
        return {"pemed_uncertainty": PEMEDUncertaintyScoring(self._infers["pemed"])}

    def init_strategies(self) -> Dict[str, Strategy]:
        return {"random": Random(), "first": First(), "uncertainty": MostUncertain()}

    def infer(self, request, datastore=None):
        """Unknown models and images are 404s, params that are not an object a 400. Over HTTP an image
        is a datastore id (lib/http_guards.py), never a path."""
        if not isinstance(request, dict):
            raise InvalidRequest("'params' must be a JSON object")
        model = request.get("model")
        if model not in self._infers:
            raise InvalidRequest(f"unknown model {model!r}; available: {sorted(self._infers)}", 404)
        label = request.get("label")
        if label is not None and (not isinstance(label, (str, int)) or isinstance(label, bool)):
            raise InvalidRequest(f"'label' must be a structure name, got {type(label).__name__}")
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image):  # in-process callers pass paths
            store = datastore or self.datastore()
            if not store.get_image_uri(image):
                raise InvalidRequest(f"unknown image id {image!r}", 404)
        return super().infer(request, datastore)
