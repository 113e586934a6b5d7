"""Faults (issue 10, part 3) against a running server on 127.0.0.1: ``kill -9`` of a training run in
the middle of an epoch, ``kill -9`` of the server while labels are being saved, and a model folder
that fills up during training. After each: the published model intact and serving, every saved label
whole, and the next training run or the restarted server carries on."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import nibabel as nib
import numpy as np
import psutil
import pytest
import requests

from conftest import served_app, write_nifti
from lib.checkpoint import load_checkpoint
from lib.local_server import LocalServer

SHAPE = (48, 40, 12)
CONF = {"pemed_auto_train": "false", "pemed_replay_maps": "none", "pemed_seg_poll_s": "0",
        "pemed_publish_gate": "off"}
TRAIN = {"max_epochs": 1, "train_batch_size": 2, "samples_per_epoch": 4, "val_batch_size": 2}


def make_studies(root, n=4, shape=SHAPE):
    rng = np.random.default_rng(0)
    for i in range(n):
        label = np.zeros(shape, np.int16)
        label[8 + i:30, 10:28 - i, 2:10] = 77
        write_nifti(str(root / f"vol_{i}.nii.gz"), 50 + 100 * (label > 0) + 10 * rng.random(shape))
        write_nifti(str(root / "labels" / "final" / f"vol_{i}.nii.gz"), label, np.int16)
    return root


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def label_digests(studies):
    folder = studies / "labels" / "final"
    return {f: digest(folder / f) for f in sorted(os.listdir(folder)) if f.endswith(".nii.gz")}


def click_answers(url, image="vol_0"):
    r = requests.post(f"{url}/infer/pemed", params={"image": image, "output": "json"},
                      files={"params": (None, json.dumps({"foreground": [[20, 20, 5]], "reset_state": True}))},
                      timeout=120)
    return r.status_code == 200 and r.json()["clicks"] == 1


def train_status(url):
    return requests.get(f"{url}/train/", timeout=30).json()


def run_ended(url):
    return train_status(url).get("status") in ("DONE", "ERROR", "STOPPED")  # not SUBMITTED, not RUNNING


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def training_process(server_pid):
    for child in psutil.Process(server_pid).children(recursive=True):
        cmd = child.cmdline()
        if "monailabel.interfaces.utils.app" in cmd and "train" in cmd:
            return child
    return None


def test_kill_9_of_a_training_run_mid_epoch(tmp_path, tiny_checkpoint):
    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    studies = make_studies(tmp_path / "studies")
    served = os.path.join(app, "model", "pemed.pt")
    before_model, before_labels = digest(served), label_digests(studies)
    with LocalServer(app, str(studies), str(tmp_path / "server.log"), conf=CONF) as srv:
        r = requests.post(f"{srv.url}/train/pemed", json={**TRAIN, "max_epochs": 200}, timeout=30)
        assert r.status_code == 200, r.text
        # mid-epoch: the run has logged an iteration of its first epoch and has not finished
        wait_until(lambda: any("Iter:" in line for line in train_status(srv.url).get("details", [])), 240,
                   "the first training iterations")
        proc = training_process(srv.proc.pid)
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        wait_until(lambda: run_ended(srv.url), 60, "the run to end")
        assert train_status(srv.url)["status"] == "ERROR"
        assert click_answers(srv.url)
        assert digest(served) == before_model and label_digests(studies) == before_labels
        finetuned = os.path.join(app, "model", "pemed_finetuned.pt")
        assert not os.path.exists(finetuned) or load_checkpoint(finetuned)

        # the next run works and publishes
        r = requests.post(f"{srv.url}/train/pemed", json=TRAIN, timeout=30)
        assert r.status_code == 200, r.text
        wait_until(lambda: run_ended(srv.url), 300, "the next run")
        assert train_status(srv.url)["status"] == "DONE", train_status(srv.url)
        load_checkpoint(finetuned)
        assert click_answers(srv.url)


def saved_labels_are_whole(studies):
    """Every final label the index lists reads whole with the image's shape; the index parses."""
    with open(studies / "datastore_v2.json") as f:
        index = json.load(f)
    checked = 0
    for image, obj in index["objects"].items():
        final = obj["labels"].get("final")
        if final:
            label = np.asanyarray(nib.load(str(studies / "labels" / "final" / f"{image}{final['ext']}")).dataobj)
            assert label.shape == SHAPE, (image, label.shape)
            checked += 1
    return checked


def test_kill_9_of_the_server_while_labels_are_saved(tmp_path, tiny_checkpoint):
    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    studies = make_studies(tmp_path / "studies")
    rng = random.Random(0)
    uploads = []
    for i in range(3):
        path = tmp_path / f"upload_{i}.nii.gz"
        write_nifti(str(path), np.where(np.random.default_rng(i).random(SHAPE) > 0.5, 77, 0), np.int16)
        uploads.append(path.read_bytes())
    saves = {"ok": 0, "failed": 0}
    for round_ in range(3):
        with LocalServer(app, str(studies), str(tmp_path / f"server_{round_}.log"), conf=CONF) as srv:
            stop = threading.Event()

            def keep_saving():
                i = 0
                while not stop.is_set():
                    try:
                        r = requests.put(f"{srv.url}/datastore/label", params={"image": f"vol_{i % 4}"},
                                         files={"label": ("l.nii.gz", uploads[i % 3])}, timeout=30)
                        saves["ok" if r.status_code == 200 else "failed"] += 1
                    except requests.ConnectionError:
                        saves["failed"] += 1
                    i += 1

            worker = threading.Thread(target=keep_saving)
            worker.start()
            time.sleep(rng.uniform(1.0, 3.0))
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(timeout=30)
            stop.set()
            worker.join(timeout=60)
        assert saved_labels_are_whole(studies) == 4
    assert saves["ok"] >= 3, saves
    # restarted, the server serves and saves as before
    with LocalServer(app, str(studies), str(tmp_path / "server_after.log"), conf=CONF) as srv:
        assert click_answers(srv.url)
        r = requests.put(f"{srv.url}/datastore/label", params={"image": "vol_1"},
                         files={"label": ("l.nii.gz", uploads[0])}, timeout=30)
        assert r.status_code == 200 and (studies / "labels" / "final" / "vol_1.nii.gz").read_bytes() == uploads[0]


def can_mount_privately():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_mount_privately(), reason="needs root and unshare -m to give the model folder a small disk")
def test_a_full_model_folder_during_training(tmp_path, tiny_checkpoint):
    """The model folder is a 12 MB tmpfs in the server's own mount namespace: the served checkpoint
    fits, the fine-tuned one (and the run's own checkpoints) do not: ENOSPC, a real full disk."""
    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    studies = make_studies(tmp_path / "studies")
    model_dir = os.path.join(app, "model")
    keep = tmp_path / "model_files"
    shutil.copytree(model_dir, keep)
    script = (f"mount -t tmpfs -o size=12m tmpfs {model_dir} && cp {keep}/pemed.pt {model_dir}/ "
              f'&& exec "$@"')
    wrap = ["unshare", "-m", "sh", "-c", script, "sh"]
    before_labels = label_digests(studies)
    with LocalServer(app, str(studies), str(tmp_path / "server.log"), conf=CONF, wrap=wrap) as srv:
        assert click_answers(srv.url)
        r = requests.post(f"{srv.url}/train/pemed", json=TRAIN, timeout=30)
        assert r.status_code == 200, r.text
        wait_until(lambda: run_ended(srv.url), 300, "the run to end")
        status = train_status(srv.url)
        details = "\n".join(status.get("details", []))
        assert status["status"] == "ERROR", status
        assert "training failed, the served model stays: the model folder" in status["details"][-1], details[-2000:]
        assert "is full" in status["details"][-1]
        assert click_answers(srv.url)  # the last good model still serving
    assert label_digests(studies) == before_labels
