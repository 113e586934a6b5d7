"""The paper's ablation table from one command: train every module configuration with the same
budget (one train.py run each, from scratch, with its default crops around the target), evaluate
each (and GrabCut) with the NoC protocol on the held-out structures, zoomed in as the app is.

    python apps/pemed/ablation.py --train datasets/sample/slices/train --eval datasets/sample/slices/eval \
        --out runs/ablation [--epochs 6] [--batch 8] [--lr 1e-3] [--rows baseline,sl,palm_i,palm_o,palm,tsip,all]
        [--device cuda --workers 2]

``--train engine`` trains every row from the training-data engine (train.py --engine,
``--samples-per-epoch`` draws an epoch) instead of a studies folder (whose held-out AAL values are
never targets).

Writes OUT/<row>.pt, OUT/<row>.json (+ .png) per row and OUT/ablation.md with the table. A row
whose OUT/<row>.json exists is not run again, so a long table can be built over several sittings
(an interrupted row starts over); delete the file to redo the row.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import evaluate  # noqa: E402
import train  # noqa: E402
from lib.networks.pemed import ABLATIONS  # noqa: E402

COLUMNS = ("1", "3", "5", "10")


def table(results: dict) -> str:
    lines = ["| row | Dice@1 | Dice@3 | Dice@5 | Dice@10 | NoC@85 | NoC@90 | NoF@90 | n |", "|---|---|---|---|---|---|---|---|---|"]
    for row, s in results.items():
        dice = " | ".join(f"{s['dice_at'].get(k, float('nan')):.3f}" for k in COLUMNS)
        lines.append(f"| {row} | {dice} | {s['noc85']:.2f} | {s['noc90']:.2f} | {s['nof90']} | {s['n_samples']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="a studies folder, or 'engine'")
    p.add_argument("--samples-per-epoch", type=int, default=512, help="with --train engine")
    p.add_argument("--eval", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", default=",".join(ABLATIONS))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--labels", default="held_out")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--per-structure", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per training run")
    p.add_argument("--maps-cache", default="", help="with --train engine: train.py's --maps-cache")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ABLATIONS)
    if unknown:
        print(f"error: unknown rows {sorted(unknown)}; choose from {sorted(ABLATIONS)}", file=sys.stderr)
        return 2
    common_eval = ["--studies", args.eval, "--labels", args.labels, "--max-clicks", str(args.max_clicks),
                   "--per-structure", str(args.per_structure), "--size", str(args.size), "--device", args.device]
    results = {}
    for row in rows:
        ckpt, out = os.path.join(args.out, f"{row}.pt"), os.path.join(args.out, f"{row}.json")
        if os.path.exists(out):
            record = os.path.join(args.out, f"{row}.train.json")
            trained = json.load(open(record)) if os.path.exists(record) else {}
            if (trained.get("epochs"), trained.get("batch")) != (args.epochs, args.batch):
                print(f"error: {out} was trained {trained.get('epochs', '?')} epochs of batch {trained.get('batch', '?')} "
                      f"(from {record}), not {args.epochs} of {args.batch}; delete it or pick another --out",
                      file=sys.stderr)
                return 2
            print(f"{row}: kept {out}")
            results[row] = json.load(open(out))
            continue
        if args.train == "engine":
            source = ["--engine", "--samples-per-epoch", str(args.samples_per_epoch)]
            source += ["--maps-cache", args.maps_cache] if args.maps_cache else []
        else:
            source = ["--studies", args.train, "--exclude-held-out"]
        rc = train.main(source + ["--out", ckpt, "--modules", row, "--epochs", str(args.epochs),
                         "--batch", str(args.batch), "--lr", str(args.lr), "--size", str(args.size), "--device", args.device,
                         "--workers", str(args.workers), "--seed", "0"])
        if rc:
            return rc
        if evaluate.main(common_eval + ["--model", ckpt, "--out", out]):
            return 1
        results[row] = json.load(open(out))
    out = os.path.join(args.out, "grabcut.json")
    if os.path.exists(out) or evaluate.main(common_eval + ["--model", "grabcut_clicks", "--out", out]) == 0:
        results["grabcut"] = json.load(open(out))
    text = (f"Ablation: every row trained {args.epochs} epochs (batch {args.batch}) on {args.train}; "
            f"evaluated on {args.eval} ({args.labels} structures), Dice-based NoC.\n\n" + table(results) + "\n")
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
