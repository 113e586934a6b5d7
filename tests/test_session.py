import time

import torch

from lib.prompts.clicks import Click
from lib.prompts.session import SessionStore

A, B, C = Click(1, 1, True), Click(2, 2, False), Click(3, 3, True)


def fake_step(calls):
    def step(clicks, prev):
        calls.append((len(clicks), prev is None))
        return torch.full((1, 1, 2, 2), float(len(clicks)))
    return step


def test_session_extends_rewinds_and_repeats():
    session = SessionStore().get("k")
    calls = []
    logits, steps = session.advance([A, B], fake_step(calls))
    assert steps == 2 and calls == [(1, True), (2, False)] and logits[0, 0, 0, 0] == 2
    _, steps = session.advance([A, B], fake_step(calls))
    assert steps == 0  # the same request again runs nothing
    _, steps = session.advance([A, B, C], fake_step(calls))
    assert steps == 1 and calls[-1] == (3, False)
    logits, steps = session.advance([A, C], fake_step(calls))  # B undone: rewind to [A]
    assert steps == 1 and session.clicks == [A, C]
    logits, steps = session.advance([A], fake_step(calls))  # undo to the first click: re-run it fresh
    assert steps == 1 and calls[-1] == (1, True)


def test_store_expiry_capacity_and_reset():
    store = SessionStore(ttl_s=0.05, max_sessions=2)
    s = store.get("a")
    s.advance([A], fake_step([]))
    assert store.get("a").clicks == [A]
    assert store.get("a", reset=True).clicks == []
    store.get("b"), store.get("c")
    assert len(store) == 2
    time.sleep(0.1)
    store.get("d")
    assert len(store) == 1


def test_clicks_without_a_label_find_their_own_session():
    store = SessionStore()
    base = ("img", "", 2, 40)
    D, E = Click(9, 9, True), Click(8, 8, False)
    first = store.key_for_clicks(base, [A])
    store.get(first).advance([A], fake_step([]))
    assert store.key_for_clicks(base, [A, B]) == first  # the same structure, its click re-sent
    other = store.key_for_clicks(base, [D])
    assert other != first  # a second structure on the slice
    store.get(other).advance([D, B], fake_step([]))
    store.get(first).advance([A, B], fake_step([]))
    assert store.key_for_clicks(base, [D, B, E]) == other  # a shared background click does not merge them
    assert store.key_for_clicks(base, [C]) not in (first, other)
    assert store.key_for_clicks(("img", "", 2, 41), [A]) != first  # another slice
