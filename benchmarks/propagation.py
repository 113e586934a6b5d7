"""3D segmentation by propagation (the ``pemed_3d`` task): 3D Dice against clicks, and seconds per request.

    python benchmarks/propagation.py [--volume datasets/sample/volumes/ch2bet.nii.gz] [--clicks 8]
        [--axis 2] [--out benchmarks/results/propagation.json]

Targets: the 16 AAL structures held out of the default model's training, on the sample volume, and
the whole brain (ch2bet > 0), the largest structure a request propagates through. A 3D form of the
NoC clicker: the first click at the point farthest from the structure's edge on the slice (along
``--axis``) where it is largest; each next click on the slice with the most wrong voxels, at the
centre of its larger error region (the 2D protocol's rule). Each request goes through the infer
task's own code (PEMED3DInfer.run_inferer, in-process, the app's serve settings), as a client would
send it: all clicks so far.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.configs.labels import AAL_LABELS, HELD_OUT  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.infers.pemed_3d import PEMED3DInfer  # noqa: E402
from lib.predictor import SERVE_DEFAULTS  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402

SAMPLE = os.path.join(ROOT, "datasets", "sample", "volumes")


def next_click_3d(truth: np.ndarray, pred: np.ndarray, axis: int, first: bool):
    """[x, y, z] and polarity of the next click (``first``: the largest slice's interior point)."""
    per_slice = np.moveaxis(truth, axis, 0).reshape(truth.shape[axis], -1).sum(1) if first else \
        np.moveaxis(truth != pred, axis, 0).reshape(truth.shape[axis], -1).sum(1)
    index = int(np.argmax(per_slice))
    t, p = np.take(truth, index, axis=axis), np.take(pred, index, axis=axis)
    click = next_eval_click(t, np.zeros_like(t) if first else p)
    point = [click.row, click.col]
    point.insert(axis, index)
    return point, click.positive


def run_target(task, image_path, name, truth, clicks, axis):
    fg, bg, dices, times, spans = [], [], [], [], []
    pred = np.zeros_like(truth)
    for k in range(clicks):
        point, positive = next_click_3d(truth, pred, axis, first=k == 0)
        (fg if positive else bg).append(point)
        data = {"image": image_path, "image_path": image_path, "foreground": fg, "background": bg, "label": name,
                "axis": axis, "reset_state": k == 0}
        start = time.perf_counter()
        out = task.run_inferer(data, device="cpu")
        times.append(time.perf_counter() - start)
        pred = out["pred"].astype(bool)
        dices.append(dice(truth, pred))
        spans.append(out["result"]["slices"])
    return {"dice": [round(d, 4) for d in dices], "seconds": [round(t, 3) for t in times], "slices": spans[-1],
            "true_slices": [int(v) for v in np.nonzero(np.moveaxis(truth, axis, 0).any(axis=(1, 2)))[0][[0, -1]]]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volume", default=os.path.join(SAMPLE, "ch2bet.nii.gz"))
    p.add_argument("--labels", default=os.path.join(SAMPLE, "labels", "final", "ch2bet.nii.gz"))
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    p.add_argument("--clicks", type=int, default=8)
    p.add_argument("--axis", type=int, default=2)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "propagation.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    task = PEMED3DInfer([args.checkpoint], labels=AAL_LABELS, serve=SERVE_DEFAULTS)
    atlas = np.asanyarray(nib.load(args.labels).dataobj)
    targets = {name: atlas == AAL_LABELS[name] for name in HELD_OUT}
    targets["whole brain"] = np.asanyarray(nib.load(args.volume).dataobj) > 0
    results = {}
    for name, truth in targets.items():
        results[name] = run_target(task, args.volume, name, truth, args.clicks, args.axis)
        print(name, json.dumps(results[name]), flush=True)
    structures = [r for n, r in results.items() if n != "whole brain"]
    summary = {
        "command": "python benchmarks/propagation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "serve": SERVE_DEFAULTS, "axis": args.axis, "volume": os.path.relpath(args.volume, ROOT),
        "held_out_mean_dice_after_click": [round(float(np.mean([r["dice"][k] for r in structures])), 4)
                                           for k in range(args.clicks)],
        "held_out_request_seconds_median": round(statistics.median(t for r in structures for t in r["seconds"]), 3),
        "whole_brain": results["whole brain"],
        "per_target": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_target"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
