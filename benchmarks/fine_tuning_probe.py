"""What a few fine-tuning steps do to the default model on one fixed batch: the first-click states of
the learning curve's 8 saved putamen slices (benchmarks/continual_curve.py), plain Adam steps on one
loss, Dice (the mask as served: logits > 0, BatchNorm on its stored statistics) after every step.

    python benchmarks/fine_tuning_probe.py [--loss nfl|dicece|bce|balanced|boxed] [--lr 1e-5]
        [--steps 12] [--batch-statistics]

``--batch-statistics``: the steps run BatchNorm on batch statistics (updating the stored ones), as
MONAI's trainer does unless fine-tuning keeps them (lib/trainers/pemed.py, keep_norm_statistics).
"""

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from monai.losses import DiceCELoss  # noqa: E402
from monai.transforms import Compose  # noqa: E402

import continual_curve  # noqa: E402
from lib.checkpoint import load_checkpoint  # noqa: E402
from lib.networks.pemed import network_input  # noqa: E402
from lib.prompts.clicks import disk_maps, next_eval_click  # noqa: E402
from lib.trainers.loss import NormalizedFocalLoss  # noqa: E402
from lib.trainers.pemed import PEMEDTrain  # noqa: E402


def balanced_bce(logits, y):
    """Foreground and background weigh half each, per sample."""
    pos = y.sum((1, 2, 3), keepdim=True).clamp(min=1)
    neg = (1 - y).sum((1, 2, 3), keepdim=True).clamp(min=1)
    weight = y * 0.5 / pos + (1 - y) * 0.5 / neg
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * weight).sum((1, 2, 3)).mean()


def boxed_bce(logits, y):
    """Cross-entropy only inside the target's bounding box grown to twice its size."""
    box = torch.zeros_like(y)
    for b in range(y.shape[0]):
        rows, cols = torch.nonzero(y[b, 0], as_tuple=True)
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        box[b, 0, max(0, int(rows.min()) - h // 2):int(rows.max()) + h // 2 + 1,
            max(0, int(cols.min()) - w // 2):int(cols.max()) + w // 2 + 1] = 1
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * box
    return (loss.sum((1, 2, 3)) / box.sum((1, 2, 3))).mean()


LOSSES = {"nfl": NormalizedFocalLoss(0.5, 2.0), "dicece": DiceCELoss(sigmoid=True),
          "bce": torch.nn.BCEWithLogitsLoss(), "balanced": balanced_bce, "boxed": boxed_bce}


def dice(logits, label) -> float:
    mask = (logits > 0).float()
    return float((2 * (mask * label).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) + label.sum((1, 2, 3)))).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", choices=sorted(LOSSES), default="nfl")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-statistics", action="store_true")
    p.add_argument("--frozen", default="", help="comma-separated parameter-name prefixes that do not learn")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    net = load_checkpoint(os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))[0]
    work = tempfile.mkdtemp(prefix="pemed_probe_")
    studies, masks, _ = continual_curve.build(work)
    # the server's validation chain: the slice letterboxed to the network's size
    chain = Compose(PEMEDTrain(os.path.join(work, "run"), net, os.path.join(work, "out.pt"), tracking=None)
                    ._pre_transforms(augment=False))
    items = [chain({"image": os.path.join(studies, f"ax_{z:03d}.nii.gz"), "label": os.path.join(masks, f"ax_{z:03d}.nii.gz")})
             for z in continual_curve.STRUCTURES["putamen"][2]]
    image = torch.stack([torch.as_tensor(np.asarray(d["image"])) for d in items])
    label = torch.stack([torch.as_tensor(np.asarray(d["label"])) for d in items]).float()
    gts = [g[0].numpy() > 0.5 for g in label]
    clicks = [[next_eval_click(g, np.zeros_like(g))] for g in gts]
    maps = torch.stack([disk_maps(c, tuple(image.shape[-2:])) for c in clicks])
    net.eval()
    with torch.no_grad():  # the Self-Loop pass: the first click's state as served
        x = network_input(image, maps, net(network_input(image, maps, None)))
        before = net(x)
    inside = before[label > 0]
    print(f"before: Dice {dice(before, label):.3f}, mean logit inside the label {float(inside.mean()):.2f}, "
          f"highest outside {float(before[label == 0].max()):.2f}, mask covers "
          f"{float(((before > 0) & (label > 0)).sum() / label.sum()):.0%} of the label")
    loss_fn = LOSSES[args.loss]
    frozen = tuple(filter(None, args.frozen.split(",")))
    learning = [w for name, w in net.named_parameters() if not (frozen and name.startswith(frozen))]
    optimizer = torch.optim.Adam(learning, lr=args.lr)
    for step in range(1, args.steps + 1):
        net.train(args.batch_statistics)
        loss = loss_fn(net(x), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        net.eval()
        with torch.no_grad():
            served = net(x)
        print(f"step {step}: training loss {loss.item():.4f}, as served: loss {float(loss_fn(served, label)):.4f}, "
              f"Dice {dice(served, label):.3f}, mask {int((served > 0).sum())} px of the label's {int(label.sum())}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
