"""Train a PE-MED network outside the server, with the server's trainer task (BasicTrainTask, ignite).

    python apps/pemed/train.py --engine --out apps/pemed/model/pemed.pt [--samples-per-epoch 512] [--resume]
    python apps/pemed/train.py --studies DIR --out FILE.pt [--exclude-held-out]
        [--modules all] [--epochs 40] [--batch 8] [--device cuda|cpu] [--limit N] [--init CKPT] [--palm-scale sqrt_d|d]

``--engine`` draws every sample from the training-data engine (lib/data: Colin27's label maps,
SynthSeg-style contrasts, lesions, superpixels; the held-out AAL structures are never targets).
``--studies`` trains on a MONAI Label studies folder; ``--exclude-held-out`` drops the held-out AAL
values from its labels, which is right for the bundled sample and wrong for anyone else's labels.
Writes the checkpoint after every epoch and ``<out without .pt>.train.json`` with the command, wall
time and final metrics. With ``--resume``, ``<out without .pt>.resume.pt`` (written after every
epoch: weights, optimiser, scheduler, epoch, random states) continues the run in a later sitting.
"""

import argparse
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from monai.utils import set_determinism  # noqa: E402

from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.configs.labels import HELD_OUT_VALUES  # noqa: E402
from lib.data.atlases import DEFAULT_SRC, load_maps  # noqa: E402
from lib.data.engine import DEFAULT_KIND_WEIGHTS, DataEngine  # noqa: E402
from lib.networks.pemed import ABLATIONS, DEFAULT_PALM_SCALE, PALM_SCALES, PEMEDNet, build_pemed  # noqa: E402
from lib.studies import labelled, open_studies  # noqa: E402
from lib.trainers.pemed import PEMEDTrain  # noqa: E402


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Validation draws use seeds no training draw uses: training seeds come from the transform's random
# stream, below 2**31 (the 11-epoch engine run in the model card still used 10**9 + i, inside that range).
VAL_SEED_BASE = 2 ** 31


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options train_sam.py and train_auto.py share: where the engine's maps are, resuming,
    loader processes, device and seed."""
    p.add_argument("--mricron", default=DEFAULT_SRC, help="--engine: mricron-data's templates folder")
    p.add_argument("--maps-cache", default=os.path.join(REPO, "datasets", "sample", "colin27_maps.npz"))
    p.add_argument("--resume", action="store_true", help="continue from <out>.resume.pt if it exists")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)


def training_items(args, **engine_options):
    """(engine, datastore, train items, validation items) for ``--engine`` or ``--studies``; engine
    runs draw ``--samples-per-epoch`` fresh items and ``--val-samples`` fixed ones. Raises
    ValueError when a studies folder has no labels."""
    if args.engine:
        engine = DataEngine(load_maps(args.mricron, args.maps_cache), **engine_options)
        return (engine, None, [{"seed": i, "fixed": False} for i in range(args.samples_per_epoch)],
                [{"seed": VAL_SEED_BASE + i, "fixed": True} for i in range(args.val_samples)])
    datastore = open_studies(args.studies)
    datalist = labelled(datastore)
    if not datalist:
        raise ValueError(f"no labelled studies in {args.studies}")
    return None, datastore, datalist, None


def fresh_resume_path(out: str, resume: bool) -> str:
    """<out>.resume.pt, removed unless the run resumes: a fresh run must not pick up an old one's state."""
    path = os.path.splitext(out)[0] + ".resume.pt"
    if not resume and os.path.exists(path):
        os.remove(path)
    return path


def train_request(args, datalist, val_ds, engine, val_split: float) -> dict:
    """The request a command-line run hands its BasicTrainTask: budget, device, items; engine runs
    validate on their fixed draws; ``--workers`` loads in processes (the engine is numpy/scipy under
    the GIL, so threads would not help)."""
    request = {"max_epochs": args.epochs, "train_batch_size": args.batch, "val_batch_size": args.batch,
               "device": args.device, "train_ds": datalist, "val_split": val_split,
               "multi_gpu": False, "tracking": "None", "name": "run", "pretrained": False}
    if engine is not None:
        request.update({"val_ds": val_ds, "dataset": "Dataset"})
    if args.workers:
        request["dataloader"] = "DataLoader"
    return request


def write_card(out: str, card: dict) -> int:
    """<out without .pt>.train.json: the run's command, budget, wall time and figures; printed too."""
    with open(os.path.splitext(out)[0] + ".train.json", "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps(card, indent=1))
    return 0


def parse_weights(text: str) -> dict:
    """"lesion=3,brain=1" -> {"lesion": 3.0, "brain": 1.0}; DataEngine checks the kinds and values."""
    weights = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected kind=weight, got {item!r}")
        weights[name.strip()] = float(value)
    return weights


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--studies", help="a MONAI Label studies folder with labels/final")
    source.add_argument("--engine", action="store_true", help="draw samples from the training-data engine")
    p.add_argument("--exclude-held-out", action="store_true", help="--studies: never train on the held-out AAL values")
    p.add_argument("--samples-per-epoch", type=int, default=512, help="--engine: draws per epoch")
    p.add_argument("--val-samples", type=int, default=64, help="--engine: fixed validation draws")
    p.add_argument("--real-prob", type=float, default=0.25, help="--engine: share of real Colin27 slices")
    p.add_argument("--kind-weights", default="",
                   help="--engine: target-kind weights that replace the defaults', e.g. lesion=3,brain=1 "
                        f"(defaults: {','.join(f'{k}={v}' for k, v in DEFAULT_KIND_WEIGHTS.items())})")
    p.add_argument("--mricron", default=DEFAULT_SRC, help="--engine: mricron-data's templates folder")
    p.add_argument("--maps-cache", default=os.path.join(REPO, "datasets", "sample", "colin27_maps.npz"),
                   help="--engine: where the label maps on Colin27's grid are kept after the first build")
    p.add_argument("--resume", action="store_true", help="continue from <out>.resume.pt if it exists")
    p.add_argument("--workers", type=int, default=0,
                   help="data-loading processes (0: draw in the training process; a GPU run wants several)")
    p.add_argument("--out", required=True)
    p.add_argument("--modules", default="all", choices=sorted(ABLATIONS))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--modality", default="auto", help="--studies: auto (per image), MR or CT")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, default=0, help="use only the first N studies (smoke runs)")
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--init", default="", help="start from this checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--palm-scale", choices=sorted(PALM_SCALES), default=None,
                   help=f"PALM attention scale, 1/d_k or 1/sqrt(d_k) (default: {DEFAULT_PALM_SCALE}, or the --init checkpoint's)")
    p.add_argument("--zoom-far", type=float, default=None,
                   help="train corrective rounds in serving's zoom-in view, with this zoom_far (serving's: 0.05); "
                        "unset: every round in the image's frame, as the default v2 was trained")
    p.add_argument("--prev-perturb", type=float, default=0.0,
                   help="share of samples whose last corrective round starts from their target grown, shrunk or "
                        "shifted by a few pixels (ClickSimulation)")
    p.add_argument("--prev-gain", type=float, default=None,
                   help="the network's gain on a corrective step's previous logits (stored in the checkpoint; "
                        "default: the --init checkpoint's, else 1)")
    p.add_argument("--crop-prob", type=float, default=0.5,
                   help="share of training samples cropped around the target, as zoom-in shows them")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")

    set_determinism(seed=args.seed)
    engine, val_ds, datastore = None, None, None
    if args.engine:
        maps = load_maps(args.mricron, args.maps_cache)
        try:
            weights = {**DEFAULT_KIND_WEIGHTS, **parse_weights(args.kind_weights)}
            engine = DataEngine(maps, kind_weights=weights, real_prob=args.real_prob)
        except ValueError as e:  # the weights are the only input here the engine can refuse
            print(f"error: --kind-weights: {e}", file=sys.stderr)
            return 2
        datalist = [{"seed": i, "fixed": False} for i in range(args.samples_per_epoch)]
        val_ds = [{"seed": VAL_SEED_BASE + i, "fixed": True} for i in range(args.val_samples)]
    else:
        datastore = open_studies(args.studies)
        datalist = labelled(datastore)
        if args.limit:
            datalist = datalist[: args.limit]
        if not datalist:
            print(f"error: no labelled studies in {args.studies}", file=sys.stderr)
            return 2
    if args.init:
        network = load_checkpoint(args.init)[0]
        if args.palm_scale:  # the scale is not a weight: same state dict, other attention temperature
            state = network.state_dict()
            network = build_pemed({**network.describe(), "palm_scale": args.palm_scale})
            network.load_state_dict(state)
    else:
        network = PEMEDNet(1, ABLATIONS[args.modules], palm_scale=args.palm_scale or DEFAULT_PALM_SCALE)
    if args.prev_gain is not None:
        network.prev_gain = args.prev_gain
    out = os.path.abspath(args.out)
    run_dir = os.path.splitext(out)[0] + "_run"
    resume_path = fresh_resume_path(out, args.resume)
    task = PEMEDTrain(run_dir, network, publish_path=out, size=args.size, modality=args.modality,
                      exclude_labels=HELD_OUT_VALUES if args.exclude_held_out else (), lr=args.lr,
                      crop_prob=args.crop_prob, engine=engine, resume_path=resume_path, seed=args.seed,
                      num_workers=args.workers, zoom_far=args.zoom_far, prev_perturb=args.prev_perturb, tracking=None,
                      amp=args.device.startswith("cuda"), train_save_interval=10 ** 9)
    request = train_request(args, datalist, val_ds, engine, args.val_split)
    start = time.time()
    stats = task(request, datastore)
    wall = time.time() - start
    card = {"command": " ".join(["python", "apps/pemed/train.py"] + (argv if argv is not None else sys.argv[1:])),
            "modules": args.modules, "epochs": args.epochs, "crop_prob": args.crop_prob, "zoom_far": args.zoom_far, "prev_perturb": args.prev_perturb, "prev_gain": network.prev_gain, "init": args.init,
            "kind_weights": engine.kind_weights if engine is not None else None,
            "palm_scale": network.palm_scale,
            "batch": args.batch, "lr": args.lr, "size": args.size,
            "n_studies": len(datalist), "engine": args.engine, "device": args.device, "torch_threads": torch.get_num_threads(),
            "wall_time_s": round(wall, 1), "checkpoint_meta": load_checkpoint(out)[1],
            "best_val_mean_dice": stats.get("best_metric")}
    return write_card(out, card)


if __name__ == "__main__":
    sys.exit(main())
