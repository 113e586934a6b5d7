"""Where a model's Dice levels off on the held-out AAL structures, one structure at a time.

    python benchmarks/held_out_plateau.py [--model M] [--structures Caudate_R,Insula_R,...] [--out F.json]

Each structure's axial slices of the sample's ch2bet (those with >= 30 pixels of it) go through the NoC
protocol (`apps/pemed/evaluate.py`); printed per structure: slices, mean area, NoC@85/90 and the mean
Dice after clicks 1, 3, 5, ..., 19. A Dice that levels off near 0.90 makes NoC@90 count the clicks spent
hovering at the threshold, which fine-tuning on a few labels has to move before NoC@90 can fall.
"""

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import continual_curve  # noqa: E402
import evaluate  # noqa: E402
from lib.configs.labels import AAL_LABELS, HELD_OUT  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    p.add_argument("--structures", default=",".join(n for n in HELD_OUT if n.endswith("_R")))
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    image, atlas = continual_curve.load_sample()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.structures.split(","):
            target = atlas == AAL_LABELS[name]
            folder = os.path.join(work, name)
            zs = continual_curve.write_structure_slices(folder, image, target)
            out = os.path.join(work, name + ".json")
            assert evaluate.main(["--studies", folder, "--labels", "all", "--model", args.model, "--out", out]) == 0
            summary = json.load(open(out))
            rows.append({"structure": name, "slices": len(zs), "mean_area": round(float(target[:, :, zs].sum() / len(zs))),
                         "noc85": round(summary["noc85"], 2), "noc90": round(summary["noc90"], 2),
                         "dice_after": {i + 1: round(d, 3) for i, d in enumerate(summary["dice_curve"]) if i % 2 == 0}})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": "python benchmarks/held_out_plateau.py " + " ".join(argv or sys.argv[1:]),
                       "model": args.model, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
