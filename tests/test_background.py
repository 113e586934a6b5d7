"""Background work (MONAI Label's task process) lowers its CPU priority once; elsewhere nothing changes."""

import sys
import types

from lib import background


def test_only_the_background_process_yields(monkeypatch):
    calls = []
    monkeypatch.setattr(background.os, "nice", lambda n: calls.append(n))
    monkeypatch.setattr(background, "_lowered", False)
    background.yield_to_clicks()
    assert calls == []  # pytest is not MONAI Label's task process

    fake_main = types.ModuleType("__main__")
    fake_main.__spec__ = types.SimpleNamespace(name=background.BACKGROUND_MAIN)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    background.yield_to_clicks()
    background.yield_to_clicks()
    assert calls == [background.NICENESS]  # once: os.nice adds up
