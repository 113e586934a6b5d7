"""Build the bundled sample from Debian's mricron-data (Colin27 T1 + the hand-drawn AAL atlas).

    python datasets/build_sample.py [--src /usr/share/mricron/templates] [--out datasets/sample]

Writes MONAI Label studies folders (images + labels/final with the same file names):
    <out>/volumes       ch2 and ch2bet as 3D volumes with the AAL map as their label (server demo)
    <out>/slices/train  2D slices of both volumes along the three axes, every 2nd slice (training)
    <out>/slices/eval   2D slices of ch2bet, every 6th slice offset by 3 (evaluation)
    <out>/labels.json   AAL structure names -> label values
    <out>/eval/<group>  the evaluation set, one studies folder per group of targets (0/1 labels;
                        apps/pemed/lib/data/eval_set.py): held-out parcels, large objects, tissue
                        classes, held-out parcels under synthetic contrasts, lesions
    <out>/colin27_maps.npz  every usable mricron-data label map on Colin27's grid, and the masks the
                        training-data engine derives (apps/pemed/lib/data/atlases.py)
Training must never see the held-out structures (apps/pemed/lib/configs/labels.py): the trainer
excludes them; the evaluation runs on them.
"""

import argparse
import json
import os
import shutil
import sys

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "pemed"))
from lib.data.atlases import load_maps  # noqa: E402
from lib.data.engine import EVAL_OFFSET, EVAL_STEP, DataEngine  # noqa: E402
from lib.data.eval_set import write_eval_set  # noqa: E402

DEFAULT_SRC = "/usr/share/mricron/templates"
AXES = {0: "sag", 1: "cor", 2: "ax"}


def read_aal_names(path: str) -> dict:
    names = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                names[parts[1]] = int(parts[0])
    return names


def save_slice(array: np.ndarray, spacing, path: str, dtype) -> None:
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array).astype(dtype), affine), path)


def write_slices(name: str, image: nib.Nifti1Image, label: np.ndarray, out: str, step: int, offset: int,
                 min_labelled: int) -> int:
    os.makedirs(os.path.join(out, "labels", "final"), exist_ok=True)
    data = np.asanyarray(image.dataobj)
    zooms = image.header.get_zooms()[:3]
    written = 0
    for axis, tag in AXES.items():
        spacing = [z for a, z in enumerate(zooms) if a != axis]
        for index in range(offset, data.shape[axis], step):
            lab = np.take(label, index, axis=axis)
            if (lab > 0).sum() < min_labelled:
                continue
            file = f"{name}_{tag}_{index:03d}.nii.gz"
            save_slice(np.take(data, index, axis=axis), spacing, os.path.join(out, file), data.dtype)
            save_slice(lab, spacing, os.path.join(out, "labels", "final", file), np.int16)
            written += 1
    return written


def build(src: str, out: str) -> dict:
    paths = {n: os.path.join(src, f) for n, f in
             (("ch2", "ch2.nii.gz"), ("ch2bet", "ch2bet.nii.gz"), ("aal", "aal.nii.gz"), ("names", "aal.nii.txt"))}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"missing {missing}: install Debian's mricron-data (apt-get install mricron-data)")
    aal = nib.load(paths["aal"])
    label = np.asanyarray(aal.dataobj).astype(np.int16)
    images = {n: nib.load(paths[n]) for n in ("ch2", "ch2bet")}
    for n, img in images.items():
        if img.shape[:3] != label.shape or not np.allclose(img.affine, aal.affine, atol=1e-3):
            raise ValueError(f"{n} and aal.nii.gz are not on the same grid")

    vol_dir = os.path.join(out, "volumes")
    os.makedirs(os.path.join(vol_dir, "labels", "final"), exist_ok=True)
    for n in images:
        shutil.copyfile(paths[n], os.path.join(vol_dir, f"{n}.nii.gz"))
        shutil.copyfile(paths["aal"], os.path.join(vol_dir, "labels", "final", f"{n}.nii.gz"))

    counts = {"volumes": len(images)}
    counts["train"] = sum(write_slices(n, img, label, os.path.join(out, "slices", "train"), 2, 0, 400)
                          for n, img in images.items())
    counts["eval"] = write_slices("ch2bet", images["ch2bet"], label, os.path.join(out, "slices", "eval"), EVAL_STEP,
                                   EVAL_OFFSET, 400)
    engine = DataEngine(load_maps(src, os.path.join(out, "colin27_maps.npz")))
    if label.shape == (181, 217, 181):  # the real Colin27 grid (the tests' small fakes have no eval set)
        counts["eval_set"] = write_eval_set(engine, os.path.join(out, "eval"))
    names = read_aal_names(paths["names"])
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump(names, f, indent=1)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=DEFAULT_SRC, help="folder holding ch2.nii.gz, ch2bet.nii.gz, aal.nii.gz, aal.nii.txt")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample"))
    args = parser.parse_args(argv)
    try:
        counts = build(args.src, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"sample written to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
