"""Milliseconds per training click: the click simulation's CPU side, which runs in the training
loop's one process for every sample of every batch (on a GPU it, not the network, bounds the rate).

    python benchmarks/click_sampler.py [--samples 40]

Targets are engine draws resized to 256 x 256; the corrective click is made against a noisy
prediction of the target. Prints the median over samples.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "apps", "pemed"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from lib.data.atlases import DEFAULT_SRC, load_maps  # noqa: E402
from lib.data.engine import DataEngine  # noqa: E402
from lib.prompts.clicks import TrainingClickSampler  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--maps-cache", default=os.path.join(REPO, "datasets", "sample", "colin27_maps.npz"))
    args = p.parse_args()
    engine = DataEngine(load_maps(DEFAULT_SRC, args.maps_cache))
    sampler, rng = TrainingClickSampler(seed=0), np.random.default_rng(0)
    initial, corrective = [], []
    for seed in range(args.samples):
        label = np.asarray(engine.draw(seed)["label"]).squeeze() > 0.5
        gt = cv2.resize(label.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) > 0
        t = time.perf_counter()
        clicks = sampler.initial(gt)
        initial.append(time.perf_counter() - t)
        prob = np.clip(0.7 * gt + 0.5 * rng.random(gt.shape), 0, 1)
        t = time.perf_counter()
        sampler.corrective(gt, prob, clicks)
        corrective.append(time.perf_counter() - t)
    print(json.dumps({"samples": args.samples, "initial_ms_median": round(1e3 * float(np.median(initial)), 2),
                      "corrective_ms_median": round(1e3 * float(np.median(corrective)), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
