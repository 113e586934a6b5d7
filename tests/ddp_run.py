"""One PE-MED training run on a studies folder with N processes (PyTorch DDP over gloo when N >= 2), for
tests/test_ddp.py: a script, because DDP's spawned processes import their parent's main module.

    python tests/ddp_run.py STUDIES OUT N [BATCH [NODES NODE_RANK URL]]
Prints the published checkpoint's epoch losses as JSON (nothing on a machine other than node 0).
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "pemed"))


def main(studies: str, out: str, processes: int, batch: int, nodes: int = 1, node_rank: int = 0, url: str = "") -> None:
    import torch

    from lib.checkpoint import load_checkpoint
    from lib.networks.pemed import PEMEDNet
    from lib.studies import open_studies
    from lib.trainers.pemed import PEMEDTrain

    torch.manual_seed(0)
    task = PEMEDTrain(out, PEMEDNet(1), os.path.join(out, "pemed.pt"), size=64, seed=0, tracking=None,
                      publish_each_epoch=False, train_save_interval=10 ** 9)
    task({"max_epochs": 6, "samples_per_epoch": 16, "lr": 1e-3, "device": "cpu", "tracking": "None", "name": "run",
          "train_batch_size": batch, "val_batch_size": 4, "val_split": 0.0, "processes": processes,
          **({"nodes": nodes, "node_rank": node_rank, "distributed_url": url} if nodes > 1 else {})}, open_studies(studies))
    if node_rank == 0:
        _, meta = load_checkpoint(os.path.join(out, "pemed.pt"))
        print(json.dumps(meta["epoch_losses"]))


if __name__ == "__main__":
    extra = sys.argv[5:8]
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 8,
         *([int(extra[0]), int(extra[1]), extra[2]] if extra else []))
