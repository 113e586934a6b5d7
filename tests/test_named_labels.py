"""Names the automatic methods learn from saved labels: what a saved label names, the registry the
server and its training runs share, the heads grown by a name, and training that learns only what a
label says."""

import json

import numpy as np
import pytest
import torch

from lib.configs.labels import AAL_LABELS, STRUCTURES
from lib.named_labels import LEARNT_VALUE_BASE, NameRegistry, atlas_value, class_map, segment_names


def test_a_saved_labels_segments_are_named_as_each_client_sends_them():
    slicer = {"label_info": [{"name": "Lesion", "idx": 3}, {"name": "Vessel", "idx": 5}]}
    assert segment_names(slicer, [0, 3, 5]) == {3: "Lesion", 5: "Vessel"}
    ohif = {"label_info": [{"name": "Liver"}, {"name": "Spleen"}]}  # one name per value, in the values' order
    assert segment_names(ohif, [0, 2, 1]) == {1: "Liver", 2: "Spleen"}
    plain = segment_names({}, [0, AAL_LABELS["Amygdala_L"]])  # no label_info: the app's label map
    assert plain == {AAL_LABELS["Amygdala_L"]: "Amygdala_L"}
    odd = {"label_info": [{"name": ""}, "x", {"name": 7}, {"name": "Cyst", "idx": 9}]}  # 9 not in the label
    assert segment_names(odd, [0, 1]) == {1: "Precentral_L"}


def test_the_registry_learns_new_names_once_and_every_process_reads_them(tmp_path):
    path = str(tmp_path / "auto_names.json")
    first = NameRegistry(path, ["Caudate_L", "Temporal_Lobe_L"])
    assert first.names() == ["Caudate_L", "Temporal_Lobe_L"]
    assert [atlas_value(v) for v in first.values().values()] == [True, True]
    assert first.learn(["Caudate_L", "Amygdala_L", "Lesion", "Temporal_Mid_L", "Lesion"]) == \
        ["Amygdala_L", "Lesion", "Temporal_Mid_L"]
    values = first.values()
    assert values["Amygdala_L"] == AAL_LABELS["Amygdala_L"]  # an atlas structure: engine draws show it
    assert values["Lesion"] >= LEARNT_VALUE_BASE  # no atlas value
    assert values["Temporal_Mid_L"] >= LEARNT_VALUE_BASE  # a part of a lobe already named: a value of its own
    assert [atlas_value(v) for v in first.values().values()] == [True, True, True, False, False]
    other = NameRegistry(path, ["Caudate_L", "Temporal_Lobe_L"])  # another process (a training run)
    assert other.names() == first.names() and other.values() == values
    assert json.load(open(path))["learnt"]["Lesion"] == values["Lesion"]
    assert first.learn(["Lesion"]) == []


def test_a_label_teaches_the_names_it_holds_and_says_nothing_of_the_others():
    values = {"Caudate_L": AAL_LABELS["Caudate_L"], "Temporal_Lobe_L": STRUCTURES["Temporal_Lobe_L"], "Lesion": 1000}
    label = np.array([[AAL_LABELS["Temporal_Mid_L"], 4, 0, 4]])
    classes, known = class_map(label, {AAL_LABELS["Temporal_Mid_L"]: "Temporal_Mid_L", 4: "Lesion"}, values)
    assert classes.tolist() == [[2, 3, 0, 3]] and known == [False, True, True]


def test_a_grown_network_answers_its_old_names_as_before():
    from lib.networks.curriculum import PromptHeatmapNet

    torch.manual_seed(0)
    net = PromptHeatmapNet(["A", "B"], "edges", size=64, channels=16, width=8).eval()
    grown = net.with_names(["A", "B", "C"]).eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        before, after = net(x), grown(x)
    assert after.shape[1] == 3 * 8 and torch.allclose(after[:, :16], before, atol=1e-5)
    assert net.with_names(["A", "B"]) is net
    with pytest.raises(ValueError):
        net.with_names(["B", "A", "C"])


def test_a_grown_promise_keeps_its_names_and_the_foundation_model_frozen():
    from lib.networks.promise import ProMISe
    from lib.networks.sam import build_sam, spec_of

    torch.manual_seed(0)
    sam = build_sam(spec_of("pemed_sam_tiny"))
    promise = ProMISe(sam, ["A", "B"])
    grown = promise.with_names(["A", "B", "Lesion"])
    for key, value in promise.new_modules().state_dict().items():
        new = grown.new_modules().state_dict()[key]
        assert torch.equal(new[:2], value[:2]) if key.endswith("name_embed.weight") else torch.equal(new, value)
    assert grown.names == ["A", "B", "Lesion"] and not any(p.requires_grad for p in grown.sam.parameters())


def test_the_heatmap_loss_ignores_the_names_a_sample_says_nothing_about():
    from lib.networks.curriculum import HeatmapLoss

    torch.manual_seed(0)
    target = torch.zeros(2, 3, 8, 8)
    target[:, 0, 2:5, 2:5] = 1
    target[0, 2] = -1  # the first sample says nothing of the third name
    for head in ("box", "edges"):
        loss = HeatmapLoss(head)
        pred = torch.randn(2, 3, 8, 8)
        changed = pred.clone()
        changed[0, 2] = 50.0  # whatever the network says there costs nothing
        assert torch.allclose(loss(pred, target), loss(changed, target))
        changed[1, 2] = 50.0  # where the sample does say it is absent, it costs
        assert loss(changed, target) > loss(pred, target)


def test_a_label_drawn_slice_by_slice_is_read_along_its_axis():
    from lib.transforms.transforms import RandStructureSliced, annotated_axis

    label = np.zeros((40, 50, 30), np.int16)
    label[10:30, 15:35, 12] = 5  # one slice drawn, as in OHIF
    assert annotated_axis(label > 0) == 2
    full = np.zeros_like(label)
    full[10:30, 15:35, 5:25] = 1
    assert annotated_axis(full > 0) is None
    t = RandStructureSliced(keys=("image", "label"))
    for seed in range(5):
        t.set_random_state(seed)
        out = t({"image": np.zeros((1,) + label.shape, np.float32), "label": label[None]})
        assert out["label"].shape == (1, 40, 50) and (out["label"] == 5).sum() == 400


def test_a_published_half_checkpoint_loads_as_the_network_it_came_from(tmp_path):
    from lib.automatic import load_network
    from lib.checkpoint import publish_half, save_checkpoint
    from lib.networks.curriculum import PromptHeatmapNet

    torch.manual_seed(0)
    net = PromptHeatmapNet(["A"], "edges", size=64, channels=16, width=8)
    save_checkpoint(str(tmp_path / "full.pt"), net)
    publish_half(str(tmp_path / "full.pt"), str(tmp_path / "half.pt"))
    loaded = load_network(str(tmp_path / "half.pt"))[0]
    assert loaded.names == ["A"] and (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.half().float() if value.is_floating_point() else value)
