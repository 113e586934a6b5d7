import json
import os

import pytest

import evaluate

KEYS = {"noc85", "noc90", "noc85_iou", "noc90_iou", "dice_at", "nof90", "jitter", "n_samples", "per_structure",
        "per_sample", "latency_ms"}


@pytest.mark.parametrize("model", ["grabcut", "checkpoint"])
def test_evaluate_writes_the_protocol_figures(studies_2d, tiny_checkpoint, tmp_path, model):
    out = str(tmp_path / "eval.json")
    rc = evaluate.main(["--studies", studies_2d, "--model", tiny_checkpoint if model == "checkpoint" else "grabcut",
                        "--out", out, "--labels", "all", "--max-clicks", "5", "--max-samples", "4", "--size", "128",
                        "--device", "cpu"])
    assert rc == 0
    summary = json.load(open(out))
    assert KEYS <= set(summary) and summary["n_samples"] == 4
    assert set(summary["dice_at"]) == {"1", "3", "5"}
    assert 1 <= summary["noc90"] <= 5 and 0 <= summary["jitter"] <= 1
    assert sum(v["n_samples"] for v in summary["per_structure"].values()) == 4
    assert len(summary["per_sample"]) == 4
    assert sum(x["noc90"] for x in summary["per_sample"]) / 4 == pytest.approx(summary["noc90"])
    assert os.path.getsize(str(tmp_path / "eval.png")) > 1000


def test_grabcut_segments_a_bright_phantom(studies_2d, tmp_path):
    out = str(tmp_path / "g.json")
    assert evaluate.main(["--studies", studies_2d, "--model", "grabcut", "--out", out, "--labels", "2",
                          "--max-clicks", "3", "--modality", "CT"]) == 0
    assert json.load(open(out))["dice_at"]["3"] > 0.7


def test_evaluate_volumes_samples_slices_per_structure(tmp_path, tiny_checkpoint):
    import numpy as np
    from conftest import write_nifti

    label = np.zeros((24, 20, 16), np.int16)
    label[4:14, 4:14, 3:12] = 37
    write_nifti(str(tmp_path / "s" / "v.nii.gz"), label * 3.0 + np.random.rand(*label.shape))
    write_nifti(str(tmp_path / "s" / "labels" / "final" / "v.nii.gz"), label, np.int16)
    out = str(tmp_path / "v.json")
    assert evaluate.main(["--studies", str(tmp_path / "s"), "--model", tiny_checkpoint, "--out", out,
                          "--max-clicks", "2", "--per-structure", "2", "--size", "64", "--device", "cpu"]) == 0
    summary = json.load(open(out))
    assert summary["n_samples"] == 6 and list(summary["per_structure"]) == ["Hippocampus_L"]


def test_evaluate_rejects_an_empty_folder(tmp_path):
    assert evaluate.main(["--studies", str(tmp_path), "--model", "grabcut", "--out", str(tmp_path / "x.json")]) == 2


def test_eval_set_groups_and_the_random_walker(studies_2d, tmp_path):
    """--eval-set runs every group folder and writes one summary per group; the random walker, seeded
    by the clicks and the image border, segments a bright phantom."""
    root = tmp_path / "eval"
    root.mkdir()
    os.symlink(studies_2d, root / "lesions")
    os.symlink(studies_2d, root / "large")
    out = str(tmp_path / "rw.json")
    assert evaluate.main(["--eval-set", str(root), "--groups", "large,lesions", "--model", "random_walker",
                          "--out", out, "--max-clicks", "3"]) == 0
    groups = json.load(open(out))["groups"]
    assert set(groups) == {"large", "lesions"} and groups["large"]["n_samples"] == 18
    assert groups["large"]["dice_at"]["3"] > 0.8
    assert evaluate.main(["--eval-set", str(root), "--groups", "tissue", "--model", "grabcut", "--out", out]) == 2
