"""The foundation model alone, given prompts drawn from the ground truth, on the automatic methods'
evaluation samples (apps/pemed/evaluate_auto.py's: held-out named structures, unseen engine draws
and real slices): how good a prior it is before any method chooses its prompts.

    python benchmarks/foundation_prompts.py --out benchmarks/results/automatic/foundation.json
        [--source litemedsam] [--kind K] [--decoder FILE ...] [--synthetic 2] [--real 1]

Rows per foundation variant (the source as shipped, then the source with each ``--decoder``):
``box`` (the ground truth's bounding box), ``points16`` (8 positive + 8 negative points drawn from
the ground truth, ProMISe's GT-points mode without pattern tokens), ``box_points16`` (both). The
encoder runs once per sample, shared by every variant (one image encoder, several decoders).
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "apps", "pemed"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evaluate_auto import samples  # noqa: E402
from lib.configs.labels import AUTO_DEFAULT  # noqa: E402
from lib.data.atlases import DEFAULT_SRC, load_maps  # noqa: E402
from lib.data.engine import DataEngine  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.foundation import DEFAULT_SOURCE, SAMPredictor, load_decoder, load_foundation  # noqa: E402
from lib.prompts.boxes import box_of, ground_truth_points  # noqa: E402


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=DEFAULT_SOURCE)
    p.add_argument("--kind", default=None)
    p.add_argument("--decoder", action="append", default=[], help="a fine-tuned prompt encoder + mask decoder")
    p.add_argument("--names", default=",".join(AUTO_DEFAULT))
    p.add_argument("--synthetic", type=int, default=2)
    p.add_argument("--real", type=int, default=1)
    p.add_argument("--mricron", default=DEFAULT_SRC)
    p.add_argument("--maps-cache", default=os.path.join(REPO, "datasets", "sample", "colin27_maps.npz"))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    names = [n for n in args.names.split(",") if n]
    engine = DataEngine(load_maps(args.mricron, args.maps_cache))
    base, _ = load_foundation(args.source, args.kind)
    predictor = SAMPredictor(base, cache_mb=64)
    variants = {"shipped": None}
    for d in args.decoder:  # named by the file's name, or by its path where two share a name
        variants[os.path.basename(d) if os.path.basename(d) not in variants else os.path.relpath(d)] = \
            load_decoder(d, base)
    rng = np.random.default_rng(0)
    rows, t0 = [], time.time()
    for i, (name, source, image, gt) in enumerate(samples(engine, names, args.synthetic, args.real)):
        emb = predictor.embed(image)
        box, points = box_of(gt), ground_truth_points(gt, rng)
        row = {"name": name, "source": source, "area": int(gt.sum())}
        for variant, model in variants.items():
            for prompt, kw in (("box", dict(box=box)), ("points16", dict(clicks=points)),
                               ("box_points16", dict(box=box, clicks=points))):
                row[f"{variant}/{prompt}"] = dice(gt, predictor.predict(emb, model=model, **kw).logits > 0)
        rows.append(row)
        print(f"{i + 1}: {name} {source} area {row['area']}: " +
              " ".join(f"{k} {v:.3f}" for k, v in row.items() if "/" in k) + f" ({time.time() - t0:.0f} s)",
              flush=True)
    keys = [k for k in rows[0] if "/" in k]
    summary = {
        "command": " ".join(["python", "benchmarks/foundation_prompts.py"] + (argv if argv is not None else sys.argv[1:])),
        "source": args.source, "n_samples": len(rows), "wall_s": round(time.time() - t0, 1),
        "mean_dice": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "by_source": {s: {k: float(np.mean([r[k] for r in rows if r["source"].startswith(s)])) for k in keys}
                      for s in ("synth", "ch2")},
        "per_structure": {n: {k: float(np.mean([r[k] for r in rows if r["name"] == n])) for k in keys} for n in names},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("| variant / prompt | Dice |\n|---|---|")
    for k, v in summary["mean_dice"].items():
        print(f"| {k} | {v:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
