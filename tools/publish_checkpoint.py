"""Copy a trained checkpoint to where the app bundles it, its weights stored as float16 (half the bytes
in git history; the app loads them back into float32).

    .venv/bin/python tools/publish_checkpoint.py runs/engine/pemed.pt apps/pemed/model/pemed.pt
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "pemed"))

from lib.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args(argv)
    network, meta = load_checkpoint(args.src)
    save_checkpoint(args.dst, network, {**meta, "stored_as": "float16", "from": os.path.basename(args.src)}, half=True)
    print(f"{args.dst}: {os.path.getsize(args.dst) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
