"""Click latency of PE-MED: in-process per module, and through a running MONAI Label server.

    python benchmarks/latency.py [--checkpoint apps/pemed/model/pemed.pt] [--repeats 30] [--server]
        [--out benchmarks/latency.json]

In-process: a 256x256 slice of the sample (Colin27), first click (with Self-Loop when the model has
it) and later clicks (zoomed in as the app does by default), medians over ``--repeats``; each
module's share of one forward pass from forward hooks. With --server: starts `monailabel start_server` on 127.0.0.1 with the sample volumes,
runs a click session on Thalamus_L (AAL 77) with the NoC clicker over HTTP, and reports the
per-request wall time after the image's first request and the server's resident memory.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.local_server import LocalServer, copy_app  # noqa: E402
from lib.networks.pemed import network_input  # noqa: E402
from lib.predictor import SERVE_DEFAULTS, PEMEDPredictor  # noqa: E402
from lib.prompts.clicks import Click, next_eval_click, request_points  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402

MRICRON = "/usr/share/mricron/templates"


def sample_slice(value=77):
    image = np.asanyarray(nib.load(os.path.join(MRICRON, "ch2bet.nii.gz")).dataobj).astype(np.float32)
    label = np.asanyarray(nib.load(os.path.join(MRICRON, "aal.nii.gz")).dataobj)
    z = int(np.argmax((label == value).sum(axis=(0, 1))))
    return image, label, z


def module_shares(network, x, repeats):
    """Median milliseconds per named module over ``repeats`` forward passes (hooks, CPU-synchronous)."""
    named = {f"encoder.stage{i + 1}": s for i, s in enumerate(network.encoder.stages)}
    named.update({n: getattr(network, n) for n in ("prompt_embed", "palm_i", "palm_o", "tsip", "decoder")
                  if getattr(network, n) is not None})
    times = {n: [] for n in named}
    starts = {}
    hooks = []
    for n, m in named.items():
        hooks.append(m.register_forward_pre_hook(lambda mod, inp, n=n: starts.__setitem__(n, time.perf_counter())))
        hooks.append(m.register_forward_hook(lambda mod, inp, out, n=n: times[n].append(time.perf_counter() - starts[n])))
    totals = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            network(x)
            totals.append(time.perf_counter() - t)
    for h in hooks:
        h.remove()
    total = float(np.median(totals)) * 1e3
    # Stage 1's blocks run inside the network's own forward when PALM-O is on (embed + run_blocks), so
    # they are timed through the stage's sub-modules there.
    out = {n: round(float(np.median(v)) * 1e3, 2) for n, v in times.items() if v}
    out["forward_total"] = round(total, 2)
    out["other"] = round(total - sum(v for k, v in out.items() if k != "forward_total"), 2)
    return out


def in_process(checkpoint, repeats, size=256):
    network, meta = load_checkpoint(checkpoint, "cpu")
    predictor = PEMEDPredictor(network, "cpu", size, **SERVE_DEFAULTS)
    volume, label, z = sample_slice()
    image = normalize_intensity(volume[:, :, z], "MR")
    gt = label[:, :, z] == 77
    predictor.set_image(image)
    first = next_eval_click(gt, np.zeros_like(gt))
    for _ in range(3):
        predictor.predict([first])  # warm-up
    first_ms, later_ms = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = predictor.predict([first])
        first_ms.append((time.perf_counter() - t) * 1e3)
        second = next_eval_click(gt, out.mask(), [first]) or Click(first.row + 3, first.col, False)
        t = time.perf_counter()
        predictor.predict([first, second], out.logits)
        later_ms.append((time.perf_counter() - t) * 1e3)
    x = network_input(predictor.region([first], None).image_to_network(predictor.image), torch.zeros(1, 2, size, size), None)
    return {
        "slice_shape": list(image.shape), "network_input": [size, size], "modules": network.describe()["modules"],
        "serve": SERVE_DEFAULTS,
        "first_click_ms_p50": round(float(np.median(first_ms)), 2),
        "later_click_ms_p50": round(float(np.median(later_ms)), 2),
        "later_click_ms_p90": round(float(np.percentile(later_ms, 90)), 2),
        "module_ms_p50": module_shares(network, x, repeats),
    }


def rss_mb(pid):
    total = 0
    for p in [pid] + [int(c) for c in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
        except (FileNotFoundError, StopIteration):
            pass
    return total / 1024


def through_server(checkpoint, clicks=20):
    """A click session over HTTP with MONAILabelClient (the client 3D Slicer's module uses)."""
    from monailabel.client import MONAILabelClient

    work = tempfile.mkdtemp(prefix="pemed_bench_")
    try:
        app = copy_app(os.path.join(work, "app"), checkpoint)
        studies = os.path.join(work, "studies")
        os.makedirs(studies)
        shutil.copy(os.path.join(MRICRON, "ch2bet.nii.gz"), os.path.join(studies, "ch2bet.nii.gz"))
        with LocalServer(app, studies, os.path.join(work, "server.log")) as server:
            client = MONAILabelClient(server.url, tmpdir=work)
            _, label, z = sample_slice()
            gt = label[:, :, z] == 77
            session, pred, wall = [], np.zeros_like(gt), []
            for _ in range(clicks):
                c = next_eval_click(gt, pred, session)
                if c is None:
                    break
                session.append(c)
                params = {**request_points(session, z), "label": "bench"}
                t = time.perf_counter()
                out_file, _ = client.infer("pemed", "ch2bet", params)
                wall.append((time.perf_counter() - t) * 1e3)
                pred = np.asanyarray(nib.load(out_file).dataobj)[:, :, z] > 0
                os.remove(out_file)
            rss = rss_mb(server.proc.pid)
        return {"requests": len(wall), "first_request_ms": round(wall[0], 1),
                "later_requests_ms_p50": round(float(np.median(wall[1:])), 1),
                "later_requests_ms_p90": round(float(np.percentile(wall[1:], 90)), 1),
                "final_dice": round(dice(gt, pred), 3),
                "server_rss_mb": round(rss, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--server", action="store_true")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    report = {"machine": {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(), "torch": torch.__version__},
              "in_process": in_process(args.checkpoint, args.repeats)}
    if args.server:
        report["server"] = through_server(args.checkpoint)
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
