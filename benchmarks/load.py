"""Clicks from several clients at once, idle and while a training run is active (loopback only).

    python benchmarks/load.py [--clients 8] [--clicks 10] [--out benchmarks/results/load.json]

Starts `monailabel start_server` on 127.0.0.1 with the sample's ch2bet and its AAL labels (the app's
bundled model, continual training off), then has ``--clients`` threads each click ``--clicks``
times on its own structure (a session of NoC-protocol clicks on its own axial slice, every client
under its own ``client_id``): once with the server idle, once while a training run
(`POST /train/pemed`) is going on. Reports per phase the requests, the failed ones (anything but 200)
and the p50 / p90 / p99 latency of a click, measured at the client.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "apps", "pemed"), os.path.join(ROOT, "benchmarks")]

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402

from lib.local_server import LocalServer, copy_app  # noqa: E402
from lib.prompts.clicks import Click, next_eval_click, request_points  # noqa: E402
from ohif_latency import OHIF_PARAMS, read_nrrd  # noqa: E402

MRICRON = "/usr/share/mricron/templates"
STRUCTURES = (77, 78, 71, 72, 73, 74, 37, 38, 41, 42, 75, 76)  # thalami, caudates, putamina, hippocampi, amygdalae, pallida


def click_session(url: str, image: str, label: np.ndarray, value: int, clicks: int, client_id: str,
                  record: Dict[str, list]) -> None:
    """One client's NoC-protocol session on its structure's largest axial slice."""
    mask = label == value
    z = int(np.argmax(mask.sum(axis=(0, 1))))
    gt = mask[:, :, z]
    pred = np.zeros_like(gt)
    placed: List[Click] = []
    for i in range(clicks):
        click = next_eval_click(gt, pred, placed)
        if click is None:
            break
        placed.append(click)
        params = {**OHIF_PARAMS, **request_points(placed, z), "label": f"s{value}", "client_id": client_id,
                  "reset_state": i == 0}
        start = time.perf_counter()
        try:
            r = requests.post(f"{url}/infer/pemed", params={"image": image, "output": "image"},
                              files={"params": (None, json.dumps(params))}, timeout=300)
            status = r.status_code
        except requests.RequestException as e:
            status = type(e).__name__
        record["ms"].append((time.perf_counter() - start) * 1e3)
        if status != 200:
            record["failed"].append(status)
            return
        pred = read_nrrd(r.content)[:, :, z] > 0


def run_clients(url: str, image: str, label: np.ndarray, clients: int, clicks: int) -> Dict[str, object]:
    record: Dict[str, list] = {"ms": [], "failed": []}
    threads = [threading.Thread(target=click_session, args=(url, image, label, STRUCTURES[i % len(STRUCTURES)],
                                                             clicks, f"client{i}", record)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.array(record["ms"])
    return {"requests": len(ms), "failed": len(record["failed"]), "failures": record["failed"][:10],
            "wall_s": round(time.perf_counter() - start, 1),
            **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) if len(ms) else None for q in (50, 90, 99)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--train-epochs", type=int, default=100, help="the training run's epochs (stopped at the end)")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="pemed_load_")
    try:
        studies = os.path.join(work, "studies")
        os.makedirs(os.path.join(studies, "labels", "final"))
        shutil.copy(os.path.join(MRICRON, "ch2bet.nii.gz"), studies)
        shutil.copy(os.path.join(MRICRON, "aal.nii.gz"), os.path.join(studies, "labels", "final", "ch2bet.nii.gz"))
        label = np.asanyarray(nib.load(os.path.join(MRICRON, "aal.nii.gz")).dataobj)
        app = copy_app(os.path.join(work, "app"))
        conf = {"pemed_auto_train": "false", "pemed_seg_poll_s": "0", "pemed_publish_gate": "off"}
        with LocalServer(app, studies, os.path.join(work, "server.log"), conf=conf) as srv:
            requests.post(f"{srv.url}/infer/pemed", params={"image": "ch2bet", "output": "json"},  # the image's first read
                          files={"params": (None, json.dumps({"foreground": [[90, 110, 90]]}))}, timeout=300)
            idle = run_clients(srv.url, "ch2bet", label, args.clients, args.clicks)
            r = requests.post(f"{srv.url}/train/pemed", json={"max_epochs": args.train_epochs, "train_batch_size": 2,
                                                               "samples_per_epoch": 16}, timeout=60)
            r.raise_for_status()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:  # until the run is past its start-up and training
                details = requests.get(f"{srv.url}/train/", timeout=30).json().get("details", [])
                if any("Iter:" in line for line in details):
                    break
                time.sleep(1)
            training = run_clients(srv.url, "ch2bet", label, args.clients, args.clicks)
            still = requests.get(f"{srv.url}/train/", timeout=30).json()["status"]
            requests.delete(f"{srv.url}/train/", timeout=60)
        result = {"command": "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "clients": args.clients,
                  "clicks_each": args.clicks, "idle": idle, "while_training": training,
                  "training_status_at_the_end": still}
        print(json.dumps(result, indent=1))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
        return 0 if idle["failed"] == 0 and training["failed"] == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
