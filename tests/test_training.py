import json
import os

import torch

import train
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
