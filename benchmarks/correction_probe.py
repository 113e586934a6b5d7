"""How a model answers a corrective click, on every labelled slice of a studies folder.

    python benchmarks/correction_probe.py --studies FOLDER [--model M] [--magnitude 4]

Two probes, with the app's serving settings and its intensity normalisation:
- the second click: the NoC protocol's first click, then its second; the masks' areas against the
  target's, the second click's sign and Dice before and after it (a second click should not undo the
  first);
- a mask one band off: the previous logits are the target grown (or shrunk) by 2 pixels, +-magnitude
  inside/outside, and the NoC protocol's next click on that band (negative on a grown mask, positive
  on a shrunk one). A model that refines keeps the mask and fixes the band (Dice up); one that does
  not starts over from its clicks.
"""

import argparse
import glob
import os
import sys

import numpy as np
import torch
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import evaluate  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.predictor import SERVE_DEFAULTS, PEMEDPredictor  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402
from lib.transforms.transforms import AUTO, normalize_intensity  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", required=True)
    p.add_argument("--model", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    p.add_argument("--magnitude", type=float, default=4.0, help="the band probe's previous logits, +-")
    args = p.parse_args(argv)
    network, _ = load_checkpoint(args.model)
    predictor = PEMEDPredictor(network, "cpu", 256, **SERVE_DEFAULTS)
    second, band = [], []
    for path in sorted(glob.glob(os.path.join(args.studies, "*.nii.gz"))):
        image, label = evaluate.load_pair(path, os.path.join(args.studies, "labels", "final", os.path.basename(path)))
        gt = label > 0
        predictor.set_image(normalize_intensity(image, AUTO))  # as evaluate.py and the server do
        first = next_eval_click(gt, np.zeros_like(gt))
        one = predictor.predict([first])
        mask1 = one.mask()
        click = next_eval_click(gt, mask1, [first])
        mask2 = predictor.predict([first, click], one.logits).mask()
        second.append((mask1.sum() / gt.sum(), click.positive, dice(gt, mask1), dice(gt, mask2), mask2.sum() / gt.sum()))
        row = []
        for previous in (ndimage.binary_dilation(gt, iterations=2), ndimage.binary_erosion(gt, iterations=2)):
            logits = torch.from_numpy(np.where(previous, args.magnitude, -args.magnitude).astype(np.float32))[None, None]
            after = predictor.predict([first, next_eval_click(gt, previous, [first])], logits).mask()
            row += [dice(gt, previous), dice(gt, after)]
        band.append(row)
    second, band = np.array(second, dtype=float), np.array(band)
    for positive, name in ((1, "positive"), (0, "negative")):
        rows = second[second[:, 1] == positive]
        if len(rows):
            print(f"second click {name} on {len(rows)} of {len(second)} slices: first mask {rows[:, 0].mean():.2f}x the "
                  f"target, Dice {rows[:, 2].mean():.3f} -> {rows[:, 3].mean():.3f}, mask {rows[:, 4].mean():.2f}x the target")
    print(f"grown by 2 px, a negative click on the band: Dice {band[:, 0].mean():.3f} -> {band[:, 1].mean():.3f}; "
          f"shrunk by 2 px, a positive click: {band[:, 2].mean():.3f} -> {band[:, 3].mean():.3f} "
          f"(previous logits +-{args.magnitude:g}, {len(band)} slices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
