"""Does the uncertainty strategy pick the images the model does worse on?

    python benchmarks/active_learning.py --out benchmarks/results/active_learning.json

On the sample's evaluation slices (datasets/sample/slices/eval: ch2bet slices along three axes with
their AAL label maps), each image gets the score the app's scoring method gives it, from clicks
placed without labels (lib/activelearning/uncertainty.py), and the Dice the model reaches at those
same clicks against the AAL structure each lands on (clicks on unlabelled tissue are skipped). The
report: Spearman's rank correlation between score and Dice over images and over clicks, and the mean
Dice of the images the strategy would serve first and last.

With ``--eval-groups lesions,parcels_synth`` the images are instead the evaluation set's (one target
each, synthetic contrasts, noise and bias fields: images that differ in how hard they are), scored the
same label-free way, and an image's Dice is its target's mean Dice over the first ``--clicks`` clicks
of the NoC protocol (lib/evaluation.py), as an annotator would reach it.
"""

import argparse
import glob
import json
import os
import sys

import nibabel as nib
import numpy as np
from scipy.stats import spearmanr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))
from lib.activelearning.uncertainty import click_uncertainties, seed_points  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.evaluation import PredictorSegmenter, dice, run_protocol  # noqa: E402
from lib.predictor import SERVE_DEFAULTS, PEMEDPredictor  # noqa: E402
from lib.transforms.transforms import detect_modality, normalize_intensity  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=os.path.join(ROOT, "datasets", "sample", "slices", "eval"))
    parser.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--eval-groups", default="", help="evaluation-set groups instead of --images")
    parser.add_argument("--clicks", type=int, default=5, help="with --eval-groups: protocol clicks per image")
    parser.add_argument("--out", default="benchmarks/results/active_learning.json")
    args = parser.parse_args()

    network, _ = load_checkpoint(args.checkpoint)
    predictor = PEMEDPredictor(network, "cpu", 256, **SERVE_DEFAULTS)
    folders = ([os.path.join(ROOT, "datasets", "sample", "eval", g) for g in args.eval_groups.split(",")]
               if args.eval_groups else [args.images])
    images, clicks = [], []
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "*.nii.gz"))):
            array = np.asanyarray(nib.load(path).dataobj).astype(np.float32)
            truth = np.asanyarray(nib.load(os.path.join(folder, "labels", "final", os.path.basename(path))).dataobj)
            image = normalize_intensity(array, detect_modality(array))
            seeds = seed_points(image, args.seeds, seed=sum(map(ord, os.path.basename(path))) % 1000)
            scored = click_uncertainties(predictor, image, seeds)
            entry = {"image": os.path.relpath(path, os.path.dirname(folder)), "score": float(np.mean([u for u, _ in scored]))}
            if args.eval_groups:  # the target's Dice over the protocol's first clicks
                run = run_protocol(PredictorSegmenter(predictor), image, truth > 0, args.clicks)
                entry["dice"] = float(np.mean(run.dice))
            else:  # the Dice at the label-free clicks, against the structure each lands on
                pairs = [(u, dice(truth == truth[r, c], mask)) for (r, c), (u, mask) in zip(seeds, scored) if truth[r, c]]
                if not pairs:
                    continue
                clicks += pairs
                entry.update(dice=float(np.mean([d for _, d in pairs])), clicks_scored=len(pairs))
            images.append(entry)
            print(json.dumps(images[-1]), flush=True)

    score = np.array([i["score"] for i in images])
    dices = np.array([i["dice"] for i in images])
    order = np.argsort(-score)  # the strategy serves the highest score first
    result = {
        "command": "python benchmarks/active_learning.py " + " ".join(sys.argv[1:]),
        "images": len(images),
        "spearman_images": round(float(spearmanr(score, dices).statistic), 3),
        f"dice_of_first_{args.top}_served": round(float(dices[order[:args.top]].mean()), 3),
        f"dice_of_last_{args.top}_served": round(float(dices[order[-args.top:]].mean()), 3),
        "dice_of_all": round(float(dices.mean()), 3),
        **({"clicks": len(clicks), "spearman_clicks": round(float(spearmanr(*zip(*clicks)).statistic), 3)}
           if clicks else {}),
        "per_image": images,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
