"""The pemed_3d task: a click on one slice segments the structure through the volume, stops where it
ends, and a click on another slice corrects it."""

import os

import numpy as np
import pytest

from conftest import APP_DIR, write_nifti
from lib.evaluation import dice
from lib.prompts.clicks import clicks_by_slice
from lib.propagation import to_volume

BUNDLED = os.path.join(APP_DIR, "model", "pemed.pt")


def ellipsoid(shape=(72, 64, 40), centre=(36, 30, 20), radii=(16, 12, 10)):
    grid = np.indices(shape).astype(np.float32)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


@pytest.fixture(scope="module")
def task_and_volume(tmp_path_factory):
    from lib.configs.labels import AAL_LABELS
    from lib.infers.pemed_3d import PEMED3DInfer
    from lib.predictor import SERVE_DEFAULTS

    truth = ellipsoid()
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("vol") / "vol.nii.gz")
    write_nifti(path, 60 + 100 * truth + rng.normal(0, 4, truth.shape))
    return PEMED3DInfer([BUNDLED], labels=AAL_LABELS, serve=SERVE_DEFAULTS), path, truth


def request(task, path, fg, bg=(), reset=False, label="blob"):
    data = {"image": path, "image_path": path, "foreground": fg, "background": list(bg), "label": label,
            "reset_state": reset}
    return task.run_inferer(data, device="cpu")


@pytest.mark.skipif(not os.path.exists(BUNDLED), reason="needs the bundled model")
def test_clicks_on_one_slice_segment_the_structure_through_the_volume(task_and_volume):
    task, path, truth = task_and_volume
    request(task, path, [[36, 30, 20]], reset=True)  # the model's first answer is small (see the README)
    out = request(task, path, [[36, 30, 20], [26, 30, 20]])
    pred = out["pred"].astype(bool)
    assert dice(truth, pred) > 0.9
    first, last = out["result"]["slices"]
    assert 10 - 2 <= first <= 12 and 28 <= last <= 30 + 2  # the ellipsoid spans slices 10-30: stops where it ends
    assert pred[..., :first].sum() == 0 and pred[..., last + 1:].sum() == 0


@pytest.mark.skipif(not os.path.exists(BUNDLED), reason="needs the bundled model")
def test_a_click_on_another_slice_becomes_an_anchor(task_and_volume):
    task, path, truth = task_and_volume
    request(task, path, [[36, 30, 20]], reset=True, label="two")
    out = request(task, path, [[36, 30, 20], [36, 30, 13]], label="two")
    assert out["result"]["anchors"] == [13, 20] and out["result"]["anchors_rerun"] == 1  # slice 20 reused
    assert out["pred"][36, 30, 13] == 1
    again = request(task, path, [[36, 30, 20], [36, 30, 13]], label="two")  # the same clicks re-sent
    assert again["result"]["anchors_rerun"] == 0 and np.array_equal(again["pred"], out["pred"])


@pytest.mark.skipif(not os.path.exists(BUNDLED), reason="needs the bundled model")
def test_without_a_label_the_clicks_keep_structures_apart(task_and_volume):
    task, path, _ = task_and_volume
    first = request(task, path, [[36, 30, 20]], label="")
    other = request(task, path, [[10, 8, 20]], label="")  # a second structure: a state of its own
    assert other["result"]["anchors_rerun"] == 1
    again = request(task, path, [[36, 30, 20]], label="")  # back to the first: nothing runs again
    assert again["result"]["anchors_rerun"] == 0 and np.array_equal(again["pred"], first["pred"])


def test_bad_3d_requests_are_refused(task_and_volume, tmp_path):
    from lib.errors import InvalidRequest

    task, path, _ = task_and_volume
    with pytest.raises(InvalidRequest, match="outside the volume"):
        request(task, path, [[100, 0, 0]])
    flat = str(tmp_path / "flat.nii.gz")
    write_nifti(flat, np.zeros((32, 32)))
    with pytest.raises(InvalidRequest, match="3D volumes"):
        request(task, flat, [[3, 3]])


def test_clicks_are_grouped_by_slice_and_stacked_back():
    grouped = clicks_by_slice([[1, 2, 5], [3, 4, 5]], [[6, 7, 9]], axis=2)
    assert {k: [tuple(c) for c in v] for k, v in grouped.items()} == {5: [(1, 2, True), (3, 4, True)], 9: [(6, 7, False)]}
    assert list(clicks_by_slice([[1, 2, 5]], [], axis=0)) == [1]

    class R:
        def __init__(self, mask):
            self.mask = mask

    volume = to_volume({1: R(np.ones((3, 4), bool))}, (2, 3, 4), axis=0)
    assert volume[1].all() and not volume[0].any()


def test_walks_between_anchors_cover_the_gap_between_them():
    """A tall thin structure clicked on slices farther apart than it is wide: the slices between them
    are filled, each anchor's walk going halfway to the other, and past a walk that stops short the
    other goes on; beyond the outer anchors a walk stops at about the anchor's width. The predictor
    here copies each slice's neighbour: the walks' geometry is under test, not the network."""
    import torch
    from lib.predictor import Prediction
    from lib.propagation import SliceResult, propagate

    class CopyNeighbour:
        def __init__(self):
            self.batches = []

        def predict_many(self, steps):
            self.batches.append(len(steps))
            return [Prediction((prev[0, 0] > 0).float().numpy(), prev.clone()) for _, _, prev in steps]

    disk = np.zeros((32, 32), bool)
    disk[14:18, 14:18] = True  # 16 pixels: reach ceil(2 * sqrt(16 / pi)) = 5 slices
    logits = torch.where(torch.from_numpy(disk), 5.0, -5.0)[None, None]
    anchor = SliceResult(logits, disk)
    uniform = lambda i: disk.astype(np.float32)  # noqa: E731
    predictor = CopyNeighbour()
    assert sorted(propagate(predictor, uniform, 100, {20: anchor, 40: anchor})) == list(range(15, 46))
    assert max(predictor.batches) == 4  # the four walks step together
    # from slice 24 on the structure is brighter: the walk up from 20 stops there, the one from 40 goes on
    brighter = lambda i: disk * (0.2 if i < 24 else 0.8)  # noqa: E731
    assert sorted(propagate(CopyNeighbour(), brighter, 100, {20: anchor, 40: anchor})) == list(range(15, 46))


def test_a_first_click_near_the_propagated_slices_starts_from_the_nearest():
    from lib.infers.pemed_3d import nearest

    results = {10: "ten", 13: "thirteen"}
    assert nearest(results, 10) == "ten" and nearest(results, 12) == "thirteen" and nearest(results, 15) == "thirteen"
    assert nearest(results, 16) is None and nearest({}, 3) is None
