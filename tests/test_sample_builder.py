import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import MRICRON, ROOT

BUILDER = os.path.join(ROOT, "datasets", "build_sample.py")


FLIPPED_X = np.diag([-1.0, 1.0, 1.0, 1.0])
FLIPPED_X[0, 3] = 29.0  # voxel i of a flipped file sits at world x = 29 - i: voxel 29 - i of the grid


def fake_templates(folder):
    """Files laid out like mricron-data's templates, on a small grid; the other atlases are stored
    with x flipped in their affine, as several MNI-space files of mricron-data are."""
    from lib.data.atlases import ATLAS_FILES

    shape = (30, 36, 30)
    label = np.zeros(shape, np.int16)
    label[5:15, 5:30, 5:25] = 37
    label[15:25, 5:30, 5:25] = 71
    image = (label * 2 + 10).astype(np.uint8)
    for name, data in (("ch2", image), ("ch2bet", image), ("aal", label)):
        nib.save(nib.Nifti1Image(data, np.eye(4)), os.path.join(folder, f"{name}.nii.gz"))
    for name, file in ATLAS_FILES.items():
        if name != "aal":
            nib.save(nib.Nifti1Image(label[::-1].astype(np.uint8), FLIPPED_X), os.path.join(folder, file))
    with open(os.path.join(folder, "aal.nii.txt"), "w") as f:
        f.write("37 Hippocampus_L 4101\n71 Caudate_L 7001\n")


def test_builder_writes_studies_folders(tmp_path):
    src, out = tmp_path / "templates", tmp_path / "sample"
    src.mkdir()
    fake_templates(str(src))
    subprocess.run([sys.executable, BUILDER, "--src", str(src), "--out", str(out)], check=True)
    assert sorted(os.listdir(out / "volumes" / "labels" / "final")) == ["ch2.nii.gz", "ch2bet.nii.gz"]
    train = sorted(f for f in os.listdir(out / "slices" / "train") if f.endswith(".nii.gz"))
    assert train and all(os.path.exists(out / "slices" / "train" / "labels" / "final" / f) for f in train)
    assert {f.split("_")[1] for f in train} == {"sag", "cor", "ax"}
    one = nib.load(str(out / "slices" / "train" / train[0]))
    assert one.ndim == 2
    assert json.load(open(out / "labels.json")) == {"Hippocampus_L": 37, "Caudate_L": 71}
    from lib.data.atlases import ColinMaps

    maps = ColinMaps.load(str(out / "colin27_maps.npz"))
    label = np.asanyarray(nib.load(str(src / "aal.nii.gz")).dataobj)
    for name, atlas in maps.atlases.items():  # flipped files land on the grid by world coordinates
        assert np.array_equal(atlas, label), name


def test_builder_reports_missing_files(tmp_path):
    r = subprocess.run([sys.executable, BUILDER, "--src", str(tmp_path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "mricron-data" in r.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="mricron-data not installed")
def test_held_out_structures_exist_in_the_real_atlas():
    from lib.configs.labels import AAL_LABELS, HELD_OUT_VALUES

    values = set(np.unique(np.asanyarray(nib.load(os.path.join(MRICRON, "aal.nii.gz")).dataobj)).tolist())
    assert len(AAL_LABELS) == 116 and set(HELD_OUT_VALUES) <= values
