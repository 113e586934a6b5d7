"""Trace the first NoC clicks of one eval-set group: per sample, each click's polarity, the Dice and
the predicted/true area after it; printed grouped by the polarity of clicks 2 and 3, with how many
samples lose more than 0.1 Dice at a click. It shows how a model's mask reacts to corrective clicks
(too small and growing, overshooting, or lost).

    python benchmarks/click_trace.py --model runs/eval/gpu14.pt [--group parcels] [--clicks 3] [--per-sample]

``--per-sample`` also prints one line per sample: its study, then per click the polarity, the Dice
and the predicted/true area.

Same samples, clicks and zoom settings as `evaluate.py --eval-set datasets/sample/eval`.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "apps", "pemed"))

import numpy as np  # noqa: E402

import evaluate  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.predictor import SERVE_DEFAULTS  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402
from lib.studies import labelled, open_studies  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--group", default="parcels")
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--eval-set", default=os.path.join(REPO, "datasets", "sample", "eval"))
    p.add_argument("--per-sample", action="store_true")
    args = p.parse_args()
    segmenter, _ = evaluate.make_segmenter(args.model, "cpu", 256, **SERVE_DEFAULTS)
    pairs = [(d["image"], d["label"]) for d in labelled(open_studies(os.path.join(args.eval_set, args.group)))]
    traces = []  # per sample: [(positive, dice, area ratio)] per click
    for study, _, image, mask in evaluate.samples(pairs, "all", [0, 1, 2], 3, 30):
        segmenter.start(normalize_intensity(image, "auto"))
        pred, clicks, trace = np.zeros_like(mask), [], []
        for _ in range(args.clicks):
            click = next_eval_click(mask, pred, clicks)
            if click is None:
                break
            clicks.append(click)
            pred = segmenter.step(clicks) > 0.5
            trace.append((click.positive, dice(mask, pred), pred.sum() / mask.sum()))
        traces.append(trace)
        if args.per_sample:
            print(study, " ".join(f"{'+' if c[0] else '-'}{c[1]:.2f}/{c[2]:.2f}" for c in trace))
    full = [t for t in traces if len(t) == args.clicks]
    report = {"model": args.model, "group": args.group, "samples": len(traces),
              "dice_after_click": np.mean([[c[1] for c in t] for t in full], axis=0).round(3).tolist(),
              "median_area_ratio_after_click": np.median([[c[2] for c in t] for t in full], axis=0).round(2).tolist(),
              "samples_losing_0.1_dice_at_a_click": int(sum((np.diff([c[1] for c in t]) < -0.1).any() for t in full)),
              "samples_at_0.75_after_click_1": int(sum(t[0][1] >= 0.75 for t in full)),
              "of_those_losing_0.1_at_click_2": int(sum(t[0][1] >= 0.75 and t[1][1] < t[0][1] - 0.1 for t in full)),
              "by_polarity_of_clicks_2_3": {}}
    for key in sorted({tuple("+" if c[0] else "-" for c in t[1:3]) for t in full}):
        chosen = [t for t in full if tuple("+" if c[0] else "-" for c in t[1:3]) == key]
        report["by_polarity_of_clicks_2_3"]["".join(key)] = {
            "n": len(chosen), "dice_after_click": np.mean([[c[1] for c in t] for t in chosen], axis=0).round(3).tolist(),
            "median_area_ratio_after_click": np.median([[c[2] for c in t] for t in chosen], axis=0).round(2).tolist()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
