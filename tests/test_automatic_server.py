"""The automatic tasks in a running server: listed as segmentation models, one named structure per
request on a slice or a whole volume, clear 4xx for bad requests, and a PE-MED click that corrects
an automatic mask starts from it. Untrained models: what is checked here is the plumbing."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import requests

from conftest import served_app, write_nifti, write_untrained_automatic_models
from lib.local_server import LocalServer

NAMES = "Thalamus_L,Putamen_L"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("auto_e2e")
    app = served_app(str(root / "app"), tiny_checkpoint)
    model_dir = os.path.join(app, "model")
    for f in os.listdir(model_dir):  # whatever the checkout holds, these tests serve untrained models
        if f.startswith(("sam_", "curriculum_", "promise")):
            os.remove(os.path.join(model_dir, f))
    foundation = write_untrained_automatic_models(model_dir, NAMES.split(","))
    studies = root / "studies"
    rng = np.random.default_rng(0)
    volume = 50 + 100 * (rng.random((48, 56, 12)) > 0.7)
    write_nifti(str(studies / "vol.nii.gz"), volume.astype(np.float32))
    conf = {"auto_labels": NAMES, "curriculum_min_score": 0, "pemed_auto_train": "false", **foundation}
    with LocalServer(app, str(studies), str(root / "server.log"), conf=conf) as srv:
        yield srv.url


def infer(url, model, params, image="vol"):
    return requests.post(f"{url}/infer/{model}?image={image}&output=json",
                         files={"params": (None, json.dumps(params))}, timeout=120)


def test_info_lists_the_automatic_tasks(server):
    info = requests.get(f"{server}/info/", timeout=10).json()
    for model in ("curriculum", "promise"):
        assert info["models"][model]["type"] == "segmentation"
        assert info["models"][model]["labels"] == {"Thalamus_L": 1, "Putamen_L": 2}
    assert info["models"]["pemed"]["type"] == "deepgrow"


@pytest.mark.parametrize("model", ["curriculum", "promise"])
def test_a_slice_and_a_whole_volume(server, model):
    r = infer(server, model, {"label": "Putamen_L", "slice": 5})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["label_names"] == {"Thalamus_L": 1, "Putamen_L": 2} and out["value"] == 2 and out["slice"] == 5 and len(out["points"]) in (8, 16)
    if model == "curriculum":
        assert len(out["box"]) == 4
    r = infer(server, model, {})  # no slice: every slice; no label: the task's first
    assert r.status_code == 200, r.text
    assert r.json()["label"] == "Thalamus_L" and "slices_with_structure" in r.json()


@pytest.mark.parametrize("params, words", [
    ({"label": "Caudate_R"}, "must be one of"),
    ({"label": ["Thalamus_L"]}, "label"),
    ({"label": "Thalamus_L", "slice": 12}, "outside the volume"),
    ({"label": "Thalamus_L", "axis": 5}, "'axis'"),
    ({"label": "Thalamus_L", "slice": "x"}, "integer"),
])
def test_bad_requests_get_clear_4xx(server, params, words):
    r = infer(server, "curriculum", params)
    assert 400 <= r.status_code < 500 and words in r.text, r.text


def test_a_pemed_click_corrects_the_automatic_mask(server, tmp_path):
    label = requests.post(f"{server}/infer/curriculum?image=vol&output=image",
                          files={"params": (None, json.dumps({"label": "Thalamus_L", "slice": 6,
                                                              "client_id": "tab1"}))}, timeout=120)
    assert label.status_code == 200
    path = tmp_path / "answer.nii.gz"
    path.write_bytes(label.content)
    mask = np.asanyarray(nib.load(str(path)).dataobj)[:, :, 6] > 0
    assert mask.any(), "the untrained models gave an empty mask: choose another seed"
    x, y = np.argwhere(mask)[0]
    # a negative click inside the automatic mask: PE-MED starts from it
    r = infer(server, "pemed", {"background": [[int(x), int(y), 6]], "client_id": "tab1"})
    assert r.status_code == 200 and r.json()["started_from"] == "curriculum", r.text
    # another client's clicks, or a fresh start asked for, do not
    r = infer(server, "pemed", {"background": [[int(x), int(y), 6]], "client_id": "tab2"})
    assert r.json()["started_from"] is None
    r = infer(server, "pemed", {"background": [[int(x), int(y), 6]], "client_id": "tab1", "reset_state": True,
                                "start_from": "none"})
    assert r.json()["started_from"] is None


@pytest.fixture(scope="module")
def learning_server(tmp_path_factory, tiny_checkpoint):
    """A server that fine-tunes as labels are saved, at the smallest budget (untrained models)."""
    root = tmp_path_factory.mktemp("auto_learn")
    app = served_app(str(root / "app"), tiny_checkpoint)
    model_dir = os.path.join(app, "model")
    for f in os.listdir(model_dir):
        if f.startswith(("sam_", "curriculum_", "promise")):
            os.remove(os.path.join(model_dir, f))
    foundation = write_untrained_automatic_models(model_dir, NAMES.split(","))
    rng = np.random.default_rng(1)
    write_nifti(str(root / "studies" / "vol.nii.gz"), (50 + 100 * (rng.random((48, 56, 12)) > 0.7)).astype(np.float32))
    conf = {"auto_labels": NAMES, "curriculum_min_score": 0, "pemed_auto_train": "true", "pemed_train_quiet_s": 1,
            "auto_train_epochs": 1, "auto_train_samples": 4, "pemed_train_epochs": 1, "pemed_train_samples": 4,
            "pemed_replay_maps": "none", "pemed_publish_gate": "off", **foundation}
    with LocalServer(app, str(root / "studies"), str(root / "server.log"), conf=conf) as srv:
        yield srv.url, root


def test_a_name_saved_with_a_label_is_learnt_and_served(learning_server, tmp_path):
    """A segment named in the saved label's label_info (as OHIF and Slicer send it) becomes a name
    the automatic methods segment once the run the save starts has published: not listed and a 409
    before, listed and answered after."""
    import time

    url, root = learning_server
    label = np.zeros((48, 56, 12), np.uint8)
    label[10:30, 12:40, 4:7] = 1  # drawn on three slices
    write_nifti(str(tmp_path / "label.nii.gz"), label)
    with open(tmp_path / "label.nii.gz", "rb") as f:
        r = requests.put(f"{url}/datastore/label?image=vol&tag=final", timeout=60,
                         files={"label": ("label.nii.gz", f), "params": (None, json.dumps(
                             {"label_info": [{"name": "Lesion", "idx": 1}]}))})
    assert r.status_code == 200, r.text
    registry = json.loads((root / "app" / "model" / "auto_names.json").read_text())
    assert "Lesion" in registry["learnt"]
    r = infer(url, "curriculum", {"label": "Lesion", "slice": 5})
    assert r.status_code == 409 and "still learning" in r.text, r.text
    deadline = time.time() + 300
    while time.time() < deadline:
        labels = requests.get(f"{url}/info/", timeout=10).json()["models"]["curriculum"]["labels"]
        if "Lesion" in labels:
            break
        time.sleep(3)
    assert labels == {"Thalamus_L": 1, "Putamen_L": 2, "Lesion": 3}, (root / "server.log").read_text()[-3000:]
    r = infer(url, "curriculum", {"label": "Lesion", "slice": 5})
    assert r.status_code == 200 and r.json()["value"] == 3, r.text


def test_a_fresh_server_lists_and_runs_the_bundled_automatic_tasks(tmp_path, tiny_checkpoint):
    """The checkout's own models (LiteMedSAM from the wheel, the bundled decoder, Curriculum's
    edge-point network, ProMISe): both tasks listed with the default names, and both segment a
    slice of the sample on the first request."""
    from conftest import ROOT
    from lib.configs.labels import AUTO_DEFAULT

    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    studies = tmp_path / "studies"
    studies.mkdir()
    volume = nib.load(os.path.join(ROOT, "datasets", "sample", "volumes", "ch2bet.nii.gz"))
    nib.save(nib.Nifti1Image(np.asanyarray(volume.dataobj)[:, :, 60:100].astype(np.float32), volume.affine),
             str(studies / "brain.nii.gz"))
    with LocalServer(app, str(studies), str(tmp_path / "server.log"), conf={"pemed_auto_train": "false"}) as srv:
        info = requests.get(f"{srv.url}/info/", timeout=30).json()
        for model in ("curriculum", "promise"):
            assert list(info["models"][model]["labels"]) == list(AUTO_DEFAULT), model
            r = infer(srv.url, model, {"label": "Thalamus_L", "slice": 20}, image="brain")
            assert r.status_code == 200 and r.json()["label"] == "Thalamus_L", r.text
