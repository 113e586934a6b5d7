"""The automatic methods learning a structure from an annotator's labels, as the server does it.

    python benchmarks/auto_learning_curve.py --out benchmarks/results/automatic/learning_curve.json
        [--structure Lingual_L] [--name "lingual gyrus (left)"] [--ks 1,2,4,8] [--models apps/pemed/model]

A structure the bundled models were never taught (an AAL structure outside AUTO_DEFAULT) is drawn
on k axial slices of the ch2bet volume and saved as one label under a name no atlas has (MONAI
Label's ``label_info``, as OHIF and 3D Slicer send it). The name joins the registry as a save does
(lib/named_labels.py), and the server's own continual run trains (Curriculum's ``curriculum_edges``
task, lib/configs/automatic.py, at the server's default budget), each k continuing from the model
the previous k published, as successive saves do. After each run: Curriculum's Dice on held-back
slices of the structure (every third of its axial slices, fixed before any is labelled, from its
small ends to its widest; the labelled slices are spread over the rest), normalised as
served (the whole volume), and PE-MED's protocol clicks to Dice 0.90 on them from Curriculum's mask
(as the served correction starts) against from scratch (20 when never). Also the wall time of each
run. Writes the JSON and a plot beside it (.png).
"""

import argparse
import logging
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluate_auto import clicks_to  # noqa: E402
from lib.automatic import as_previous_logits  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.configs.automatic import Curriculum  # noqa: E402
from lib.configs.labels import AAL_LABELS, AUTO_DEFAULT  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.predictor import PEMEDPredictor  # noqa: E402
from lib.studies import open_studies  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402

TEMPLATES = "/usr/share/mricron/templates"
MIN_AREA = 60  # pixels of the structure on a slice that is labelled or held back


def write_label(studies: str, truth: np.ndarray, slices, name: str, affine) -> None:
    """The label an annotator saves: the structure drawn on ``slices`` (axial), value 1, named."""
    label = np.zeros(truth.shape, np.uint8)
    label[:, :, slices] = truth[:, :, slices]
    path = os.path.join(studies, "drawn.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), path)
    store = open_studies(studies)
    store.save_label("ch2bet", path, "final", {"label_info": [{"name": name, "idx": 1}]})
    os.remove(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--structure", default="Lingual_L")
    p.add_argument("--name", default="lingual gyrus (left)")
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--held-every", type=int, default=3, help="every n-th slice of the structure is held back")
    p.add_argument("--models", default=os.path.join(ROOT, "apps", "pemed", "model"))
    p.add_argument("--work", default=os.path.join(ROOT, "runs", "auto_learning_curve"))
    p.add_argument("--conf", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="server conf keys for the run (auto_train_epochs, ...)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    if args.structure in AUTO_DEFAULT:
        p.error(f"{args.structure} is one of the structures the bundled models were taught")
    ks = [int(k) for k in args.ks.split(",")]

    volume_nii = nib.load(os.path.join(TEMPLATES, "ch2bet.nii.gz"))
    volume = np.asanyarray(volume_nii.dataobj).astype(np.float32)
    truth = (np.asanyarray(nib.load(os.path.join(TEMPLATES, "aal.nii.gz")).dataobj) == AAL_LABELS[args.structure])
    areas = truth.sum((0, 1))
    on = np.flatnonzero(areas >= MIN_AREA)
    held = [int(s) for s in on[1::args.held_every]]
    rest = np.array([s for s in on if s not in held])
    labelled = [int(s) for s in rest[np.linspace(0, len(rest) - 1, max(ks) + 2)[1:-1].round().astype(int)]]
    order = [labelled[i] for i in np.argsort([bin(i)[::-1] for i in range(len(labelled))])]  # spread at every k

    shutil.rmtree(args.work, ignore_errors=True)
    model_dir, studies = os.path.join(args.work, "model"), os.path.join(args.work, "studies")
    os.makedirs(model_dir)
    os.makedirs(os.path.join(studies, "labels", "final"))
    for f in ("curriculum_edges.pt", "foundation_decoder.pt", "curriculum_sam.pt"):
        if os.path.isfile(os.path.join(args.models, f)):
            shutil.copy(os.path.join(args.models, f), model_dir)
    shutil.copy(os.path.join(TEMPLATES, "ch2bet.nii.gz"), studies)
    conf = {"pemed_replay_maps": os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz"), **dict(args.conf)}
    config = Curriculum()
    config.init("curriculum", model_dir, conf, None)
    served = normalize_intensity(volume, "MR")  # as the server normalises the volume before slicing
    pemed = PEMEDPredictor(load_checkpoint(os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))[0])
    from_scratch = {s: clicks_to(pemed, served[:, :, s], truth[:, :, s])[0] for s in held}

    def evaluate(predictor) -> dict:
        rows = []
        for s in held:
            image, gt = served[:, :, s], truth[:, :, s]
            with torch.no_grad():
                mask = predictor.segment(image, args.name, ("ch2bet", 2, s)).mask
            start = as_previous_logits(mask) if mask.any() else None
            rows.append({"slice": s, "area": int(gt.sum()), "dice": dice(gt, mask),
                         "clicks_to_90_from_auto": clicks_to(pemed, image, gt, start)[0],
                         "clicks_to_90_from_scratch": from_scratch[s]})
        return {"dice": float(np.mean([r["dice"] for r in rows])),
                "noc90_from_auto": float(np.mean([r["clicks_to_90_from_auto"] for r in rows])),
                "noc90_from_scratch": float(np.mean(list(from_scratch.values()))), "rows": rows}

    config.names.learn([args.name])  # as the first save does
    curve = []
    for k in ks:
        write_label(studies, truth, sorted(order[:k]), args.name, volume_nii.affine)
        task = config.trainer()["curriculum_edges"]
        t = time.time()
        task({"device": "cpu", "name": "curriculum_edges", "multi_gpu": False, "tracking": "None"},
             open_studies(studies))
        run_s = time.time() - t
        infer = config.infer()["curriculum"]
        point = {"k": k, "labelled_slices": sorted(order[:k]), "run_s": round(run_s, 1),
                 **evaluate(infer.predictor("cpu"))}
        curve.append(point)
        print(f"k={k}: run {run_s:.0f} s, Dice {point['dice']:.3f}, NoC@90 from auto {point['noc90_from_auto']:.2f} "
              f"/ from scratch {point['noc90_from_scratch']:.2f}", flush=True)
    summary = {"command": " ".join(["python", "benchmarks/auto_learning_curve.py"] + (argv or sys.argv[1:])),
               "structure": args.structure, "name": args.name, "held_back_slices": held,
               "structure_slices": [int(on.min()), int(on.max())], "budget": config.budget, "curve": curve}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    plot(summary, os.path.splitext(args.out)[0] + ".png")
    return 0


def plot(summary: dict, path: str) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [c["k"] for c in summary["curve"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(ks, [c["dice"] for c in summary["curve"]], "o-")
    a.set(xlabel="labelled slices saved", ylabel="Dice, held-back slices", ylim=(0, 1), xscale="log", xticks=ks,
          xticklabels=ks, title=f"curriculum learns '{summary['name']}'")
    b.plot(ks, [c["noc90_from_auto"] for c in summary["curve"]], "o-", label="PE-MED from the automatic mask")
    b.plot(ks, [c["noc90_from_scratch"] for c in summary["curve"]], "s--", label="PE-MED from scratch")
    b.set(xlabel="labelled slices saved", ylabel="clicks to Dice 0.90", xscale="log", xticks=ks, xticklabels=ks,
          ylim=(0, 20))
    b.legend(fontsize=8)
    for axes in (a, b):
        axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
