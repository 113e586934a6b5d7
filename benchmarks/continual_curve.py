"""The learning curve of continual fine-tuning, through the running server: nobody calls /train.

    python benchmarks/continual_curve.py [--structure putamen|thalamus] [--out benchmarks/results/continual]
                                         [--counts 1,2,4,8]

A structure the default model was never trained on (the left putamen, AAL 73, or the left thalamus,
AAL 77: held-out structures): its axial slices of the sample's ch2bet are saved one by one as final
labels (0/1 masks, as an annotator's tool writes them; value 1 is also a held-out AAL value) to
`monailabel start_server` on 127.0.0.1, which fine-tunes in the background after each batch of saves.
After 1, 2, 4 and 8 saved slices the published model is measured, with the NoC protocol (20 clicks),
on the held-back slices: the same structure of the right side (AAL 74 or 78) on every axial slice
where it covers >= 30 pixels, a structure of the same kind no saved label shows (its slices are the
same images, labelled on the left only). The model's figures on what it already knew (the eval set's lesions and large objects,
`--known`) show whether it forgets. A run's model serves only if the publish gate lets it through
(lib/trainers/publish_gate.py); otherwise the served model, and its figures, stay. Also printed:
seconds from the last save to the new model serving, the gate's figures, and NoC@90's change from the
default sample by sample (mean difference and 95% bootstrap interval: one that holds 0 is noise).
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
import torch  # noqa: E402

import evaluate  # noqa: E402
from lib.local_server import LocalServer, copy_app  # noqa: E402

SAMPLE = os.path.join(ROOT, "datasets", "sample")
# name: (AAL value saved, AAL value measured, the saved structure's axial slices in the order they are saved)
STRUCTURES = {"putamen": (73, 74, (74, 66, 82, 70, 78, 63, 86, 72)),
              "thalamus": (77, 78, (79, 74, 85, 71, 82, 76, 88, 73))}


def write_slice(path: str, array: np.ndarray, dtype) -> None:
    nib.save(nib.Nifti1Image(np.asarray(array).astype(dtype), np.eye(4)), path)


def load_sample():
    """The sample's ch2bet and its AAL label map, as arrays."""
    volumes = os.path.join(SAMPLE, "volumes")
    image = np.asanyarray(nib.load(os.path.join(volumes, "ch2bet.nii.gz")).dataobj).astype(np.float32)
    atlas = np.asanyarray(nib.load(os.path.join(volumes, "labels", "final", "ch2bet.nii.gz")).dataobj)
    return image, atlas


def write_structure_slices(folder: str, image: np.ndarray, target: np.ndarray) -> list:
    """A studies folder of every axial slice holding >= 30 pixels of ``target``, with it as the final
    label; the slices' indices."""
    os.makedirs(os.path.join(folder, "labels", "final"), exist_ok=True)
    zs = [z for z in range(image.shape[2]) if target[:, :, z].sum() >= 30]
    for z in zs:
        write_slice(os.path.join(folder, f"ax_{z:03d}.nii.gz"), image[:, :, z], np.float32)
        write_slice(os.path.join(folder, "labels", "final", f"ax_{z:03d}.nii.gz"), target[:, :, z], np.uint8)
    return zs


def build(work: str, structure: str = "putamen"):
    """Studies folder of the pool's slices (no labels yet), the annotator's masks, and the held-back set."""
    learnt, held_back, pool = STRUCTURES[structure]
    image, atlas = load_sample()
    studies, masks, held = (os.path.join(work, d) for d in ("studies", "drawn", "held_back"))
    for d in (studies, masks):
        os.makedirs(d, exist_ok=True)
    for z in pool:
        write_slice(os.path.join(studies, f"ax_{z:03d}.nii.gz"), image[:, :, z], np.float32)
        write_slice(os.path.join(masks, f"ax_{z:03d}.nii.gz"), atlas[:, :, z] == learnt, np.uint8)
    write_structure_slices(held, image, atlas == held_back)
    return studies, masks, held


def measure(model: str, held: str, known: str, out: str) -> dict:
    figures = {}
    path = out + "_held_back.json"
    assert evaluate.main(["--studies", held, "--labels", "all", "--model", model, "--out", path]) == 0
    figures["held_back"] = json.load(open(path))
    if known:
        path = out + "_known.json"
        assert evaluate.main(["--eval-set", os.path.join(SAMPLE, "eval"), "--groups", known, "--model", model,
                              "--out", path]) == 0
        figures["known"] = json.load(open(path))["groups"]
    return figures


def wait_for_run(url: str, runs_before: int, timeout_s: float) -> None:
    """Until the server has started a run after ``runs_before`` and no training runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        started = requests.get(f"{url}/info/", timeout=10).json()["continual_training"]["runs_started"]
        running = requests.get(f"{url}/train/?check_if_running=true", timeout=10).status_code == 200
        if started > runs_before and not running:
            last = requests.get(f"{url}/train/", timeout=10)
            if last.status_code == 200 and last.json().get("status") == "ERROR":
                raise RuntimeError("the training run failed:\n" + "\n".join(last.json().get("details", [])))
            return
        time.sleep(2)
    raise TimeoutError(f"no finished run within {timeout_s} s")


def gate_verdict(log_path: str) -> str:
    """The publish gate's last refusal, as the server logged it."""
    with open(log_path, errors="replace") as f:
        refusals = [line.strip().split("PE-MED: ", 1)[-1] for line in f if "not published" in line]
    return refusals[-1] if refusals else ""


def paired_change(before: dict, after: dict, key: str = "noc90", resamples: int = 10000) -> dict:
    """How ``key`` changed from one model's evaluation to another's on the same samples: the mean of the
    per-sample differences and its 95% bootstrap interval (an interval that holds 0: within noise)."""
    first = {(x["name"], x["structure"]): x[key] for x in before["per_sample"]}
    diffs = np.array([x[key] - first[(x["name"], x["structure"])] for x in after["per_sample"]], dtype=float)
    means = np.random.default_rng(0).choice(diffs, (resamples, diffs.size)).mean(axis=1)
    return {"mean": round(float(diffs.mean()), 2),
            "ci95": [round(float(v), 2) for v in np.percentile(means, [2.5, 97.5])], "n": int(diffs.size)}


def headline(summary: dict) -> dict:
    return {"n": summary["n_samples"], "noc85": round(summary["noc85"], 2), "noc90": round(summary["noc90"], 2),
            "dice_at": {k: round(v, 3) for k, v in summary["dice_at"].items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--structure", default="putamen", choices=sorted(STRUCTURES))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "continual"))
    p.add_argument("--counts", default="1,2,4,8")
    p.add_argument("--known", default="lesions,large", help="eval-set groups measured after each run ('' to skip)")
    p.add_argument("--keep-models", default="", help="a folder to keep each published model in")
    p.add_argument("--no-baseline", action="store_true", help="skip measuring the default model (0 saved)")
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="extra server conf, e.g. --conf pemed_train_lr 3e-4")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    os.makedirs(args.out, exist_ok=True)
    if args.keep_models:
        os.makedirs(args.keep_models, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pemed_continual_")
    studies, masks, held = build(work, args.structure)
    learnt, held_back, pool = STRUCTURES[args.structure]
    app = copy_app(os.path.join(work, "app"))
    shutil.copy(os.path.join(SAMPLE, "colin27_maps.npz"), os.path.join(app, "model", "colin27_maps.npz"))
    published_path = os.path.join(app, "model", "pemed_finetuned.pt")
    conf = {"pemed_train_quiet_s": 5, **dict(args.conf)}
    rows = []
    if not args.no_baseline:
        rows.append({"saved": 0, **measure(os.path.join(app, "model", "pemed.pt"), held, args.known,
                                           os.path.join(args.out, "k0"))})
        print(json.dumps({"saved": 0, "held_back": headline(rows[0]["held_back"])}), flush=True)
    with LocalServer(app, studies, os.path.join(args.out, "server.log"), conf=conf) as server:
        saved, serving, runs = 0, os.path.join(app, "model", "pemed.pt"), 0
        for k in counts:
            for z in pool[saved:k]:
                name = f"ax_{z:03d}"
                with open(os.path.join(masks, name + ".nii.gz"), "rb") as f:
                    r = requests.put(f"{server.url}/datastore/label?image={name}&tag=final",
                                     files={"label": (name + ".nii.gz", f)}, timeout=60)
                r.raise_for_status()
            last_save, saved = time.time(), k
            wait_for_run(server.url, runs, timeout_s=1200)
            runs += 1
            published = os.path.exists(published_path) and os.path.getmtime(published_path) > last_save
            row = {"saved": k, "published": published}
            if published:  # the gate let the run's model through: it serves now
                row["save_to_serving_s"] = round(os.path.getmtime(published_path) - last_save, 1)
                row["gate"] = torch.load(published_path, map_location="cpu", weights_only=True)["meta"].get("gate")
                serving = published_path
                if args.keep_models:
                    serving = os.path.join(args.keep_models, f"k{k}.pt")
                    shutil.copy(published_path, serving)
                row.update(measure(serving, held, args.known, os.path.join(args.out, f"k{k}")))
            else:  # the served model stays, and so do its figures
                row["gate"] = gate_verdict(os.path.join(args.out, "server.log"))
                row.update({key: rows[-1][key] for key in ("held_back", "known") if rows and key in rows[-1]})
                if "held_back" not in row:
                    row.update(measure(serving, held, args.known, os.path.join(args.out, f"k{k}")))
            rows.append(row)
            print(json.dumps({"saved": k, "published": published, "save_to_serving_s": row.get("save_to_serving_s"),
                              "gate": row["gate"], "held_back": headline(row["held_back"])}), flush=True)
        info = requests.get(f"{server.url}/info/", timeout=10).json()
    report = {"command": "python benchmarks/continual_curve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "conf": conf, "structure": args.structure, "pool_slices": pool, "learnt": learnt, "held_back": held_back,
              "continual_training": info.get("continual_training"),
              "rows": [{"saved": r["saved"], "published": r.get("published", True), "gate": r.get("gate"),
                        "save_to_serving_s": r.get("save_to_serving_s"),
                        "held_back": headline(r["held_back"]),
                        "known": {g: headline(s) for g, s in r.get("known", {}).items()},
                        "noc90_change_from_0_saved": changes(rows[0], r) if rows[0]["saved"] == 0 else None}
                       for r in rows]}
    with open(os.path.join(args.out, "curve.json"), "w") as f:
        json.dump(report, f, indent=1)
    plot(report, os.path.join(args.out, "curve.png"))
    print(json.dumps(report["rows"], indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def changes(before: dict, after: dict) -> dict:
    """NoC@90's paired change, held back and each known group, from one row's models to another's."""
    out = {"held_back": paired_change(before["held_back"], after["held_back"])}
    out.update({g: paired_change(before["known"][g], after["known"][g]) for g in after.get("known", {})})
    return out


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = [r["saved"] for r in report["rows"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    name = report.get("structure", "putamen")
    ax.plot(saved, [r["held_back"]["noc90"] for r in report["rows"]], marker="o", label=f"right {name} (held back)")
    for group in report["rows"][0]["known"]:
        ax.plot(saved, [r["known"][group]["noc90"] for r in report["rows"]], marker="s", ls="--", label=f"eval set: {group}")
    ax.set(xlabel=f"labelled slices saved (left {name})", ylabel="NoC@90 (20 = not reached)", ylim=(0, 20.5),
           xticks=saved, title="continual fine-tuning, nobody calls /train")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
