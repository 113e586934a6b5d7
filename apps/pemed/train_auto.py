"""Train a model of the automatic methods on named structures (lib/trainers/automatic.py):

    python apps/pemed/train_auto.py METHOD --engine --out FILE.pt [--base SAM.pt] [--names A,B,...]
        [--epochs 20] [--samples-per-epoch 256] [--batch 8] [--lr ...] [--resume] [--device cuda|cpu]
    python apps/pemed/train_auto.py METHOD --studies DIR --out FILE.pt ...

METHOD: ``promise`` (APM + IPS on the frozen ``--base``; ``--no-ips`` for the ablation, ``--box``
for the variant whose APM also predicts a box), ``box`` and ``edges`` (Curriculum's detector and
edge-point network: heads on ``--base``'s image embeddings), ``curriculum_sam`` (Curriculum's prompt
encoder / decoder fine-tuning of ``--base``; ``--edge-positive`` for the ablation), ``unet`` (the
task-specific baseline). All but ``unet`` read the foundation model's embeddings from the
``--embeddings`` store (computed on a slice's first use). ``--engine`` draws
the named structures from the training-data engine (training seeds and training slices only;
evaluate_auto.py keeps its own apart); ``--studies`` trains on saved labels. The default names are
lib/configs/labels.py's AUTO_DEFAULT: the structures the foundation model never saw as targets, and
the temporal lobes. Writes the checkpoint after every epoch and ``<out>.train.json``.
"""

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from monai.utils import set_determinism  # noqa: E402

from lib.automatic import load_network  # noqa: E402
from lib.foundation import DEFAULT_SOURCE, EmbeddingStore, FoundationEmbeddingd, SAMPredictor, load_foundation  # noqa: E402,E501
from lib.configs.labels import AUTO_DEFAULT, structure_values  # noqa: E402
from lib.named_labels import grown  # noqa: E402
from lib.networks.baseline import TaskUNet  # noqa: E402
from lib.networks.curriculum import PromptHeatmapNet  # noqa: E402
from lib.networks.promise import ProMISe  # noqa: E402
from lib.networks.sam import with_own_decoder  # noqa: E402
from lib.trainers.automatic import CurriculumSAMTrain, HeatmapTrain, ProMISeTrain, TaskUNetTrain  # noqa: E402
from train import REPO, add_run_arguments, fresh_resume_path, train_request, training_items, write_card  # noqa: E402

METHODS = ("promise", "box", "edges", "curriculum_sam", "unet")
# box and edges start pretrained (--pemed): a smaller step than the UNet's from scratch
DEFAULT_LR = {"promise": 1e-4, "box": 1e-3, "edges": 1e-3, "curriculum_sam": 1e-4, "unet": 1e-3}


def build(method: str, structures, args, out: str, run_dir: str, engine):
    """(trainer task, network) for ``method``, from ``--init`` when given."""
    common = dict(size=256, lr=args.lr or DEFAULT_LR[method], engine=engine, seed=args.seed, tracking=None,
                  resume_path=fresh_resume_path(out, args.resume), amp=args.device.startswith("cuda"),
                  train_save_interval=10 ** 9, num_workers=args.workers)
    names = list(structures)
    if method == "unet":
        net = load_network(args.init)[0] if args.init else TaskUNet(names)
        return TaskUNetTrain(run_dir, net, out, structures, **common), net
    base = load_foundation(args.base, decoder=args.decoder if args.decoder != "none" else None)[0]
    init = load_network(args.init, base_sam=base)[0] if args.init else None
    if hasattr(init, "with_names"):  # the names it knows (in its class order), then those of --names it does not;
        init, structures = grown(init, names, structures)  # a name a server learnt: no engine draw shows it
    embeddings = None
    if args.embeddings != "none":  # each slice's embedding computed once, then read from disk
        store = EmbeddingStore(args.embeddings, SAMPredictor(base, cache_mb=0), f"{args.base}|{base.spec.kind}")
        embeddings = FoundationEmbeddingd(store, list(structures.values()))
    elif method in ("box", "edges"):
        raise ValueError(f"{method} is a head on the foundation model's cached embeddings: give --embeddings")
    if method == "promise":
        net = init or ProMISe(base, names, use_ips=not args.no_ips, base=args.base, box=args.box)
        return ProMISeTrain(run_dir, net, out, structures, embeddings=embeddings, **common), net
    if method in ("box", "edges"):
        net = init or PromptHeatmapNet(names, method, size=base.spec.img_size)
        return HeatmapTrain(run_dir, net, out, structures, embeddings=embeddings, **common), net
    net = init or with_own_decoder(base)
    return CurriculumSAMTrain(run_dir, net, out, structures, edge_positive=args.edge_positive, embeddings=embeddings,
                              **common), net


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("method", choices=METHODS)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--studies")
    source.add_argument("--engine", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=DEFAULT_SOURCE, help="the foundation model (promise, curriculum_sam): "
                   "litemedsam (the installed wheel's) or a file")
    p.add_argument("--decoder", default=os.path.join(REPO, "apps", "pemed", "model", "foundation_decoder.pt"),
                   help="the fine-tuned prompt encoder and mask decoder on --base that serving uses ('none': "
                   "the base's own): ProMISe learns its prompts for it, curriculum_sam continues from it")
    p.add_argument("--init", default="", help="continue from this checkpoint of the method")
    p.add_argument("--names", default=",".join(AUTO_DEFAULT), help="AAL or lobe names, comma-separated")
    p.add_argument("--no-ips", action="store_true", help="promise: the APM alone (ablation)")
    p.add_argument("--embeddings", default=os.path.join(REPO, "runs", "embeddings"),
                   help="a folder caching the foundation model's embeddings of the training slices (--engine: "
                   "a fixed pool of --pool draws), so only a slice's first epoch runs the encoder; 'none': "
                   "fresh engine draws every epoch, encoded each time (promise, curriculum_sam)")
    p.add_argument("--pool", type=int, default=256, help="--engine with --embeddings: the pool's size")
    p.add_argument("--box", action="store_true", help="promise: the APM also predicts a box prompt (the variant "
                   "for a foundation model trained on boxes)")
    p.add_argument("--edge-positive", action="store_true", help="curriculum_sam: edge points labelled positive")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples-per-epoch", type=int, default=256)
    p.add_argument("--val-samples", type=int, default=0)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.0)
    p.add_argument("--real-prob", type=float, default=0.25)
    add_run_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    set_determinism(seed=args.seed)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    try:
        values = structure_values(names)
    except ValueError as e:
        print(f"error: --names: {e}", file=sys.stderr)
        return 2
    try:
        engine, datastore, datalist, val_ds = training_items(args, real_prob=args.real_prob)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.embeddings != "none" and engine is not None and args.method != "unet":
        datalist = [{"seed": i, "fixed": True} for i in range(args.pool)]
    out = os.path.abspath(args.out)
    try:
        task, net = build(args.method, dict(zip(names, values)), args, out, os.path.splitext(out)[0] + "_run", engine)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    request = train_request(args, datalist, val_ds, engine, 0.0)
    start = time.time()
    task(request, datastore)
    card = {"command": " ".join(["python", "apps/pemed/train_auto.py"] + (argv if argv is not None else sys.argv[1:])),
            "method": args.method, "names": names, "epochs": args.epochs, "samples_per_epoch": args.samples_per_epoch,
            "batch": args.batch, "device": args.device, "torch_threads": torch.get_num_threads(),
            "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad),
            "wall_time_s": round(time.time() - start, 1)}
    return write_card(out, card)


if __name__ == "__main__":
    sys.exit(main())
