"""Load (issue 10, part 2), bounded: 8 clients clicking at once while a training run is active, and two
users' interaction state kept apart on the same image, slice and label."""

import json
import os
import shutil
import sys
import time

import numpy as np
import pytest
import requests

from conftest import MRICRON, ROOT, served_app
from lib.local_server import LocalServer

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import load  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="needs mricron-data")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_checkpoint):
    import nibabel as nib

    root = tmp_path_factory.mktemp("load")
    app = served_app(str(root / "app"), tiny_checkpoint)
    studies = root / "studies"
    os.makedirs(studies / "labels" / "final")
    shutil.copy(os.path.join(MRICRON, "ch2bet.nii.gz"), studies)
    shutil.copy(os.path.join(MRICRON, "aal.nii.gz"), studies / "labels" / "final" / "ch2bet.nii.gz")
    conf = {"pemed_auto_train": "false", "pemed_seg_poll_s": "0", "pemed_replay_maps": "none"}
    with LocalServer(app, str(studies), str(root / "server.log"), conf=conf) as srv:
        label = np.asanyarray(nib.load(os.path.join(MRICRON, "aal.nii.gz")).dataobj)
        yield {"url": srv.url, "label": label}


def test_eight_clients_click_while_training_runs(server):
    url = server["url"]
    r = requests.post(f"{url}/train/pemed", json={"max_epochs": 100, "train_batch_size": 2, "samples_per_epoch": 8},
                      timeout=60)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 300
    while not any("Iter:" in line for line in requests.get(f"{url}/train/", timeout=30).json().get("details", [])):
        assert time.monotonic() < deadline, "the training run did not start"
        time.sleep(1)
    result = load.run_clients(url, "ch2bet", server["label"], clients=8, clicks=3)
    assert requests.get(f"{url}/train/", timeout=30).json()["status"] == "RUNNING"  # it ran all along
    requests.delete(f"{url}/train/", timeout=60)
    print(f"\n8 clients x 3 clicks while training: {result}")
    assert result["failed"] == 0 and result["requests"] == 24, result


def test_two_users_on_the_same_slice_and_label_never_share_state(server):
    """A's answers are the same whether or not B clicks the same image, slice and label between them."""
    url = server["url"]
    z = 72
    a_clicks = [([[88, 108, z]], []), ([[88, 108, z], [84, 112, z]], []), ([[88, 108, z], [84, 112, z]], [[70, 100, z]])]
    b_clicks = [([[60, 90, z]], []), ([[60, 90, z]], [[88, 108, z]]), ([[60, 90, z], [95, 100, z]], [[88, 108, z]])]

    def click(client_id, fg, bg, first):
        params = {**load.OHIF_PARAMS, "foreground": fg, "background": bg, "label": "Thalamus_L",
                  "client_id": client_id, "reset_state": first}
        r = requests.post(f"{url}/infer/pemed", params={"image": "ch2bet", "output": "image"},
                          files={"params": (None, json.dumps(params))}, timeout=120)
        assert r.status_code == 200, r.text
        return load.read_nrrd(r.content)[:, :, z]

    alone = [click("a", fg, bg, i == 0) for i, (fg, bg) in enumerate(a_clicks)]
    together = []
    for i, ((fg, bg), (fg_b, bg_b)) in enumerate(zip(a_clicks, b_clicks)):
        together.append(click("a", fg, bg, i == 0))
        click("b", fg_b, bg_b, i == 0)
    assert any(m.any() for m in alone)
    for mine, theirs in zip(alone, together):
        np.testing.assert_array_equal(mine, theirs)
