"""The uncertainty strategy: seeds placed without labels, the entropy score, and the strategy served
by a running server after its scoring method has run."""

import json
import os
import time

import numpy as np
import requests

from conftest import phantom, served_app, write_nifti
from lib.activelearning.uncertainty import mask_entropy, seed_points
from lib.local_server import LocalServer


def test_seeds_spread_over_the_foreground():
    image = np.zeros((80, 100), np.float32)
    image[20:60, 10:90] = 1.0
    image += np.random.default_rng(0).random(image.shape).astype(np.float32) * 0.1
    seeds = seed_points(image, 5, seed=3)
    assert len(seeds) == 5 and len(set(seeds)) == 5
    assert all(20 <= r < 60 and 10 <= c < 90 for r, c in seeds)
    spread = min(np.hypot(a[0] - b[0], a[1] - b[1]) for i, a in enumerate(seeds) for b in seeds[i + 1:])
    assert spread > 10  # farthest-point sampling, not a clump
    assert seed_points(np.zeros((10, 10), np.float32), 3) == []


def test_a_smeared_mask_is_more_uncertain_than_a_sharp_one():
    sharp = np.zeros((64, 64), np.float32)
    sharp[20:40, 20:40] = 0.99
    yy, xx = np.mgrid[:64, :64]
    smeared = 1 / (1 + np.exp((np.hypot(yy - 30, xx - 30) - 11) / 4.0))
    assert mask_entropy(smeared) > 3 * mask_entropy(sharp + 0.005)


def test_scoring_then_the_uncertainty_strategy(tmp_path, tiny_checkpoint):
    studies = tmp_path / "studies"
    for i in range(3):
        image, _ = phantom(seed=i)
        write_nifti(str(studies / f"img{i}.nii.gz"), image)
    app = served_app(str(tmp_path / "app"), tiny_checkpoint)
    with LocalServer(app, str(studies), str(tmp_path / "server.log")) as server:
        info = requests.get(f"{server.url}/info/", timeout=10).json()
        assert "uncertainty" in info["strategies"] and "pemed_uncertainty" in info["scoring"]
        # MONAI Label scores at start-up (in a background process); wait for that run to end
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = requests.get(f"{server.url}/scoring/", timeout=10).json()
            if status.get("status") not in ("RUNNING", "QUEUED"):
                break
            time.sleep(2)
        assert status.get("status") == "DONE", status
        store = requests.get(f"{server.url}/datastore/?output=all", timeout=10).json()["objects"]
        scores = {k: v["image"]["info"].get("pemed_uncertainty") for k, v in store.items()}
        assert all(isinstance(s, float) and s > 0 for s in scores.values()), scores
        ranked = sorted(scores, key=scores.get, reverse=True)
        served = [requests.post(f"{server.url}/activelearning/uncertainty", json={}, timeout=60).json()["id"]
                  for _ in range(3)]
        assert served == ranked, json.dumps([served, scores])  # most uncertain first, then the next ones


def test_scoring_never_fetches_a_dicomweb_series(tmp_path):
    from monailabel.datastore.dicom import DICOMWebDatastore
    from monailabel.datastore.local import LocalDatastore

    from lib.activelearning.uncertainty import local_image

    store = DICOMWebDatastore.__new__(DICOMWebDatastore)  # no server: only its cache is looked at
    LocalDatastore.__init__(store, str(tmp_path))
    assert local_image(store, "1.2.3") is None  # not fetched yet: left alone
    image, _ = phantom()
    write_nifti(str(tmp_path / "1.2.3.nii.gz"), image)
    assert os.path.samefile(local_image(store, "1.2.3"), tmp_path / "1.2.3.nii.gz")
