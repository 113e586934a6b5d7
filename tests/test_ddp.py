"""Distributed training (issue 10, part 5): the trainer's DDP path, here on CPU with the gloo backend
in 2 processes, against one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest

from lib.checkpoint import load_checkpoint

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddp_run.py")


def run(studies, out, processes, batch):
    done = subprocess.run([sys.executable, SCRIPT, studies, str(out), str(processes), str(batch)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_processes_train_as_one_does(studies_2d, tmp_path):
    one = run(studies_2d, tmp_path / "one", 1, 8)
    two = run(studies_2d, tmp_path / "two", 2, 4)  # 4 a process: the same 8 a step
    print(f"\nepoch losses, 1 process: {[round(v, 3) for v in one]}\n             2 processes: {[round(v, 3) for v in two]}")
    for losses in (one, two):
        assert len(losses) == 6 and losses[-1] < 0.75 * losses[0]  # both learn
    assert 0.5 < two[-1] / one[-1] < 2.0  # and end in the same place
    network, meta = load_checkpoint(str(tmp_path / "two" / "pemed.pt"))
    assert meta["epoch"] == 6 and not any(k.startswith("module.") for k in network.state_dict())


@pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="torch built without distributed")
def test_two_machines_of_two_processes_each(studies_2d, tmp_path):
    """Two launches with ``nodes`` 2 stand in for two machines (here both on loopback): 4 ranks train
    one model, and only node 0 publishes it."""
    from lib.trainers.pemed import free_port

    url = f"tcp://127.0.0.1:{free_port()}"
    launches = [subprocess.Popen([sys.executable, SCRIPT, studies_2d, str(tmp_path / f"node{r}"), "2", "2", "2", str(r), url],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, OMP_NUM_THREADS="1")) for r in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in launches]
    for p, (out, err) in zip(launches, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    losses = json.loads(outputs[0][0].strip().splitlines()[-1])
    print(f"\nepoch losses, 2 machines x 2 processes: {[round(v, 3) for v in losses]}")
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert (tmp_path / "node0" / "pemed.pt").exists() and not (tmp_path / "node1" / "pemed.pt").exists()
