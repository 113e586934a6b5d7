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
