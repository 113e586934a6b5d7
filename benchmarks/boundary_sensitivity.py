"""How strict is Dice >= 0.90 on the evaluation samples? Dice of each true mask against itself
moved by one pixel, eroded by one pixel and dilated by one pixel: a segmentation whose boundary
is off by a single pixel everywhere scores about these figures.

    python benchmarks/boundary_sensitivity.py [--studies datasets/sample/slices/eval] [--labels held_out]
        [--out benchmarks/results/boundary_sensitivity.json]

Uses the same samples as ``apps/pemed/evaluate.py`` with the same options.
"""

import argparse
import json
import os
import sys

import numpy as np
from scipy import ndimage

APP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps", "pemed")
sys.path.insert(0, APP_DIR)

from evaluate import samples  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.studies import labelled, open_studies  # noqa: E402


def one_pixel_errors(mask: np.ndarray) -> dict:
    cross = ndimage.generate_binary_structure(2, 1)
    shifted = np.mean([dice(np.roll(mask, s, axis=a), mask) for a in (0, 1) for s in (-1, 1)])
    return {"shift_1px": float(shifted),
            "erode_1px": dice(ndimage.binary_erosion(mask, cross), mask),
            "dilate_1px": dice(ndimage.binary_dilation(mask, cross), mask)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", default="datasets/sample/slices/eval")
    p.add_argument("--labels", default="held_out")
    p.add_argument("--per-structure", type=int, default=3)
    p.add_argument("--min-area", type=int, default=30)
    p.add_argument("--out", default="")
    args = p.parse_args(argv)

    pairs = [(d["image"], d["label"]) for d in labelled(open_studies(args.studies))]
    masks = [mask for *_, mask in samples(pairs, args.labels, [0, 1, 2], args.per_structure, args.min_area)]
    rows = [one_pixel_errors(mask) for mask in masks]
    areas = [int(mask.sum()) for mask in masks]
    report = {"n_samples": len(rows), "area_px_median": float(np.median(areas))}
    for key in rows[0]:
        values = np.array([r[key] for r in rows])
        report[key] = {"median": round(float(np.median(values)), 3), "mean": round(float(values.mean()), 3),
                       "share_below_0.90": round(float((values < 0.9).mean()), 3)}
    print(json.dumps(report, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
