"""One fine-tuning run on saved slices, in-process with the server's trainer, then measured.

    python benchmarks/fine_tuning_run.py --out runs/ft/thalamus_k8 --structure thalamus [--k 8]
        [--epochs 6 --samples 64 --lr 1e-4 --replay 0.5 --rounds 3 --crop 0.5 --seed 0]
        [--zoom-far 0.05] [--prev-perturb 0.5 --prev-gain 4] [--parts decoder,palm_o,tsip] [--pool-eval]

The server's run (lib/configs/pemed.py) without the server: the default checkpoint, BatchNorm on its
stored statistics, the first ``k`` saved slices of ``benchmarks/continual_curve.py``'s structure
(k = 0: the data engine's replay alone, the control), no publish gate. Writes the run's model and its
NoC figures on the held-back slices (the structure's right side), on the eval set's ``--known`` groups
and, with ``--pool-eval``, on the 8 slices the curve saves; `result.json` sums them up. ``--epochs 0``
measures the start checkpoint itself.
"""

import argparse
import json
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from monai.utils import set_determinism  # noqa: E402

import continual_curve  # noqa: E402
import evaluate  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.studies import open_studies  # noqa: E402
from lib.trainers.pemed import PEMEDTrain  # noqa: E402

DEFAULT = os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt")


def studies_of(slices, source: str, masks: str, folder: str) -> str:
    os.makedirs(os.path.join(folder, "labels", "final"), exist_ok=True)
    for z in slices:
        name = f"ax_{z:03d}.nii.gz"
        shutil.copy(os.path.join(source, name), folder)
        shutil.copy(os.path.join(masks, name), os.path.join(folder, "labels", "final", name))
    return folder


def train(args, network, saved: str, model: str) -> int:
    """The server's fine-tuning run on the saved folder; its seconds."""
    task = PEMEDTrain(os.path.join(os.path.dirname(model), "run"), network, publish_path=model, size=256,
                      config={"max_epochs": args.epochs, "samples_per_epoch": args.samples, "lr": args.lr},
                      publish_each_epoch=False, max_rounds=args.rounds, crop_prob=args.crop, seed=args.seed,
                      replay_maps=os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz"),
                      replay_share=args.replay, trainable=[x for x in args.parts.split(",") if x] or None,
                      freeze_norm_statistics=True, zoom_far=args.zoom_far, prev_perturb=args.prev_perturb,
                      tracking=None, train_save_interval=10 ** 9)
    start = time.time()
    task({"max_epochs": args.epochs, "samples_per_epoch": args.samples, "lr": args.lr, "device": "cpu",
          "multi_gpu": False, "tracking": "None", "name": "run", "pretrained": False, "val_split": 0.1,
          "train_batch_size": 8, "val_batch_size": 8}, open_studies(saved))
    return round(time.time() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--structure", default="putamen", choices=sorted(continual_curve.STRUCTURES))
    p.add_argument("--model", default=DEFAULT, help="the checkpoint the run starts from")
    p.add_argument("--k", type=int, default=8, help="saved slices (0: replay only)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--samples", type=int, default=64, help="draws an epoch")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--replay", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--crop", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", default="", help="the network's parts that learn (default: all)")
    p.add_argument("--zoom-far", type=float, default=None, help="corrective rounds in serving's zoom-in view")
    p.add_argument("--prev-perturb", type=float, default=0.0)
    p.add_argument("--prev-gain", type=float, default=None, help="set the network's prev_gain before the run")
    p.add_argument("--known", default="lesions,large")
    p.add_argument("--pool-eval", action="store_true")
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    studies, masks, held = continual_curve.build(os.path.join(out, "data"), args.structure)
    pool = continual_curve.STRUCTURES[args.structure][2]
    saved = studies_of(pool[:args.k], studies, masks, os.path.join(out, "saved"))

    set_determinism(args.seed)
    network = load_checkpoint(args.model)[0]
    if args.prev_gain is not None:
        network.prev_gain = args.prev_gain
    model = os.path.join(out, "model.pt") if args.epochs else args.model
    result = {"command": "python benchmarks/fine_tuning_run.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.epochs:
        result["train_s"] = train(args, network, saved, model)
    figures = continual_curve.measure(model, held, args.known, os.path.join(out, "m"))
    result["held_back"] = continual_curve.headline(figures["held_back"])
    result["known"] = {g: continual_curve.headline(s) for g, s in figures.get("known", {}).items()}
    if args.pool_eval:
        folder = studies_of(pool, studies, masks, os.path.join(out, "pool"))
        assert evaluate.main(["--studies", folder, "--labels", "all", "--model", model,
                              "--out", os.path.join(out, "pool.json")]) == 0
        result["pool"] = continual_curve.headline(json.load(open(os.path.join(out, "pool.json"))))
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
