"""Per-(image, label, slice) interaction state kept between requests.

Clients (OHIF, 3D Slicer) send the whole click list of a session with every request. A session
remembers the logits after each click, so a request that extends the list runs one step per new
click from the longest shared prefix; an undo (a shorter or changed list) rewinds to that prefix
instead of starting over. Sessions expire after ``ttl_s`` seconds unused, and at most
``max_sessions`` are kept (least recently used dropped first).
"""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from .clicks import Click


@dataclass
class InteractionSession:
    clicks: List[Click] = field(default_factory=list)
    history: List[torch.Tensor] = field(default_factory=list)  # logits after clicks[: i + 1]
    last_used: float = field(default_factory=time.monotonic)
    start: Optional[torch.Tensor] = None  # the previous logits of the first click (an automatic result), if any
    started_from: str = ""  # the automatic method ``start`` came from

    def shared_prefix(self, clicks: Sequence[Click]) -> int:
        n = 0
        for a, b in zip(self.clicks, clicks):
            if a != b:
                break
            n += 1
        return n

    def advance(self, clicks: Sequence[Click], step: Callable[[Sequence[Click], Optional[torch.Tensor]], torch.Tensor]):
        """Bring the session to ``clicks``; ``step(clicks_so_far, prev_logits)`` returns new logits.

        Returns the logits after the last click and how many network steps were run.
        """
        keep = self.shared_prefix(clicks)
        if keep == len(clicks) and keep == len(self.clicks) and keep > 0:
            return self.history[-1], 0
        if keep == len(clicks):  # the list is a strict prefix (undo): re-run the last click
            keep -= 1
        del self.clicks[keep:], self.history[keep:]
        steps = 0
        for i in range(keep, len(clicks)):
            prev = self.history[-1] if self.history else self.start
            logits = step(clicks[: i + 1], prev)
            self.clicks.append(clicks[i])
            self.history.append(logits.detach().to("cpu", torch.float16))
            steps += 1
        self.last_used = time.monotonic()
        return self.history[-1], steps


class SessionStore:
    def __init__(self, ttl_s: float = 1800.0, max_sessions: int = 64):
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._sessions: "OrderedDict[Hashable, InteractionSession]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: Hashable, reset: bool = False) -> InteractionSession:
        with self._lock:
            now = time.monotonic()
            for k in [k for k, s in self._sessions.items() if now - s.last_used > self.ttl_s]:
                del self._sessions[k]
            session = None if reset else self._sessions.pop(key, None)
            self._sessions[key] = session or InteractionSession()
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return self._sessions[key]

    def key_for_clicks(self, base: Tuple, clicks: Sequence[Click]) -> Tuple:
        """The session key, under ``base``, that these clicks continue, for clients that name no
        structure (OHIF sends each structure's clicks on the slice, and every background click, with
        each request): see ``matching_key``."""
        with self._lock:
            stored = {k: set(s.clicks) for k, s in self._sessions.items() if isinstance(k, tuple)}
        return matching_key(base, stored, set(clicks), {c for c in clicks if c.positive})

    def reset(self, key: Hashable) -> None:
        with self._lock:
            self._sessions.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


def matching_key(base: Tuple, stored: Dict[Tuple, Set], clicks: Set, positive: Set) -> Tuple:
    """Of the keys ``base + (n,)`` in ``stored`` (key -> the clicks it holds), the one sharing the most
    clicks with the request, one of them positive when the request has any; else a new one. Two
    structures clicked on one slice or volume keep apart because their positive clicks differ, and
    re-sent clicks continue their own state."""
    mine = [k for k in stored if k[:-1] == base]
    best, most = None, 0
    for key in mine:
        shared = clicks & stored[key]
        if positive and not positive & shared:
            continue
        if len(shared) > most:
            best, most = key, len(shared)
    return best if best is not None else base + (max((k[-1] for k in mine), default=-1) + 1,)


@dataclass
class AutomaticResult:
    name: str
    method: str
    mask: np.ndarray  # (H, W) bool
    made: float = field(default_factory=time.monotonic)


class AutomaticResults:
    """The last automatic result (``curriculum``, ``promise``) per (client, image, axis, slice), which
    PE-MED's first click on that slice starts from as its previous mask (lib/infers/pemed.py). The
    masks of a whole volume's run are kept slice by slice (a bool mask of a 256 x 256 slice is 64 kB)."""

    def __init__(self, ttl_s: float = 1800.0, max_items: int = 1024):
        self.ttl_s, self.max_items = ttl_s, max_items
        self._items: "OrderedDict[Hashable, AutomaticResult]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: Hashable, name: str, method: str, mask: np.ndarray) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = AutomaticResult(name, method, np.asarray(mask, bool))
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get(self, key: Hashable) -> Optional[AutomaticResult]:
        with self._lock:
            item = self._items.get(key)
            if item is not None and time.monotonic() - item.made > self.ttl_s:
                del self._items[key]
                return None
            return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


AUTOMATIC_RESULTS = AutomaticResults()  # one per server process: the automatic tasks write, PE-MED reads
