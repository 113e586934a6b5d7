"""From a saved label to the automatic task segmenting its new name, in a running server.

    python benchmarks/save_to_serve.py --out benchmarks/results/automatic/save_to_serve.json
        [--structure Lingual_L] [--name "lingual gyrus (left)"] [--slices 4]

Starts the app (its bundled models, the server's default training budget) on a studies folder
holding the ch2bet volume, waits for its start-up work (the replayed draws' embeddings), saves one label through the REST API as a client does (PUT
/datastore/label with MONAI Label's label_info naming the segment), the structure drawn on a few
axial slices, then polls ``GET /info/`` until ``curriculum`` lists the new name, and asks it to
segment a held-back slice. Reports the seconds from the save's answer to the name being listed and
segmented, the training runs the save started (the server's log), and that slice's Dice.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402

from lib.configs.labels import AAL_LABELS  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.local_server import LocalServer, copy_app  # noqa: E402

TEMPLATES = "/usr/share/mricron/templates"
APP = os.path.join(ROOT, "apps", "pemed")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--structure", default="Lingual_L")
    p.add_argument("--name", default="lingual gyrus (left)")
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="save_to_serve_")
    app = copy_app(os.path.join(work, "app"))
    studies = os.path.join(work, "studies")
    os.makedirs(studies)
    shutil.copy(os.path.join(TEMPLATES, "ch2bet.nii.gz"), studies)
    affine = nib.load(os.path.join(TEMPLATES, "ch2bet.nii.gz")).affine
    truth = np.asanyarray(nib.load(os.path.join(TEMPLATES, "aal.nii.gz")).dataobj) == AAL_LABELS[args.structure]
    on = np.flatnonzero(truth.sum((0, 1)) >= 60)
    drawn = [int(s) for s in on[np.linspace(0, len(on) - 1, args.slices + 2)[1:-1].round().astype(int)]]
    held = int(on[len(on) // 2 + 1]) if int(on[len(on) // 2 + 1]) not in drawn else int(on[len(on) // 2 - 1])
    label = np.zeros(truth.shape, np.uint8)
    label[:, :, drawn] = truth[:, :, drawn]
    label_path = os.path.join(work, "label.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), label_path)
    log = os.path.join(work, "server.log")
    result = {"command": " ".join(["python", "benchmarks/save_to_serve.py"] + (argv or sys.argv[1:])),
              "structure": args.structure, "name": args.name, "drawn_slices": drawn, "held_back_slice": held}
    with LocalServer(app, studies, log, timeout_s=300) as server:
        started = time.time()  # as a user's first save comes minutes after start-up: its background work done
        while time.time() - started < 300 and "replayed draws encoded" not in open(log).read():
            time.sleep(2)
        result["start_up_work_s"] = round(time.time() - started, 1)
        with open(label_path, "rb") as f:
            r = requests.put(f"{server.url}/datastore/label?image=ch2bet&tag=final", timeout=120,
                             files={"label": ("label.nii.gz", f),
                                    "params": (None, json.dumps({"label_info": [{"name": args.name, "idx": 1}]}))})
        r.raise_for_status()
        saved = time.time()
        listed = None
        while time.time() - saved < args.timeout:
            labels = requests.get(f"{server.url}/info/", timeout=30).json()["models"]["curriculum"]["labels"]
            if args.name in labels:
                listed = time.time() - saved
                break
            time.sleep(2)
        result["save_to_listed_s"] = round(listed, 1) if listed is not None else None
        if listed is not None:
            r = requests.post(f"{server.url}/infer/curriculum?image=ch2bet&output=image", timeout=120,
                              files={"params": (None, json.dumps({"label": args.name, "slice": held, "axis": 2}))})
            result["save_to_segmented_s"] = round(time.time() - saved, 1)
            answer = os.path.join(work, "answer.nii.gz")
            with open(answer, "wb") as f:
                f.write(r.content)
            mask = np.asanyarray(nib.load(answer).dataobj)[:, :, held] > 0
            result["held_back_dice"] = round(dice(truth[:, :, held], mask), 3)
    with open(log) as f:
        result["server_log_training"] = [line.strip()[:200] for line in f if "continual training" in line
                                         or "new names" in line or "replayed draws" in line]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if listed is not None else 1


if __name__ == "__main__":
    sys.exit(main())
