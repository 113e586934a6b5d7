"""The guarded datastore (lib/datastore.py) without a server: nothing replaced by a bad upload, every
replaced label kept and restorable, names never paths."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

from conftest import write_nifti
from lib.datastore import PEMEDLocalDatastore
from lib.errors import InvalidRequest

SHAPE = (32, 24, 6)


@pytest.fixture
def store(tmp_path):
    label = np.zeros(SHAPE, np.int16)
    label[8:20, 6:16, 1:5] = 77
    write_nifti(str(tmp_path / "studies" / "vol.nii.gz"), 10.0 + label)
    write_nifti(str(tmp_path / "studies" / "labels" / "final" / "vol.nii.gz"), label, np.int16)
    s = PEMEDLocalDatastore(str(tmp_path / "studies"), extensions=("*.nii.gz", "*.nii"))
    s.set_label_values([77, 78])
    return s


def upload(tmp_path, name, array, dtype=np.int16):
    path = str(tmp_path / "uploads" / name)
    write_nifti(path, array, dtype)
    return path


def stored(store, image="vol", tag="final"):
    return np.asanyarray(nib.load(store.get_label_uri(image, tag)).dataobj)


def test_a_bad_upload_replaces_nothing(store, tmp_path):
    before = stored(store).copy()
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"7 bytes")
    cases = [(str(garbage), 422, "cannot read"),
             (upload(tmp_path, "shape.nii.gz", np.zeros((32, 24, 5))), 422, "does not match"),
             (upload(tmp_path, "values.nii.gz", np.full(SHAPE, 5)), 422, "label set"),
             (upload(tmp_path, "nan.nii.gz", np.full(SHAPE, np.nan), np.float32), 422, "NaN"),
             (upload(tmp_path, "half.nii.gz", np.full(SHAPE, 0.5), np.float32), 422, "non-integer")]
    for path, status, words in cases:
        with pytest.raises(InvalidRequest) as e:
            store.save_label("vol", path, "final", {})
        assert e.value.status == status and words in str(e.value), str(e.value)
    np.testing.assert_array_equal(stored(store), before)
    assert store.label_versions("vol") == []


def test_names_are_never_paths(store, tmp_path):
    good = upload(tmp_path, "ok.nii.gz", np.zeros(SHAPE))
    for image, tag in [("vol", "../../evil"), ("vol", "/tmp/evil"), ("../vol", "final"), ("vol", "a/b"), ("vol", "..")]:
        with pytest.raises(InvalidRequest) as e:
            store.save_label(image, good, tag, {})
        assert e.value.status == 400
    with pytest.raises(InvalidRequest) as e:
        store.save_label("nosuch", good, "final", {})
    assert e.value.status == 404
    assert not [f for _, _, files in os.walk(tmp_path.parent) for f in files if "evil" in f]


def test_replaced_labels_are_kept_and_restored(store, tmp_path):
    original = stored(store).copy()
    first = np.where(original > 0, 78, 0)
    store.save_label("vol", upload(tmp_path, "a.nii.gz", first), "final", {"by": "a"})
    store.save_label("vol", upload(tmp_path, "b.nii.gz", np.where(original > 0, 255, 0)), "final", {})
    np.testing.assert_array_equal(stored(store), np.where(original > 0, 255, 0))
    versions = store.label_versions("vol")
    assert len(versions) == 2  # the original and the first save
    store.restore_label("vol", versions[0])
    np.testing.assert_array_equal(stored(store), original)
    assert len(store.label_versions("vol")) == 3  # what the restore replaced is kept too
    store.remove_label("vol", "final")
    assert store.get_label_by_image_id("vol", "final") == "" and len(store.label_versions("vol")) == 4
    with pytest.raises(InvalidRequest):
        store.restore_label("vol", "../../etc/passwd")
    # the index is whole, and lists no tag for the versions folder
    index = json.load(open(os.path.join(store._datastore_path, "datastore_v2.json")))
    assert set(index["objects"]) == {"vol"}


def test_new_images_are_checked_and_never_replace_one(store, tmp_path):
    with pytest.raises(InvalidRequest) as e:
        store.add_image("vol", upload(tmp_path, "v.nii.gz", np.ones(SHAPE), np.float32), {})
    assert e.value.status == 409
    with pytest.raises(InvalidRequest) as e:
        store.add_image("blank", upload(tmp_path, "n.nii.gz", np.full(SHAPE, np.nan), np.float32), {})
    assert e.value.status == 422
    assert store.add_image("second", upload(tmp_path, "s.nii.gz", np.ones(SHAPE), np.float32), {}) == "second"
    assert sorted(store.list_images()) == ["second", "vol"]
