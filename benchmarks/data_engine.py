"""Is the training-data engine fast enough? Samples per second it produces (through the trainer's own
pre-transforms: draw, crop, flips, resize) next to the samples per second the PE-MED trainer consumes
(a short real train.py --engine run, its data time taken out).

    python benchmarks/data_engine.py [--samples 200] [--iterations 8] [--batch 8] [--out FILE.json]
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "apps", "pemed"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.transforms import Compose  # noqa: E402

import train  # noqa: E402
from lib.data.atlases import DEFAULT_SRC, load_maps  # noqa: E402
from lib.data.engine import DataEngine  # noqa: E402
from lib.networks.pemed import PEMEDNet  # noqa: E402
from lib.trainers.pemed import PEMEDTrain  # noqa: E402

MAPS = os.path.join(ROOT, "datasets", "sample", "colin27_maps.npz")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "data_engine.json"))
    args = p.parse_args(argv)

    engine = DataEngine(load_maps(DEFAULT_SRC, MAPS))
    with tempfile.TemporaryDirectory() as tmp:
        task = PEMEDTrain(tmp, PEMEDNet(1), os.path.join(tmp, "p.pt"), engine=engine, tracking=None)
        pipeline = Compose(task.train_pre_transforms(None))
        per_kind = {}
        start = time.perf_counter()
        for i in range(args.samples):
            t0 = time.perf_counter()
            out = pipeline({"seed": i, "fixed": False})
            per_kind.setdefault(out["kind"], []).append(time.perf_counter() - t0)
        engine_rate = args.samples / (time.perf_counter() - start)

        n = args.iterations * args.batch
        rc = train.main(["--engine", "--out", os.path.join(tmp, "run", "p.pt"), "--epochs", "1", "--batch", str(args.batch),
                         "--samples-per-epoch", str(n), "--val-samples", "0", "--val-split", "0", "--maps-cache", MAPS])
        if rc:
            return rc
        wall = json.load(open(os.path.join(tmp, "run", "p.train.json")))["wall_time_s"]
    trainer_rate = n / max(1e-6, wall - n / engine_rate)
    result = {
        "engine_samples_per_s": round(engine_rate, 2),
        "trainer_consumes_samples_per_s": round(trainer_rate, 2),
        "engine_ms_per_kind_median": {k: round(1e3 * float(np.median(v)), 1) for k, v in sorted(per_kind.items())},
        "trainer": {"batch": args.batch, "iterations": args.iterations, "size": 256, "wall_s": wall},
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "command": " ".join(["python", "benchmarks/data_engine.py"] + (argv if argv is not None else sys.argv[1:])),
    }
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
