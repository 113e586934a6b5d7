"""Fine-tuning as labels arrive: each saved final label asks for a training run.

Saves that come close together make one run (the run starts once no label has been saved for
``quiet_s`` seconds), and labels saved while a run is going start the next run after it ends, so
none is left out and runs never overlap. ``start`` launches a run (in the server, MONAI Label's
background training task, which fine-tunes from the newest published model); ``running`` says
whether one is still going.
"""

import logging
import threading
import time
from typing import Callable, Optional

logger = logging.getLogger(__name__)


class TrainingScheduler:
    def __init__(self, start: Callable[[], None], running: Callable[[], bool], quiet_s: float = 10.0,
                 poll_s: float = 1.0):
        self.start, self.running = start, running
        self.quiet_s, self.poll_s = quiet_s, poll_s
        self.last_save: Optional[float] = None  # monotonic time of the newest save no run has taken yet
        self.saves_waiting = 0
        self.runs_started = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def label_saved(self) -> None:
        with self._lock:
            self.last_save = time.monotonic()
            self.saves_waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="pemed-continual-training", daemon=True)
                self._thread.start()

    def status(self) -> dict:
        with self._lock:
            return {"saves_waiting": self.saves_waiting, "runs_started": self.runs_started,
                    "last_error": self.last_error}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.poll_s)

    def _due(self) -> bool:
        with self._lock:
            if self.last_save is None or time.monotonic() - self.last_save < self.quiet_s:
                return False
        return not self.running()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            if not self._due():
                continue
            with self._lock:
                waiting, self.last_save, self.saves_waiting = self.saves_waiting, None, 0
            logger.info(f"continual training: starting a run for {waiting} newly saved label(s)")
            try:
                self.start()
                with self._lock:
                    self.runs_started += 1
            except Exception as e:  # the server keeps serving; the labels wait for the next save
                logger.exception("continual training: the run could not be started")
                with self._lock:
                    self.saves_waiting += waiting
                    self.last_error = f"{type(e).__name__}: {e}"


class NewLabelWatcher:
    """Calls ``on_new`` when ``list_labels`` (ids of the labels a store holds) shows ids it has not
    seen, polling every ``interval_s`` seconds. For a DICOMweb study list, where another client (OHIF's
    own DICOM SEG export, a PACS workflow) may store a SEG without going through this server."""

    def __init__(self, list_labels: Callable[[], set], on_new: Callable[[], None], interval_s: float = 30.0):
        self.list_labels, self.on_new, self.interval_s = list_labels, on_new, interval_s
        self.seen: Optional[set] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pemed-new-label-watcher", daemon=True)

    def start(self) -> "NewLabelWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self, notify: bool = True) -> int:
        """One poll; the number of new labels. The first poll, and one with ``notify`` false (after a
        save through this server, which schedules its own run), only take stock."""
        try:
            current = set(self.list_labels())
        except Exception as e:  # the server may be down for a while; try again next time
            logger.warning(f"new-label watcher: cannot list labels: {e}")
            return 0
        new = 0 if self.seen is None else len(current - self.seen)
        self.seen = current if self.seen is None else self.seen | current
        if new and notify:
            logger.info(f"new-label watcher: {new} label(s) stored by another client")
            self.on_new()
        return new

    def _loop(self) -> None:
        self.check()
        while not self._stop.wait(self.interval_s):
            self.check()
