"""Fine-tuning as labels arrive: the scheduler's debouncing and queueing, the stable train/validation
split, and a server-style run that replaces the served model only at its end."""

import os
import time

import pytest
import torch

from lib.continual import TrainingScheduler


class FakeRuns:
    """Runs that last ``seconds``; records when each started."""

    def __init__(self, seconds=0.0, fail=False):
        self.seconds, self.fail = seconds, fail
        self.started, self._until = [], 0.0

    def start(self):
        if self.fail:
            raise RuntimeError("no trainer")
        self.started.append(time.monotonic())
        self._until = time.monotonic() + self.seconds

    def running(self):
        return time.monotonic() < self._until


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


def test_saves_close_together_make_one_run():
    runs = FakeRuns()
    scheduler = TrainingScheduler(runs.start, runs.running, quiet_s=0.3, poll_s=0.02)
    for _ in range(3):
        scheduler.label_saved()
        time.sleep(0.05)
    assert runs.started == []  # still waiting for quiet
    assert wait_for(lambda: len(runs.started) == 1)
    time.sleep(0.5)
    assert len(runs.started) == 1 and scheduler.status()["saves_waiting"] == 0
    scheduler.stop()


def test_a_save_during_a_run_starts_the_next_run_after_it():
    runs = FakeRuns(seconds=0.6)
    scheduler = TrainingScheduler(runs.start, runs.running, quiet_s=0.05, poll_s=0.02)
    scheduler.label_saved()
    assert wait_for(lambda: len(runs.started) == 1)
    scheduler.label_saved()  # while the first run goes on
    time.sleep(0.3)
    assert len(runs.started) == 1 and scheduler.status()["saves_waiting"] == 1
    assert wait_for(lambda: len(runs.started) == 2)
    assert runs.started[1] - runs.started[0] >= 0.55  # never overlapping
    assert scheduler.status() == {"saves_waiting": 0, "runs_started": 2, "last_error": ""}
    scheduler.stop()


def test_a_run_that_cannot_start_is_reported_and_the_labels_wait():
    runs = FakeRuns(fail=True)
    scheduler = TrainingScheduler(runs.start, runs.running, quiet_s=0.05, poll_s=0.02)
    scheduler.label_saved()
    assert wait_for(lambda: scheduler.status()["last_error"] == "RuntimeError: no trainer")
    assert scheduler.status()["saves_waiting"] == 1 and scheduler.status()["runs_started"] == 0
    runs.fail = False
    scheduler.label_saved()  # the next save takes the waiting label along
    assert wait_for(lambda: scheduler.status()["runs_started"] == 1)
    assert scheduler.status()["saves_waiting"] == 0
    scheduler.stop()


def test_validation_images_stay_on_their_side_as_labels_arrive():
    from lib.trainers.pemed import stable_validation

    items = [{"image": f"/studies/img_{i:03d}.nii.gz", "label": f"/studies/labels/final/img_{i:03d}.nii.gz"}
             for i in range(200)]
    side = {d["image"]: stable_validation(d, 0.1) for d in items}
    assert 10 <= sum(side.values()) <= 30  # about a tenth
    moved = {**items[0], "image": "/elsewhere/" + os.path.basename(items[0]["image"])}
    assert stable_validation(moved, 0.1) == side[items[0]["image"]]  # by name, not by folder or position
    assert stable_validation({"seed": 7}, 0.1) == stable_validation({"seed": 7}, 0.1)


@pytest.mark.parametrize("broken", [False, True])
def test_a_server_run_publishes_once_at_its_end_and_only_if_finite(studies_2d, tmp_path, broken):
    from lib.networks.pemed import PEMEDNet
    from lib.trainers.pemed import PEMEDTrain
    from monailabel.datastore.local import LocalDatastore

    publish = tmp_path / "pemed_finetuned.pt"
    writes = []
    network = PEMEDNet(1)
    if broken:  # a run whose loss turns to nan
        with torch.no_grad():
            next(network.parameters()).fill_(float("nan"))
    task = PEMEDTrain(str(tmp_path / "run"), network, str(publish), size=64, publish_each_epoch=False,
                      tracking=None)
    original = task.train_handlers

    def handlers(context):  # record the published file's state after every epoch
        from ignite.engine import Events

        class Watch:
            def attach(self, engine):
                engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: writes.append(publish.exists()))

        return original(context) + [Watch()]

    task.train_handlers = handlers
    request = {"max_epochs": 2, "train_batch_size": 6, "val_batch_size": 6, "val_split": 0.0, "device": "cpu",
               "dataset": "Dataset"}
    task(request, LocalDatastore(studies_2d, extensions=("*.nii.gz",), auto_reload=False))
    assert writes == [False, False]  # nothing replaced the served model mid-run
    assert publish.exists() != broken
    if not broken:
        meta = torch.load(publish, weights_only=True)["meta"]
        assert meta["epoch"] == 2 and len(meta["epoch_losses"]) == 2


SAMPLE_MAPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "sample",
                           "colin27_maps.npz")


@pytest.mark.skipif(not os.path.exists(SAMPLE_MAPS), reason="no Colin27 maps cache (./run.sh setup builds it)")
def test_fine_tuning_replays_the_engine_beside_the_saved_labels(studies_2d, tmp_path):
    from lib.networks.pemed import PEMEDNet
    from lib.trainers.pemed import PEMEDTrain
    from monailabel.datastore.local import LocalDatastore

    publish = tmp_path / "pemed_finetuned.pt"
    task = PEMEDTrain(str(tmp_path / "run"), PEMEDNet(1), str(publish), size=64, publish_each_epoch=False,
                      replay_maps=SAMPLE_MAPS, tracking=None)
    request = {"max_epochs": 2, "samples_per_epoch": 12, "train_batch_size": 4, "val_batch_size": 4,
               "val_split": 0.5, "device": "cpu", "dataset": "Dataset"}
    seen = []
    original = task._pre_transforms

    def recording(augment):  # which source each training draw came from
        chain = original(augment)[0]
        call = chain.__call__
        chain.__call__ = lambda d: (seen.append("seed" in d), call(d))[1]
        return [lambda d: chain.__call__(d)]

    task._pre_transforms = recording
    task(request, LocalDatastore(studies_2d, extensions=("*.nii.gz",), auto_reload=False))
    meta = torch.load(publish, weights_only=True)["meta"]
    assert meta["iterations"] == 2 * 3  # 12 draws of batch 4 per epoch, however few labels
    train_draws = seen[: 2 * 12]  # no validation: 6 labels are below the minimum to hold any back
    assert len(seen) == 24 and 4 <= sum(train_draws) <= 20  # about half replayed


def test_labels_stored_by_another_client_schedule_a_run():
    from lib.continual import NewLabelWatcher

    store, calls = {"a"}, []
    watcher = NewLabelWatcher(lambda: set(store), lambda: calls.append(1), interval_s=3600)
    assert watcher.check() == 0 and calls == []  # the first poll takes stock of what was there
    store.add("b")
    assert watcher.check() == 1 and calls == [1]
    assert watcher.check() == 0 and calls == [1]  # seen once is enough
    store.add("c")
    assert watcher.check(notify=False) == 1 and calls == [1]  # saved through the server: its own run

    def failing():
        raise ConnectionError("down")

    assert NewLabelWatcher(failing, lambda: calls.append(2)).check() == 0 and calls == [1]


def _disk_samples(n=2, size=64):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    samples = []
    for i in range(n):
        target = ((yy - 30 - 3 * i) ** 2 + (xx - 28) ** 2 <= (10 + 2 * i) ** 2).numpy()
        samples.append(((0.2 + 0.6 * target)[None].astype("float32"), target))
    return samples


def test_the_publish_gate_keeps_a_model_that_got_worse():
    import copy

    from lib.networks.pemed import PEMEDNet
    from lib.trainers.publish_gate import PublishGate

    torch.manual_seed(0)
    before = PEMEDNet(1).eval()
    silent = copy.deepcopy(before)  # answers background everywhere: worse wherever the start found anything
    with torch.no_grad():
        silent.decoder.predict.bias.fill_(-50.0)
    gate = PublishGate(size=64, clicks=2, tolerance=0.01)
    samples = _disk_samples()
    assert gate.score(before, samples) > 0.05 and gate.score(silent, samples) == 0.0
    same = gate.decide(before, copy.deepcopy(before), {"saved": samples, "known:lesion": samples})
    assert same.publish and same.scores["saved"]["before"] == same.scores["saved"]["after"]
    worse_saved = gate.decide(before, silent, {"saved": samples})
    assert not worse_saved.publish and "saved labels" in worse_saved.reason
    forgot = gate.decide(before, silent, {"saved": [], "known:lesion": samples})
    assert not forgot.publish and "engine" in forgot.reason
    # one kind forgotten while the draws of all kinds together stay within the tolerance
    lenient = PublishGate(size=64, clicks=2, tolerance=1.0, kind_tolerance=0.03)
    one_kind = lenient.decide(before, silent, {"known:lesion": samples[:1], "known:brain": []})
    assert not one_kind.publish and one_kind.reason.endswith("on lesion") and one_kind.scores["known"]["n"] == 1


@pytest.mark.parametrize("verdict", [True, False])
def test_a_run_publishes_only_what_the_gate_lets_through(studies_2d, tmp_path, verdict):
    from lib.networks.pemed import PEMEDNet
    from lib.trainers.pemed import PEMEDTrain
    from lib.trainers.publish_gate import PublishGate
    from monailabel.datastore.local import LocalDatastore

    seen = {}

    class Judged(PublishGate):  # the real comparison on the run's samples, then the verdict under test
        def decide(self, before, after, groups):
            seen["groups"] = {name: len(s) for name, s in groups.items()}
            seen["changed"] = any((a != b).any() for a, b in zip(before.state_dict().values(),
                                                                  after.state_dict().values()))
            result = super().decide(before, after, groups)
            result.publish = verdict
            return result

    publish = tmp_path / "pemed_finetuned.pt"
    task = PEMEDTrain(str(tmp_path / "run"), PEMEDNet(1), str(publish), size=64, publish_each_epoch=False,
                      gate=Judged(size=64, clicks=2), tracking=None)
    request = {"max_epochs": 1, "train_batch_size": 6, "val_batch_size": 6, "val_split": 0.0, "device": "cpu",
               "dataset": "Dataset"}
    task(request, LocalDatastore(studies_2d, extensions=("*.nii.gz",), auto_reload=False))
    assert seen["groups"]["saved"] > 0 and "known" not in seen["groups"]  # no replay configured
    assert seen["changed"]  # the gate compared the run's start with its end
    assert publish.exists() == verdict
    if verdict:
        gate = torch.load(publish, weights_only=True)["meta"]["gate"]
        assert set(gate["scores"]) == {"saved"} and gate["publish"]


def test_the_gate_draws_every_engine_kind_and_the_saved_labels():
    from lib.trainers.publish_gate import PublishGate

    asked = []

    def transform(item):  # stands in for the trainer's validation chain
        asked.append(item)
        label = torch.zeros(1, 8, 8)
        label[0, 2:5, 2:5] = 1.0 if item.get("kind") != "empty" else 0.0
        return {"image": torch.rand(1, 8, 8), "label": label}

    groups = PublishGate(per_kind=2, saved_samples=3).samples(transform, [{"image": f"{i}.nii.gz"} for i in range(5)],
                                                             kinds=("lesion", "brain", "empty"))
    assert [len(groups[g]) for g in ("saved", "known:lesion", "known:brain", "known:empty")] == [3, 2, 2, 0]
    draws = [a for a in asked if "seed" in a]
    assert len({a["seed"] for a in draws}) == 2 and all(a["fixed"] for a in draws)  # the same draws every run
    assert all(seed >= 2 ** 31 for seed in (a["seed"] for a in draws))  # seeds no training draw uses


def test_fine_tuning_keeps_the_normalisation_statistics(studies_2d, tmp_path):
    from lib.networks.pemed import PEMEDNet
    from lib.trainers.pemed import PEMEDTrain
    from monailabel.datastore.local import LocalDatastore

    network = PEMEDNet(1)
    stats = {k: v.clone() for k, v in network.state_dict().items() if "running_" in k}
    weights = {k: v.clone() for k, v in network.state_dict().items() if k.endswith("weight")}
    task = PEMEDTrain(str(tmp_path / "run"), network, str(tmp_path / "out.pt"), size=64, publish_each_epoch=False,
                      freeze_norm_statistics=True, tracking=None)
    request = {"max_epochs": 1, "train_batch_size": 6, "val_batch_size": 6, "val_split": 0.0, "device": "cpu",
               "dataset": "Dataset"}
    task(request, LocalDatastore(studies_2d, extensions=("*.nii.gz",), auto_reload=False))
    after = network.state_dict()
    assert stats and all(torch.equal(v, after[k]) for k, v in stats.items())
    assert any(not torch.equal(v, after[k]) for k, v in weights.items())  # it did learn
