import json
import os

import numpy as np
import pytest
import torch

import train
from conftest import MRICRON, ROOT
from lib.checkpoint import load_checkpoint


def test_short_training_run_lowers_the_loss(studies_2d, tmp_path):
    out = str(tmp_path / "pemed.pt")
    rc = train.main(["--studies", studies_2d, "--out", out, "--epochs", "10", "--batch", "6", "--size", "128",
                     "--val-split", "0", "--device", "cpu", "--lr", "1e-3"])
    assert rc == 0
    net, meta = load_checkpoint(out)
    losses = meta["epoch_losses"]
    assert len(losses) == 10 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:2]) / 2, losses
    card = json.load(open(os.path.join(str(tmp_path), "pemed.train.json")))
    assert card["epochs"] == 10 and card["wall_time_s"] > 0


def test_trainer_defaults_and_click_simulation(studies_2d, tmp_path):
    from lib.networks.pemed import PEMEDNet
    from lib.trainers.click_simulation import ClickSimulation
    from lib.trainers.pemed import PEMEDTrain

    task = PEMEDTrain(str(tmp_path), PEMEDNet(1), str(tmp_path / "p.pt"), size=64, tracking=None)
    assert isinstance(task.train_iteration_update(None), ClickSimulation)
    assert task.config()["max_epochs"] == 20 and task.config()["train_batch_size"] == 8


def test_ablation_table_from_one_command(studies_2d, tmp_path):
    import ablation

    args = ["--train", studies_2d, "--eval", studies_2d, "--out", str(tmp_path), "--rows", "baseline,all",
            "--epochs", "1", "--batch", "6", "--size", "64", "--labels", "all", "--max-clicks", "3", "--per-structure", "1"]
    assert ablation.main(args) == 0
    text = open(tmp_path / "ablation.md").read()
    assert "| baseline |" in text and "| all |" in text and "| grabcut |" in text
    # a second sitting keeps the finished rows, and refuses to mix budgets in one table
    stamp = os.path.getmtime(tmp_path / "all.pt")
    assert ablation.main(args) == 0 and os.path.getmtime(tmp_path / "all.pt") == stamp
    assert ablation.main([a if a != "6" else "4" for a in args]) == 2
    os.remove(tmp_path / "all.train.json")  # a kept row whose budget is unknown is refused too
    assert ablation.main(args) == 2


@pytest.mark.skipif(not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")), reason="mricron-data not installed")
def test_engine_run_resumed_in_a_second_sitting_equals_one_run(tmp_path):
    """Weights, optimiser, schedule, epoch and every random stream come back: 2 + 1 epochs == 3 epochs."""
    common = ["--engine", "--samples-per-epoch", "8", "--val-samples", "4", "--batch", "4", "--size", "64",
              "--maps-cache", os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz"), "--device", "cpu"]
    one, two = str(tmp_path / "one" / "p.pt"), str(tmp_path / "two" / "p.pt")
    assert train.main(common + ["--out", one, "--epochs", "3"]) == 0
    assert train.main(common + ["--out", two, "--epochs", "2"]) == 0
    assert train.main(common + ["--out", two, "--epochs", "3", "--resume"]) == 0
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert a["meta"]["epoch_losses"] == b["meta"]["epoch_losses"] and len(a["meta"]["epoch_losses"]) == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_the_servers_trainer_keeps_every_label_value(tmp_path):
    """A user's saved 0/1 mask (value 1 is an AAL value held out of the bundled model's training)
    must train as a target: only train.py --exclude-held-out drops those values."""
    import shutil

    from conftest import APP_DIR
    from lib.configs.pemed import PEMED

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(os.path.join(APP_DIR, "model", "pemed.pt"), model_dir / "pemed.pt")
    config = PEMED()
    config.init("pemed", str(model_dir), {}, None)
    trainer = config.trainer()
    assert trainer.exclude_labels == ()
    assert trainer.gate is not None and trainer.gate.tolerance == 0.01  # the publish gate is on by default
    assert trainer.max_rounds == 3 and trainer.zoom_far is None and trainer.prev_perturb == 0.0
    other = PEMED()
    other.init("pemed", str(model_dir), {"pemed_publish_gate": "off", "pemed_train_rounds": "19",
                                         "pemed_train_zoom": "true", "pemed_train_prev_perturb": "0.5"}, None)
    configured = other.trainer()
    assert configured.gate is None and configured.max_rounds == 19
    assert configured.zoom_far == 0.05 and configured.prev_perturb == 0.5  # serving's zoom_far


def test_kind_weights_option_is_parsed_and_checked(capsys):
    assert train.parse_weights("lesion=3, brain=0.5") == {"lesion": 3.0, "brain": 0.5}
    for bad in ("lesion", "lesion=-1", "liver=2"):
        assert train.main(["--engine", "--out", "unused.pt", "--kind-weights", bad,
                           "--maps-cache", os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")]) == 2
        assert "--kind-weights" in capsys.readouterr().err


@pytest.mark.parametrize("zoom_far", [None, 0.05])
def test_click_simulation_zooms_in_from_the_first_corrective_click_as_serving_does(zoom_far):
    """With zoom_far, rounds after the first see the box serving's zoom-in shows, target included."""
    from types import SimpleNamespace

    from lib.trainers.click_simulation import ClickSimulation

    class ClickedDisks(torch.nn.Module):  # a network whose mask is its positive clicks' disks
        def forward(self, x):
            return 10 * x[:, 1:2] - 5

    label = torch.zeros(2, 1, 64, 64)
    label[0, 0, 10:20, 40:52] = 1
    label[1, 0, 30:44, 8:20] = 1
    seen = {}
    engine = SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu")), network=ClickedDisks(),
                             _iteration=lambda engine, batch: seen.update(batch))
    ClickSimulation(max_rounds=1, self_loop=True, train=False, zoom_far=zoom_far)(
        engine, {"image": torch.rand(2, 1, 64, 64), "label": label.clone()})
    assert seen["image"].shape == (2, 5, 64, 64)  # image, two disk maps, previous mask and logits
    areas = seen["label"].sum(dim=(1, 2, 3)) / label.sum(dim=(1, 2, 3))
    if zoom_far is None:
        assert torch.equal(seen["label"], label)
    else:  # the box (clicks and mask grown 1.4x, at least 0.4 of the side) shows the target ~2.5x larger
        assert (areas > 4).all()
        positive = seen["image"][:, 1] > 0.5
        assert (positive & (seen["label"][:, 0] > 0)).flatten(1).any(1).all()  # the clicks still lie on it


def test_click_simulation_meets_a_perturbed_target_as_the_previous_mask():
    """prev_perturb: the last round starts from the target a few pixels off, and clicks on its errors."""
    from types import SimpleNamespace

    from lib.evaluation import dice
    from lib.trainers.click_simulation import ClickSimulation

    class ClickedDisks(torch.nn.Module):
        def forward(self, x):
            return 10 * x[:, 1:2] - 5

    label = torch.zeros(4, 1, 64, 64)
    label[:, 0, 20:44, 16:40] = 1
    seed = next(s for s in range(100) if np.random.default_rng(s).integers(0, 2) == 1)  # one corrective round
    scores = {}
    for share in (0.0, 1.0):
        seen = {}
        engine = SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu")), network=ClickedDisks(),
                                 _iteration=lambda engine, batch: seen.update(batch))
        ClickSimulation(max_rounds=1, train=True, seed=seed, prev_perturb=share)(
            engine, {"image": torch.rand(4, 1, 64, 64), "label": label.clone()})
        previous = seen["image"][:, 3].numpy() > 0.5  # the previous-mask channel
        scores[share] = [dice(label[b, 0].numpy() > 0, previous[b]) for b in range(4)]
    assert max(scores[0.0]) < 0.6 < min(scores[1.0])  # the network's own disks, then the target a few pixels off
