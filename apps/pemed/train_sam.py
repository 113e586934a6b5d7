"""Train the SAM-architecture foundation model (lib/networks/sam.py) from the training-data engine or
a studies folder, on the server's trainer machinery (lib/trainers/sam.py: BasicTrainTask, ignite).

    python apps/pemed/train_sam.py --engine --out apps/pemed/model/sam_tiny.pt [--epochs 40]
        [--samples-per-epoch 512] [--batch 8] [--lr 4e-4] [--resume] [--device cuda|cpu] [--workers N]
    python apps/pemed/train_sam.py --studies DIR --out FILE.pt --init FILE.pt [--kind vit_b]

The default kind is ``pemed_sam_tiny`` from random weights; ``--init`` starts from a checkpoint (the
app's, or a user's SAM / MedSAM file with ``--kind``). Like train.py it writes the checkpoint after
every epoch, ``<out>.train.json`` (command, wall time, metrics) and, with ``--resume``,
``<out>.resume.pt`` to continue in a later sitting.
"""

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from monai.utils import set_determinism  # noqa: E402

from lib.configs.labels import HELD_OUT_VALUES  # noqa: E402
from lib.foundation import load_foundation  # noqa: E402
from lib.networks.sam import SAM_KINDS, build_sam, spec_of  # noqa: E402
from lib.trainers.sam import SAMTrain  # noqa: E402
from train import add_run_arguments, fresh_resume_path, train_request, training_items, write_card  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--studies", help="a MONAI Label studies folder with labels/final")
    source.add_argument("--engine", action="store_true", help="draw samples from the training-data engine")
    p.add_argument("--out", required=True)
    p.add_argument("--kind", default="pemed_sam_tiny", choices=sorted(SAM_KINDS))
    p.add_argument("--init", default="", help="start from this checkpoint")
    p.add_argument("--samples-per-epoch", type=int, default=512)
    p.add_argument("--val-samples", type=int, default=32)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--rounds", type=int, default=3, help="the most corrective clicks a sample gets")
    p.add_argument("--crop-prob", type=float, default=0.3, help="share of samples cropped around the target")
    p.add_argument("--exclude-held-out", action="store_true", help="--studies: never train on the held-out AAL values")
    add_run_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    set_determinism(seed=args.seed)

    try:
        engine, datastore, datalist, val_ds = training_items(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sam = load_foundation(args.init, args.kind)[0] if args.init else build_sam(spec_of(args.kind))
    out = os.path.abspath(args.out)
    resume_path = fresh_resume_path(out, args.resume)
    task = SAMTrain(os.path.splitext(out)[0] + "_run", sam, out, size=sam.spec.img_size, max_rounds=args.rounds,
                    exclude_labels=HELD_OUT_VALUES if args.exclude_held_out else (), lr=args.lr,
                    crop_prob=args.crop_prob, engine=engine, resume_path=resume_path, seed=args.seed,
                    num_workers=args.workers, amp=args.device.startswith("cuda"), tracking=None,
                    train_save_interval=10 ** 9)
    request = train_request(args, datalist, val_ds, engine, 0.1)
    start = time.time()
    stats = task(request, datastore)
    card = {"command": " ".join(["python", "apps/pemed/train_sam.py"] + (argv if argv is not None else sys.argv[1:])),
            "kind": sam.spec.kind, "init": args.init, "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
            "samples_per_epoch": args.samples_per_epoch, "device": args.device,
            "torch_threads": torch.get_num_threads(), "wall_time_s": round(time.time() - start, 1),
            "best_val_mean_dice": stats.get("best_metric")}
    return write_card(out, card)


if __name__ == "__main__":
    sys.exit(main())
