"""The dataset converters on tiny fixtures laid out like Synapse/BTCV, Kvasir-SEG, TN3K and QaTa-COV19."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

CONVERT = os.path.join(ROOT, "datasets", "convert.py")


def run(*args):
    return subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True)


def photo_pair(image_path, mask_path, seed):
    rng = np.random.default_rng(seed)
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:25, 15:35] = 255
    os.makedirs(os.path.dirname(image_path), exist_ok=True)
    os.makedirs(os.path.dirname(mask_path), exist_ok=True)
    Image.fromarray(img).save(image_path)
    Image.fromarray(mask).save(mask_path)


def check_2d_studies(out, n):
    images = sorted(f for f in os.listdir(out) if f.endswith(".png"))
    assert len(images) == n
    for f in images:
        mask = np.asarray(Image.open(os.path.join(out, "labels", "final", f)))
        assert set(np.unique(mask)) == {0, 1} and mask[15, 20] == 1


def test_synapse(tmp_path):
    src, out = tmp_path / "RawData", tmp_path / "out"
    for case in ("0001", "0002"):
        lab = np.zeros((20, 20, 6), np.int16)
        lab[5:10, 5:10, 2:4] = 6
        for sub, name, data in (("img", f"img{case}", np.random.rand(20, 20, 6) * 400 - 200), ("label", f"label{case}", lab)):
            os.makedirs(src / sub, exist_ok=True)
            nib.save(nib.Nifti1Image(data.astype(np.float32 if sub == "img" else np.int16), np.eye(4)),
                     str(src / sub / f"{name}.nii.gz"))
    r = run("synapse", str(src), str(out), "--slices")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out / "labels" / "final")) == ["case0001.nii.gz", "case0002.nii.gz"]
    assert len([f for f in os.listdir(out / "slices") if f.endswith(".nii.gz")]) == 4  # 2 labelled slices each
    assert json.load(open(out / "labels.json"))["liver"] == 6


@pytest.mark.parametrize("dataset,layout", [
    ("kvasir", ("images/{s}.jpg", "masks/{s}.jpg")),
    ("tn3k", ("trainval-image/{s}.jpg", "trainval-mask/{s}.jpg")),
    ("qata", ("Images/{s}.png", "Ground-truths/mask_{s}.png")),
])
def test_2d_pairs(tmp_path, dataset, layout):
    src, out = tmp_path / "src", tmp_path / "out"
    for i, stem in enumerate(("a1", "b2", "c3")):
        photo_pair(str(src / layout[0].format(s=stem)), str(src / layout[1].format(s=stem)), i)
    r = run(dataset, str(src), str(out))
    assert r.returncode == 0, r.stderr
    check_2d_studies(str(out), 3)


def test_empty_source_is_an_error(tmp_path):
    r = run("kvasir", str(tmp_path), str(tmp_path / "o"))
    assert r.returncode == 2 and "no image/label pairs" in r.stderr


def test_converted_photos_evaluate_end_to_end(tmp_path):
    import evaluate

    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(2):
        photo_pair(str(src / "images" / f"k{i}.jpg"), str(src / "masks" / f"k{i}.jpg"), i)
    assert run("kvasir", str(src), str(out)).returncode == 0
    assert evaluate.main(["--studies", str(out), "--model", "grabcut", "--out", str(tmp_path / "g.json"),
                          "--labels", "all", "--max-clicks", "2"]) == 0
    assert json.load(open(tmp_path / "g.json"))["n_samples"] == 2
