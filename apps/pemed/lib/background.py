"""Background work gives way to clicks.

MONAI Label runs training and scoring in a process of their own (``python -m
monailabel.interfaces.utils.app``). On a machine with few cores such a process takes every core
while an annotator clicks: a click's answer went from 181 ms to 817 ms while start-up scoring ran
(benchmarks/ohif_latency.py, 2 cores). ``yield_to_clicks`` lowers that process's CPU priority, so the
server's answers come first and the background work takes what is left; it changes nothing when the
work runs inside the server itself (a ``run_sync`` request) or outside it (train.py).
"""

import logging
import os
import sys

logger = logging.getLogger(__name__)

BACKGROUND_MAIN = "monailabel.interfaces.utils.app"
NICENESS = 10
_lowered = False


def in_background_process() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == BACKGROUND_MAIN


def yield_to_clicks() -> None:
    """Lower this process's CPU priority once, if it is MONAI Label's background task process."""
    global _lowered
    if _lowered or not in_background_process():
        return
    try:
        os.nice(NICENESS)
        _lowered = True
    except OSError as e:  # a platform without nice: the work runs as before
        logger.warning(f"could not lower the background task's priority: {e}")
