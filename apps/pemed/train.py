"""Train a PE-MED network on a MONAI Label studies folder, outside the server (same trainer task).

    python apps/pemed/train.py --studies datasets/sample/slices/train --out apps/pemed/model/pemed.pt \
        [--modules all] [--epochs 40] [--batch 8] [--device cuda|cpu] [--limit N] [--init CKPT] \
        [--palm-scale sqrt_d|d]

The held-out AAL structures (lib/configs/labels.py) are never training targets. Writes the
checkpoint after every epoch (so a long run can be stopped and still leaves weights) and
``<out without .pt>.train.json`` with the command, wall time and final metrics.
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
from lib.networks.pemed import ABLATIONS, DEFAULT_PALM_SCALE, PALM_SCALES, PEMEDNet, build_pemed  # noqa: E402
from lib.studies import labelled, open_studies  # noqa: E402
from lib.trainers.pemed import PEMEDTrain  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--modules", default="all", choices=sorted(ABLATIONS))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--modality", default="MR")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--limit", type=int, default=0, help="use only the first N studies (smoke runs)")
    p.add_argument("--val-split", type=float, default=0.1)
    p.add_argument("--init", default="", help="start from this checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--palm-scale", choices=sorted(PALM_SCALES), default=None,
                   help=f"PALM attention scale, 1/d_k or 1/sqrt(d_k) (default: {DEFAULT_PALM_SCALE}, or the --init checkpoint's)")
    p.add_argument("--crop-prob", type=float, default=0.5,
                   help="share of training samples cropped around the target, as zoom-in shows them")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")

    set_determinism(seed=args.seed)
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
    out = os.path.abspath(args.out)
    run_dir = os.path.splitext(out)[0] + "_run"
    task = PEMEDTrain(run_dir, network, publish_path=out, size=args.size, modality=args.modality,
                      exclude_labels=HELD_OUT_VALUES, lr=args.lr, crop_prob=args.crop_prob, tracking=None,
                      amp=args.device.startswith("cuda"), train_save_interval=10 ** 9)
    start = time.time()
    stats = task({"max_epochs": args.epochs, "train_batch_size": args.batch, "val_batch_size": args.batch,
                  "device": args.device, "train_ds": datalist, "val_split": args.val_split,
                  "multi_gpu": False, "tracking": "None", "name": "run", "pretrained": False}, datastore)
    wall = time.time() - start
    card = {"command": " ".join(["python", "apps/pemed/train.py"] + (argv if argv is not None else sys.argv[1:])),
            "modules": args.modules, "epochs": args.epochs, "crop_prob": args.crop_prob, "init": args.init,
            "palm_scale": network.palm_scale,
            "batch": args.batch, "lr": args.lr, "size": args.size,
            "n_studies": len(datalist), "device": args.device, "torch_threads": torch.get_num_threads(),
            "wall_time_s": round(wall, 1), "checkpoint_meta": load_checkpoint(out)[1],
            "best_val_mean_dice": stats.get("best_metric")}
    with open(os.path.splitext(out)[0] + ".train.json", "w") as f:
        json.dump(card, f, indent=1)
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
