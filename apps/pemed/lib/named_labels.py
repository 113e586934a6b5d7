"""The structure names the automatic methods learn from the labels annotators save.

A saved label says what its values are in MONAI Label's ``label_info``: a list of segments, each
with its ``name`` and its value as ``idx`` (3D Slicer) or ``value``; OHIF's MONAI Label panel sends
the names alone, one per value the label holds, in the order of the values. A value no segment
names is the app's label map's (AAL; a lobe's own value, lib/configs/labels.py). ``segment_names`` turns a label's info and values into
{value: name}.

``NameRegistry``: the automatic methods' names, the configured ones (``auto_labels``) first, then
every name a saved label brought, in the order they came; kept as JSON in the model folder, so the
server and its training processes agree on each name's class index. A learnt name keeps its atlas
value when it is an AAL structure or lobe disjoint from the names before it (the engine's replayed
draws then show it where it is); any other name gets a value of its own above every atlas value,
which no replayed draw holds, so replayed draws say nothing about it (``atlas_value``).
"""

import json
import os
import threading
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .configs.labels import AAL_LABELS, STRUCTURES, parts

LEARNT_VALUE_BASE = 1000  # above every AAL and lobe value
_STRUCTURE_NAMES = {v: n for n, v in STRUCTURES.items()}


def atlas_value(value: int) -> bool:
    """Is this a structure's atlas value (which the engine's draws show), not one learnt?"""
    return int(value) < LEARNT_VALUE_BASE


def appended_names(own: Sequence[str], names: Sequence[str]) -> int:
    """How many names ``names`` adds after a network's ``own`` (which it must begin with, in order)."""
    if list(names[:len(own)]) != list(own):
        raise ValueError("a network grows by new names after its own, in the same order")
    return len(names) - len(own)


def segment_names(info: Optional[dict], values: Iterable[int]) -> Dict[int, str]:
    """{value: name} of a saved label's nonzero ``values`` (module docstring)."""
    values = sorted({int(v) for v in values if isinstance(v, (int, float, np.integer)) and not isinstance(v, bool)
                     and int(v) != 0})
    segments = (info or {}).get("label_info")
    named: Dict[int, str] = {}
    if isinstance(segments, list):
        unvalued = []
        for seg in segments:
            if not isinstance(seg, dict) or not isinstance(seg.get("name"), str) or not seg["name"].strip():
                continue
            value = seg.get("idx", seg.get("value"))
            if isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) in values:
                named[int(value)] = seg["name"].strip()
            elif value is None:
                unvalued.append(seg["name"].strip())
        rest = [v for v in values if v not in named]
        if unvalued and len(unvalued) == len(rest):  # OHIF: one name per value, in the values' order
            named.update(zip(rest, unvalued))
    for v in values:
        if v not in named and v in _STRUCTURE_NAMES:
            named[v] = _STRUCTURE_NAMES[v]
    return named


class NameRegistry:
    def __init__(self, path: str, configured: Sequence[str]):
        self.path = path
        self.configured = list(configured)
        self._learnt: Dict[str, int] = {}
        self._stamp: Optional[float] = None
        self._lock = threading.Lock()

    def _reload(self) -> None:
        stamp = os.path.getmtime(self.path) if os.path.isfile(self.path) else None
        if stamp == self._stamp:
            return
        learnt = {}
        if stamp is not None:
            try:
                with open(self.path) as f:
                    learnt = {str(k): int(v) for k, v in json.load(f).get("learnt", {}).items()}
            except (OSError, ValueError, AttributeError):
                learnt = dict(self._learnt)  # a half-written file: keep what was read before
        self._learnt, self._stamp = learnt, stamp

    def values(self) -> Dict[str, int]:
        """Every name's value, configured names first: a name's class index is its place here."""
        with self._lock:
            self._reload()
            out = {n: STRUCTURES[n] for n in self.configured}
            out.update((n, v) for n, v in self._learnt.items() if n not in out)
            return out

    def names(self) -> List[str]:
        return list(self.values())

    def learn(self, names: Iterable[str]) -> List[str]:
        """Adds the names not known yet (written atomically); returns them."""
        with self._lock:
            self._reload()
            current = {n: STRUCTURES[n] for n in self.configured}
            current.update(self._learnt)
            taken = {p for v in current.values() for p in parts(v)}
            new = []
            for name in names:
                if name in current:
                    continue
                value = STRUCTURES.get(name)
                if value is None or taken & set(parts(value)):
                    value = LEARNT_VALUE_BASE + len([v for v in current.values() if v >= LEARNT_VALUE_BASE])
                current[name] = self._learnt[name] = value
                taken |= set(parts(value))
                new.append(name)
            if new:
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump({"learnt": self._learnt}, f, indent=1)
                os.replace(tmp, self.path)
                self._stamp = os.path.getmtime(self.path)
            return new


def class_values(names: Sequence[str], known: Dict[str, int]) -> Dict[str, int]:
    """``names`` (a network's classes, in order) with their values: ``known``'s, else the atlas's, else
    one of their own above every atlas value."""
    out: Dict[str, int] = {}
    learnt = max([v for v in known.values() if v >= LEARNT_VALUE_BASE], default=LEARNT_VALUE_BASE - 1)
    for name in names:
        if name in known or name in STRUCTURES:
            out[name] = known.get(name, STRUCTURES.get(name))
        else:
            learnt += 1
            out[name] = learnt
    return out


def grown(network, names: Sequence[str], known: Dict[str, int]):
    """(``network`` grown by the ``names`` it lacks, after its own, where it can grow (``with_names``);
    its classes' values by ``class_values``): how a model meets the names learnt since it was trained."""
    if hasattr(network, "with_names"):
        network = network.with_names(list(dict.fromkeys(list(network.names) + list(names))))
    return network, class_values(getattr(network, "names", list(names)), known)


def class_map(label: np.ndarray, names_by_value: Dict[int, str], values: Dict[str, int]) -> Tuple[np.ndarray, List[bool]]:
    """A saved label -> (its class map: 1 + the name's place in ``values``, 0 elsewhere; per name,
    whether the label says where it is). A value counts for the name it is given, or, named by the
    app's label map, for the lobe it is a part of."""
    index = {name: k + 1 for k, name in enumerate(values)}
    lobe_of = {p: index[n] for n, v in values.items() for p in parts(v) if p != v}
    out = np.zeros(label.shape, np.int16)
    known = [False] * len(values)
    for value, name in names_by_value.items():
        k = index.get(name) or (lobe_of.get(AAL_LABELS[name]) if name in AAL_LABELS else None)
        if k:
            out[label == value] = k
            known[k - 1] = True
    return out, known
