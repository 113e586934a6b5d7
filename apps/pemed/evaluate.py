"""Run the NoC click protocol on any MONAI Label studies folder and write the figures.

    python apps/pemed/evaluate.py --studies DIR --model NAME --out FILE.json [--max-clicks 20]
        [--axis all|0|1|2] [--labels held_out|all|V1,V2,...] [--per-structure N] [--modality auto|MR|CT]
    python apps/pemed/evaluate.py --eval-set datasets/sample/eval --model NAME --out FILE.json [--groups a,b]

NAME: ``pemed`` (the app's newest checkpoint), ``grabcut`` (OpenCV GrabCut seeded by the clicks),
``grabcut_clicks`` (GrabCut starting from a box around the positive clicks, the earlier
baseline), ``random_walker`` (scikit-image's, seeded by the clicks), or a path to a PE-MED checkpoint.
``--eval-set`` runs every group folder of the bundled evaluation set (lib/data/eval_set.py: held-out
parcels, large objects, tissue classes, held-out parcels under synthetic contrasts, lesions; 0/1
labels) and writes one summary per group. Studies may be 2D images (each labelled structure of at least
``--min-area`` pixels is one sample) or 3D volumes (per structure, up to ``--per-structure`` slices
along each chosen axis, evenly spread over the slices where it has at least ``--min-area`` pixels).
Writes FILE.json (NoC@85/90 by Dice and IoU, Dice at 1/3/5/10/20 clicks, NoF@90, jitter, latency,
per-structure figures) and FILE.png (mean Dice against clicks).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.transforms import LoadImage  # noqa: E402

from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.configs.labels import AAL_LABELS, HELD_OUT_VALUES  # noqa: E402
from lib.data.eval_set import GROUPS  # noqa: E402
from lib.evaluation import (GrabCutSegmenter, PredictorSegmenter, RandomWalkerSegmenter, run_protocol,  # noqa: E402
                            summarize)
from lib.predictor import SERVE_DEFAULTS, PEMEDPredictor  # noqa: E402
from lib.studies import labelled, open_studies  # noqa: E402
from lib.transforms.transforms import normalize_intensity  # noqa: E402

APP_DIR = os.path.dirname(os.path.abspath(__file__))
NAMES = {v: k for k, v in AAL_LABELS.items()}


def load_pair(image_path: str, label_path: str):
    loader = LoadImage(image_only=True)
    image = np.asarray(loader(image_path), dtype=np.float32)
    label = np.asarray(loader(label_path)).round().astype(np.int32)
    if image.ndim == label.ndim + 1 and image.shape[-1] in (3, 4):  # RGB photo: channels first
        image = np.moveaxis(image[..., :3], -1, 0)
    if label.ndim == 3 and label.shape[-1] in (3, 4) and image.ndim == 3 and image.shape[0] == 3:
        label = label[..., 0]
    return image, label


def select_values(label: np.ndarray, which: str):
    present = [int(v) for v in np.unique(label) if v > 0]
    if which == "held_out":
        return [v for v in present if v in HELD_OUT_VALUES]
    if which == "all":
        return present
    wanted = {int(v) for v in which.split(",")}
    return [v for v in present if v in wanted]


def samples(pairs, which: str, axes, per_structure: int, min_area: int):
    """Yield (name, structure, image2d, mask2d)."""
    for image_path, label_path in pairs:
        image, label = load_pair(image_path, label_path)
        base = os.path.basename(image_path).split(".")[0]
        spatial = image.shape[1:] if image.ndim == label.ndim + 1 else image.shape
        for value in select_values(label, which):
            structure = NAMES.get(value, str(value)) if which != "all" or value in NAMES else str(value)
            if len(spatial) == 2:
                mask = label == value
                if mask.sum() >= min_area:
                    yield base, structure, image, mask
                continue
            for axis in axes:
                areas = (label == value).sum(axis=tuple(a for a in range(3) if a != axis))
                candidates = np.flatnonzero(areas >= min_area)
                if candidates.size == 0:
                    continue
                picks = candidates[np.linspace(0, candidates.size - 1, min(per_structure, candidates.size)).round().astype(int)]
                for index in sorted(set(picks.tolist())):
                    yield (f"{base}_a{axis}_{index}", structure, np.take(image, index, axis=axis),
                           np.take(label, index, axis=axis) == value)


def make_segmenter(model: str, device: str, size: int, **serve):
    """``serve``: PEMEDPredictor's zoom_* and refine_* settings."""
    if model in ("grabcut", "grabcut_clicks"):
        init = "clicks" if model == "grabcut_clicks" else "image"
        return GrabCutSegmenter(init=init), {"model": model, "grabcut_init": init}
    if model == "random_walker":
        return RandomWalkerSegmenter(), {"model": "random_walker"}
    path = model
    if model == "pemed":  # the checkpoint the server would serve: fine-tuned if there is one
        from lib.configs.pemed import PEMED  # the app's config (and MONAI Label's infer stack) only here

        config = PEMED()
        config.init("pemed", os.path.join(APP_DIR, "model"), {}, None)
        path = config.newest_checkpoint()
    network, meta = load_checkpoint(path, device)
    predictor = PEMEDPredictor(network, device, size, **serve)
    return PredictorSegmenter(predictor), {"model": path, "network": network.describe(), **serve, "checkpoint_meta": meta}


def plot(curves: dict, path: str, title: str) -> None:
    """Mean Dice against clicks, one line per curve name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
    ax.axhline(0.9, ls="--", c="grey", lw=0.8)
    ax.set(xlabel="clicks", ylabel="mean Dice", ylim=(0, 1), title=title)
    if len(curves) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate_studies(segmenter, folder: str, args, labels: str, group: str = "") -> dict:
    """The NoC protocol on every sample of a studies folder; with ``group``, every sample is that group's."""
    pairs = [(d["image"], d["label"]) for d in labelled(open_studies(folder))]
    axes = [0, 1, 2] if args.axis == "all" else [int(args.axis)]
    results = []
    start = time.time()
    for name, structure, image, mask in samples(pairs, labels, axes, args.per_structure, args.min_area):
        results.append(run_protocol(segmenter, normalize_intensity(image, args.modality), mask, args.max_clicks,
                                    name, group or structure))
        if args.max_samples and len(results) >= args.max_samples:
            break
    if not results:
        return {}
    summary = summarize(results, args.max_clicks)
    summary.update({"studies": os.path.abspath(folder), "labels": labels, "axes": axes,
                    "wall_time_s": round(time.time() - start, 1)})
    return summary


HEADLINE = ("n_samples", "noc85", "noc90", "noc85_iou", "noc90_iou", "dice_at", "nof90", "jitter", "latency_ms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--studies", help="a MONAI Label studies folder")
    source.add_argument("--eval-set", help="the bundled evaluation set: one studies folder per group")
    p.add_argument("--groups", default=",".join(GROUPS), help="with --eval-set: which groups")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--axis", default="all", choices=["all", "0", "1", "2"])
    p.add_argument("--labels", default="held_out", help="held_out, all, or comma-separated label values")
    p.add_argument("--per-structure", type=int, default=3)
    p.add_argument("--min-area", type=int, default=30)
    p.add_argument("--max-samples", type=int, default=0)
    p.add_argument("--modality", default="auto", help="auto (per image, as the server does), MR or CT")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=SERVE_DEFAULTS["zoom_in"],
                   help="PE-MED: after the first click, look at a box around the mask and the clicks (the app's default)")
    p.add_argument("--zoom-far", type=float, default=SERVE_DEFAULTS["zoom_far"],
                   help="PE-MED: show the whole image when a positive click lies farther from the mask than this share "
                        "of the image's longer side (the app's default; 0: never)")
    p.add_argument("--zoom-min", type=float, default=0.4,
                   help="PE-MED: the zoom box is at least this share of the image's longer side")
    p.add_argument("--zoom-grow", type=int, default=SERVE_DEFAULTS["zoom_grow"],
                   help="PE-MED: re-run up to N times on a box twice as long when the mask reaches the zoom box's side "
                        "(the app's default; 0: never)")
    p.add_argument("--refine-radius", type=int, default=SERVE_DEFAULTS["refine_radius"],
                   help="PE-MED: radius of the guided filter pulling the mask onto the image's edges, in pixels "
                        "per --size pixels of the image's longer side (the app's default; 0: off)")
    p.add_argument("--refine-eps", type=float, default=SERVE_DEFAULTS["refine_eps"],
                   help="PE-MED: the guided filter's eps (the app's default)")
    args = p.parse_args(argv)

    segmenter, about = make_segmenter(args.model, args.device, args.size, zoom_in=args.zoom_in, zoom_far=args.zoom_far,
                                      zoom_grow=args.zoom_grow, zoom_min=args.zoom_min,
                                      refine_radius=args.refine_radius, refine_eps=args.refine_eps)
    about.update({"torch_threads": torch.get_num_threads(), "device": args.device})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    if args.eval_set:
        groups = {}
        for group in [g for g in args.groups.split(",") if g]:
            folder = os.path.join(args.eval_set, group)
            if not os.path.isdir(folder):
                print(f"error: no group folder {folder}", file=sys.stderr)
                return 2
            groups[group] = evaluate_studies(segmenter, folder, args, "all", group)
            print(group, json.dumps({k: groups[group].get(k) for k in HEADLINE[:7]}))
        with open(args.out, "w") as f:
            json.dump({"groups": groups, "eval_set": os.path.abspath(args.eval_set), **about}, f, indent=1)
        plot({g: s["dice_curve"] for g, s in groups.items() if s}, os.path.splitext(args.out)[0] + ".png", args.model)
        return 0
    if not labelled(open_studies(args.studies)):
        print(f"error: no labelled images in {args.studies}", file=sys.stderr)
        return 2
    summary = evaluate_studies(segmenter, args.studies, args, args.labels)
    if not summary:
        print("error: no samples matched (check --labels and --min-area)", file=sys.stderr)
        return 2
    summary.update(about)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    plot({args.model: summary["dice_curve"]}, os.path.splitext(args.out)[0] + ".png",
         f"{args.model} on {os.path.basename(os.path.normpath(args.studies))}")
    print(json.dumps({k: summary[k] for k in HEADLINE}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
