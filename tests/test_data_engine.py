"""The training-data engine on the real mricron-data maps: reproducible, targets of every size, never
empty or cut off, image and target aligned, contrasts that change, held-out structures never targets."""

import os

import numpy as np
import pytest

from conftest import MRICRON, ROOT

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")),
                                reason="mricron-data not installed")


@pytest.fixture(scope="module")
def engine():
    from lib.data.atlases import load_maps
    from lib.data.engine import DataEngine

    return DataEngine(load_maps(MRICRON, os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")))


@pytest.fixture(scope="module")
def draws(engine):
    return [engine.draw(seed) for seed in range(90)]


def test_same_seed_same_sample(engine):
    a, b, c = engine.draw(7), engine.draw(7), engine.draw(8)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    assert a["image"].shape != c["image"].shape or not np.array_equal(a["image"], c["image"])


def test_targets_are_never_empty_nor_cut_off(engine, draws):
    from lib.data.synth import touches_border

    assert {d["kind"] for d in draws} == set(engine.kind_weights)
    for d in draws:
        assert d["label"].sum() >= engine.min_area, d["kind"]
        assert d["image"].shape == d["label"].shape and np.isfinite(d["image"]).all()
        if d["kind"] != "head":  # only the head may reach the edge of its slice (the neck)
            assert not touches_border(d["label"] > 0), (d["kind"], d["source"])


def test_target_sizes_span_small_structures_to_the_whole_brain(draws):
    share = np.array([d["label"].sum() / d["label"].size for d in draws])
    assert share.min() < 0.005 and share.max() > 0.25
    assert (share < 0.01).sum() >= 10 and (share > 0.1).sum() >= 10


def test_image_and_target_stay_aligned_under_the_warp():
    from lib.data.synth import random_warp, warp
    from lib.evaluation import dice

    rng = np.random.default_rng(0)
    target = np.zeros((120, 150), np.uint8)
    target[30:70, 40:100] = 1
    target[80:95, 20:35] = 1
    for _ in range(10):
        coords = random_warp(rng, target.shape)
        moved_image = warp(target.astype(np.float32), coords, order=1) > 0.5
        moved_target = warp(target, coords, order=0) > 0
        assert dice(moved_image, moved_target) > 0.97


def test_lesions_are_visible_where_their_target_is(engine):
    from scipy import ndimage

    for seed in range(5):
        d = engine.draw(100 + seed, kind="lesion")
        lesion = d["label"] > 0
        inner = ndimage.binary_erosion(lesion, iterations=2) if lesion.sum() > 80 else lesion
        ring = ndimage.binary_dilation(lesion, iterations=6) & ~ndimage.binary_dilation(lesion, iterations=2)
        assert abs(np.median(d["image"][inner]) - np.median(d["image"][ring])) > 0.05, seed


def test_the_intensity_of_a_label_changes_between_draws(engine):
    from lib.data.atlases import GM, WM
    from lib.data.synth import gaussian_mixture_image

    labels = engine.layers(2, 90).synth_labels
    contrasts = []
    for seed in range(8):
        image = gaussian_mixture_image(np.random.default_rng(seed), labels, skull_strip=False)
        contrasts.append(image[labels == WM].mean() - image[labels == GM].mean())
    assert np.std(contrasts) > 0.1 and min(contrasts) < 0 < max(contrasts)  # T1-like and T2-like both appear


def test_held_out_structures_are_never_targets_nor_named_parts(engine):
    from dataclasses import replace

    from lib.configs.labels import HELD_OUT_VALUES

    held_out = set(HELD_OUT_VALUES)
    for lobe in engine.targets.lobes.values():
        assert not held_out & set(lobe["both"])
    rng = np.random.default_rng(0)
    for _ in range(60):
        layers = engine.layers(int(rng.integers(3)), int(rng.integers(50, 130)))
        aal_only = replace(layers, atlases={"aal": layers.atlases["aal"]})
        for kind in ("parcel", "union"):
            mask = engine.targets.kinds[kind](aal_only, rng)
            if mask is not None:
                assert not held_out & set(np.unique(layers.atlases["aal"][mask]).tolist()), kind


def test_connected_components_of_multi_part_targets(engine):
    from lib.data.targets import TargetKinds, components

    always = TargetKinds(engine.held_out, engine.min_area, component_prob=1.0)
    rng = np.random.default_rng(0)
    layers = engine.layers(2, 90)
    for _ in range(5):
        whole = always.kinds["tissue"](layers, np.random.default_rng(1))
        part = always.draw("tissue", layers, np.random.default_rng(1))
        assert len(components(part, 1)) == 1 and (part <= whole).all() and part.sum() < whole.sum()
        region = always.draw("region", layers, rng)  # empty where the lobe is not on this slice
        assert len(components(region, 1)) == (1 if region.sum() >= engine.min_area else 0)


def test_kind_weights_choose_the_target_mix(engine):
    from lib.data.engine import DEFAULT_KIND_WEIGHTS, DataEngine

    only_lesions = DataEngine(engine.maps, kind_weights={**{k: 0.0 for k in DEFAULT_KIND_WEIGHTS}, "lesion": 1.0})
    assert {only_lesions.draw(seed)["kind"] for seed in range(6)} == {"lesion"}
    with pytest.raises(ValueError, match="unknown target kinds"):
        DataEngine(engine.maps, kind_weights={"liver": 1.0})
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=">= 0"):
            DataEngine(engine.maps, kind_weights={**DEFAULT_KIND_WEIGHTS, "lesion": bad})
    with pytest.raises(ValueError, match="above 0"):
        DataEngine(engine.maps, kind_weights={k: 0.0 for k in DEFAULT_KIND_WEIGHTS})
