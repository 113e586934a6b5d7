"""Spend a lent GPU machine's session (the `device` tool: 10-minute commands, about 30 minutes in all,
the machine kept between commands only while they follow each other) on one training run of the
default PE-MED network and the ablation table, trained side by side as background processes that
outlive each command.

    start  --until S   time every run's iterations in a short probe (all at once, so under the load
                       they will share), size each run's epochs to --budget / --row-budget seconds,
                       start the runs, collect at S (seconds after this command began)
    wait   --until S   collect at S
    finish --until S   wait for the runs (killing what still runs 45 s before S), tabulate the
                       ablation, and pack the results into $OUT

Every call carries .whl, .gpu and datasets/sample/slices (tools/gpu_prepare.sh makes the first two; a
path a call does not carry is removed there) and begins with

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=$PWD/.gpu/site:/tmp/site

What comes back in $OUT (at most 8 files of 16 MiB): the main run's resume state (start, wait) or
checkpoint (finish) in 15 MB parts (`cat NAME.part-* > NAME`), and one .tar.gz of records, logs and
the ablation's results. Stdlib only: it runs with the GPU image's python3.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from datetime import datetime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, "runs", "gpu")
PLAN = os.path.join(WORK, "plan.json")
ROWS = ("baseline", "sl", "palm_i", "palm_o", "palm", "tsip", "all")
MAPS = os.path.join(REPO, ".gpu", "colin27_maps.npz")
ABLATION_OUT = os.path.join(WORK, "ablation")
EPOCH_S = 75  # a few checkpoints a command; validation (64 draws) stays a small share of an epoch


def train_args(modules: str, epochs: int, samples: int, batch: int, workers: int, a) -> list:
    return ["apps/pemed/train.py", "--engine", "--device", a.device, "--maps-cache", MAPS, "--modules", modules,
            "--epochs", str(epochs), "--samples-per-epoch", str(samples), "--batch", str(batch), "--workers", str(workers)]


def main_run_args(epochs: int, samples: int, a) -> list:
    return train_args("all", epochs, samples, a.batch, a.workers, a) + ["--init", a.init, "--lr", str(a.lr)]


def row_args(row: str, epochs: int, samples: int, a) -> list:
    return ["apps/pemed/ablation.py", "--train", "engine", "--samples-per-epoch", str(samples),
            "--eval", a.ablation_eval, "--out", ABLATION_OUT, "--rows", row, "--epochs", str(epochs),
            "--batch", str(a.row_batch), "--device", a.device, "--workers", str(a.row_workers), "--maps-cache", MAPS]


def log_of(name: str) -> str:
    return os.path.join(WORK, "train.log" if name == "main" else f"row_{name}.log")


def launch(args: list, log: str, daemon: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable] + args, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=daemon)


def seconds_per_iteration(log: str) -> float:
    """From ignite's per-iteration lines ('<date> <time>,<ms> - INFO - Epoch: e/E, Iter: i/N -- ...'),
    skipping the first iteration (workers starting)."""
    stamps = []
    for line in open(log, errors="replace"):
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) - INFO - Epoch: \d+/\d+, Iter: (\d+)/\d+", line)
        if m:
            stamps.append((int(m.group(2)), datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()))
    if len(stamps) < 3:
        raise RuntimeError(f"probe too short: {log}\n" + open(log, errors="replace").read()[-3000:])
    (i0, t0), (i1, t1) = stamps[1], stamps[-1]
    return (t1 - t0) / (i1 - i0)


def size(sec_per_it: float, batch: int, budget: float):
    iters = max(4, round(EPOCH_S / sec_per_it))
    epochs = max(2, int(budget / (1.15 * iters * sec_per_it)))  # 15%: validation, checkpoints
    return epochs, iters * batch


def start(a):
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(ABLATION_OUT, exist_ok=True)
    if a.grabcut and not os.path.exists(os.path.join(ABLATION_OUT, "grabcut.json")):
        shutil.copy(a.grabcut, os.path.join(ABLATION_OUT, "grabcut.json"))
    probes = {}
    for name in ("main",) + ROWS:  # all at once: the rates under the load the real runs will share
        out = os.path.join(WORK, f"probe_{name}", "p.pt")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        args = (main_run_args(1, 12 * a.batch, a) if name == "main"
                else train_args(name, 1, 12 * a.row_batch, a.row_batch, a.row_workers, a) + ["--val-samples", "8"])
        probes[name] = launch(args + ["--out", out], os.path.join(WORK, f"probe_{name}.log"), daemon=False)
    for p in probes.values():
        p.wait(timeout=240)
    rates = {name: seconds_per_iteration(os.path.join(WORK, f"probe_{name}.log")) for name in probes}
    print("seconds per iteration under full load:", json.dumps({k: round(v, 3) for k, v in rates.items()}))
    main_epochs, main_samples = size(rates["main"], a.batch, a.budget)
    # one budget for every row, shorter than the main run's: each row is evaluated after training
    row_epochs, row_samples = size(max(rates[r] for r in ROWS), a.row_batch, a.row_budget)
    plan = {"started": time.time(), "budget_s": a.budget, "rates_s_per_it": rates,
            "main": {"epochs": main_epochs, "samples_per_epoch": main_samples, "args": main_run_args(main_epochs, main_samples, a) + ["--resume", "--out", os.path.join(WORK, "pemed.pt")]},
            "rows": {"epochs": row_epochs, "samples_per_epoch": row_samples, "batch": a.row_batch,
                     "args": {r: row_args(r, row_epochs, row_samples, a) for r in ROWS}},
            "pids": {}}
    plan["pids"]["main"] = launch(plan["main"]["args"], log_of("main"), daemon=True).pid
    for r in ROWS:
        plan["pids"][r] = launch(plan["rows"]["args"][r], log_of(r), daemon=True).pid
    json.dump(plan, open(PLAN, "w"), indent=1)
    print(json.dumps({k: plan[k] for k in ("budget_s", "main", "rows")}, indent=1)[:3000])
    collect(a)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a finished child of a finished command is a zombie until reaped: not alive
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def progress():
    plan = json.load(open(PLAN))
    for name, pid in plan["pids"].items():
        lines = open(log_of(name), errors="replace").read().splitlines()
        last = [l for l in lines if "Epoch:" in l and "Iter:" in l][-1:] or lines[-1:]
        val = [l for l in lines if "val_mean_dice" in l.lower() or "Key metric" in l][-1:]
        print(f"{name}: {'running' if alive(pid) else 'ended'} | {(last or [''])[0][-90:]} | {(val or [''])[0][-90:]}")


def split_into_out(path: str, name: str):
    with open(path, "rb") as f:
        k = 0
        while chunk := f.read(15 * 1024 * 1024):
            open(os.path.join(os.environ["OUT"], f"{name}.part-{k:02d}"), "wb").write(chunk)
            k += 1


def pack():
    with tarfile.open(os.path.join(os.environ["OUT"], "gpu_results.tar.gz"), "w:gz") as t:
        for f in sorted(glob.glob(os.path.join(WORK, "*.log")) + glob.glob(os.path.join(WORK, "*.json"))
                        + glob.glob(os.path.join(WORK, "pemed_run", "*.json"))):
            t.add(f, arcname=os.path.relpath(f, WORK))
        for f in sorted(glob.glob(os.path.join(ABLATION_OUT, "*"))):
            if not f.endswith(".pt") and os.path.isfile(f):
                t.add(f, arcname=os.path.relpath(f, WORK))


def collect(a):
    time.sleep(max(0.0, a.until - (time.time() - T0)))
    progress()
    resume = os.path.join(WORK, "pemed.resume.pt")
    if os.path.exists(resume):
        split_into_out(resume, "pemed.resume.pt")
    pack()


def finish(a):
    plan = json.load(open(PLAN))
    stop_at = a.until - 45
    while any(alive(p) for p in plan["pids"].values()) and time.time() - T0 < stop_at:
        time.sleep(5)
    for name, pid in plan["pids"].items():
        if alive(pid):
            print(f"{name} still running at the deadline: stopped")
            os.killpg(pid, signal.SIGKILL)
    time.sleep(2)
    progress()
    done = [r for r in ROWS if os.path.exists(os.path.join(ABLATION_OUT, f"{r}.json"))]
    if done:
        subprocess.run([sys.executable] + row_args(",".join(done), plan["rows"]["epochs"], plan["rows"]["samples_per_epoch"], a),
                       cwd=REPO, timeout=60)
    ckpt = os.path.join(WORK, "pemed.pt")
    if os.path.exists(ckpt):
        split_into_out(ckpt, "pemed.pt")
    pack()


if __name__ == "__main__":
    T0 = time.time()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["start", "wait", "finish"])
    p.add_argument("--until", type=float, required=True, help="seconds after this command began")
    p.add_argument("--budget", type=float, default=1150, help="start: seconds of training for the main run, after the probe")
    p.add_argument("--row-budget", type=float, default=1050, help="start: seconds of training for each ablation row")
    p.add_argument("--device", default="cuda", help="cpu only to try this script without a GPU")
    p.add_argument("--init", default="apps/pemed/model/pemed.pt")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--row-batch", type=int, default=16)
    p.add_argument("--row-workers", type=int, default=1)
    p.add_argument("--ablation-eval", default="datasets/sample/slices/eval")
    p.add_argument("--grabcut", default="benchmarks/results/ablation12/grabcut.json",
                   help="the GrabCut row, already measured on the same eval slices")
    a = p.parse_args()
    {"start": start, "wait": collect, "finish": finish}[a.step](a)
