import numpy as np
import torch

from lib.transforms.transforms import (MatchChannelsd, RandCropAroundTargetd, RandStructureSliced, SelectStructured,
                                      normalize_intensity)


def test_select_structure_never_picks_excluded_values():
    label = np.zeros((1, 40, 40), np.int64)
    label[0, 5:15, 5:15] = 7
    label[0, 15:25, 5:15] = 8  # touches 7
    label[0, 25:35, 25:35] = 9
    t = SelectStructured(keys="label", exclude=[8], union_prob=1.0, min_area=10)
    seen = set()
    for seed in range(30):
        t.set_random_state(seed)
        out = t({"label": torch.as_tensor(label)})["label"][0].numpy()
        assert out[20, 10] == 0  # 8 is never a target nor part of a union
        seen.add((bool(out[10, 10]), bool(out[30, 30])))
    assert seen == {(True, False), (False, True)}


def test_unions_join_touching_neighbours():
    label = np.zeros((1, 40, 40), np.int64)
    label[0, 5:15, 5:15] = 1
    label[0, 15:25, 5:15] = 2
    t = SelectStructured(keys="label", union_prob=1.0, min_area=10)
    t.set_random_state(0)
    out = t({"label": torch.as_tensor(label)})["label"][0].numpy()
    assert out[10, 10] == 1 and out[20, 10] == 1


def test_structure_slice_from_a_volume():
    label = np.zeros((1, 20, 30, 40), np.int64)
    label[0, 5:10, 5:10, 30:35] = 3
    label[0, 12:18, 12:18, 12:18] = 4
    image = np.random.rand(1, 20, 30, 40).astype(np.float32)
    t = RandStructureSliced(keys=("image", "label"), exclude=[4], min_area=10)
    for seed in range(6):
        t.set_random_state(seed)
        out = t({"image": torch.as_tensor(image), "label": torch.as_tensor(label)})
        assert out["image"].ndim == 3 and out["label"].shape == out["image"].shape
        assert (out["label"] == 3).sum() >= 10


def test_channels_and_intensity():
    rgb = torch.rand(3, 8, 8)
    assert MatchChannelsd("image", 1)({"image": rgb})["image"].shape == (1, 8, 8)
    assert MatchChannelsd("image", 3)({"image": rgb[:1]})["image"].shape == (3, 8, 8)
    mr = normalize_intensity(np.linspace(0, 1000, 100).reshape(10, 10), "MR")
    assert mr.min() == 0 and mr.max() == 1
    ct = normalize_intensity(np.array([[-1000.0, 40.0, 1000.0]]), "CT")
    assert np.allclose(ct, [[0.0, 0.5, 1.0]])


def test_crop_around_target_keeps_the_whole_target_and_zooms_in():
    label = np.zeros((1, 200, 160), np.float32)
    label[0, 120:140, 30:50] = 1
    image = np.random.rand(1, 200, 160).astype(np.float32)
    t = RandCropAroundTargetd(keys=("image", "label"), prob=1.0, expand=(1.5, 2.0), min_fraction=(0.2, 0.3), shift=0.1)
    for seed in range(20):
        t.set_random_state(seed)
        out = t({"image": torch.as_tensor(image), "label": torch.as_tensor(label)})
        h, w = out["label"].shape[1:]
        assert out["image"].shape == out["label"].shape
        assert out["label"].sum() == label.sum()  # the target is never cut
        assert 30 <= h <= 60 and 30 <= w <= 60  # 1.5-2x the 20 px box, at least 0.2 x 200
    never = RandCropAroundTargetd(keys=("image", "label"), prob=0.0)
    assert never({"image": torch.as_tensor(image), "label": torch.as_tensor(label)})["label"].shape == label.shape


def test_modality_is_decided_per_image():
    from lib.transforms.transforms import detect_modality, normalize_intensity

    rng = np.random.default_rng(0)
    ct = rng.uniform(-1000, 1500, (40, 50)).astype(np.float32)
    mr = rng.uniform(0, 900, (40, 50)).astype(np.float32)
    assert detect_modality(ct) == "CT" and detect_modality(mr) == "MR"
    assert detect_modality(mr, {"0008|0060": "CT "}) == "CT"  # the DICOM tag wins (ITK's key)
    assert detect_modality(ct, {"00080060": {"vr": "CS", "Value": ["MR"]}}) == "MR"  # pydicom's JSON model
    assert detect_modality(mr, {"Modality": "US"}) == "MR"  # everything not CT gets percentiles
    # auto on a CT image applies the HU window: -160 HU -> 0, 240 HU -> 1
    window = normalize_intensity(np.array([[-160.0, 40.0, 240.0, -1000.0]]), "auto")
    assert np.allclose(window, [[0.0, 0.5, 1.0, 0.0]])
    assert np.allclose(normalize_intensity(np.array([[-160.0, 40.0, 240.0, -1000.0]]), "CT"), window)
