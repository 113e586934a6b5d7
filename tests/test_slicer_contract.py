"""The REST contract 3D Slicer's MONAI Label module relies on, end to end through
`monailabel.client.MONAILabelClient` against `monailabel start_server --app apps/pemed` on 127.0.0.1:
info, next sample, infer with clicks (continuing and resetting a session, one per label), save
label, train start / status / stop."""

import time

import nibabel as nib
import numpy as np
import pytest

from conftest import served_app, write_nifti
from lib.local_server import LocalServer


def volume(seed):
    """Two bright boxes (labels 1 and 2) in a noisy 64 x 64 x 12 volume."""
    rng = np.random.default_rng(seed)
    label = np.zeros((64, 64, 12), np.uint8)
    label[10:30, 12:34, 2:10] = 1
    label[38:56, 36:58, 3:9] = 2
    return 40 + 120 * (label > 0) + 40 * (label == 2) + rng.normal(0, 4, label.shape), label


@pytest.fixture(scope="module")
def slicer(tmp_path_factory, tiny_checkpoint):
    from monailabel.client import MONAILabelClient

    root = tmp_path_factory.mktemp("slicer")
    app = served_app(str(root / "app"), tiny_checkpoint)
    studies = root / "studies"
    for i in range(3):
        image, label = volume(i)
        write_nifti(str(studies / f"case_{i}.nii.gz"), image)
        if i == 0:  # one labelled already; the others wait for an annotator
            write_nifti(str(studies / "labels" / "final" / "case_0.nii.gz"), label, np.uint8)
    conf = {"pemed_auto_train": "false", "pemed_replay_maps": "none"}
    with LocalServer(app, str(studies), str(root / "server.log"), conf=conf) as srv:
        yield {"client": MONAILabelClient(srv.url, tmpdir=str(root / "client")), "root": root}


def test_info_describes_the_model_labels_and_trainer(slicer):
    info = slicer["client"].info()
    model = info["models"]["pemed"]
    assert model["type"] == "deepgrow" and model["dimension"] == 2 and model["labels"]["Thalamus_L"] == 77
    assert "pemed" in info["trainers"] and {"random", "first"} <= set(info["strategies"])
    assert info["labels"][0] == "Precentral_L" and info["continual_training"]["enabled"] is False


def test_next_sample_offers_an_unlabelled_image(slicer):
    sample = slicer["client"].next_sample("random", {})
    assert sample["id"] in ("case_1", "case_2")


def test_clicks_continue_a_session_per_label_and_reset(slicer):
    client = slicer["client"]
    _, truth = volume(1)

    def click(points, label, reset=False, background=()):
        path, params = client.infer("pemed", "case_1", {"foreground": points, "background": list(background),
                                                        "label": label, "reset_state": reset})
        return np.asanyarray(nib.load(path).dataobj), params

    first, params = click([[20, 22, 5]], "box_a", reset=True)
    assert params["steps_run"] == 1 and first[20, 22, 5] == 1 and first.shape == truth.shape
    inside = first[..., 5][truth[..., 5] == 1].sum()
    assert inside >= 0.8 * first[..., 5].sum()  # the mask lies in the clicked box (the first one is small: README)
    other, params = click([[47, 47, 5]], "box_b", reset=True)  # another label: its own session
    assert params["steps_run"] == 1 and other[47, 47, 5] == 1
    again, params = click([[20, 22, 5]], "box_a", background=[[40, 40, 5]])  # box_a's session goes on
    assert params["steps_run"] == 1 and params["clicks"] == 2
    restarted, params = click([[20, 22, 5]], "box_a", reset=True)
    assert params["steps_run"] == 1 and params["clicks"] == 1


def test_a_saved_label_lands_in_the_datastore(slicer, tmp_path):
    client = slicer["client"]
    _, label = volume(2)
    path = str(tmp_path / "case_2_label.nii.gz")
    write_nifti(path, label, np.uint8)
    answer = client.save_label("case_2", path, tag="final")
    assert answer["image"] == "case_2"
    stored = slicer["root"] / "studies" / "labels" / "final" / "case_2.nii.gz"
    assert np.array_equal(np.asanyarray(nib.load(str(stored)).dataobj), label)  # exactly what was drawn
    assert "case_2" in client.datastore()["objects"]


def test_training_starts_reports_status_and_stops(slicer):
    client = slicer["client"]
    published = slicer["root"] / "app" / "model" / "pemed_finetuned.pt"
    started = client.train_start("pemed", {"max_epochs": 50, "train_batch_size": 2, "samples_per_epoch": 4})
    assert started["status"] in ("SUBMITTED", "RUNNING")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not client.train_status(check_if_running=True):
        time.sleep(0.5)
    assert client.train_status(check_if_running=True)
    assert client.train_status()["status"] == "RUNNING"
    stopped = client.train_stop()
    assert stopped["status"] == "STOPPED"
    assert not client.train_status(check_if_running=True)
    assert not published.exists()  # a stopped run publishes nothing: the last good model keeps serving
