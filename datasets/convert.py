"""Convert public datasets the papers use, already on the user's disk, into MONAI Label studies folders.

    python datasets/convert.py synapse SRC OUT [--slices]   # BTCV/Synapse: SRC/img/imgXXXX.nii.gz + SRC/label/labelXXXX.nii.gz
    python datasets/convert.py kvasir  SRC OUT              # Kvasir-SEG: SRC/images/*.jpg + SRC/masks/*.jpg
    python datasets/convert.py tn3k    SRC OUT [--split trainval|test]  # SRC/<split>-image + SRC/<split>-mask
    python datasets/convert.py qata    SRC OUT              # QaTa-COV19: SRC/Images/X.png + SRC/Ground-truths/mask_X.png

A studies folder holds the images and labels/final/<same name>; 2D masks become 0/1 PNGs, Synapse
keeps its organ values (names in OUT/labels.json). With --slices, Synapse volumes are also cut into
axial 2D NIfTI slices under OUT/slices for 2D training and evaluation.
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys

import nibabel as nib
import numpy as np
from PIL import Image

# BTCV's 13 abdominal labels; Synapse (TransUNet) evaluates 8 of them.
BTCV_LABELS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4, "esophagus": 5, "liver": 6,
               "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "portal_splenic_vein": 10, "pancreas": 11,
               "adrenal_right": 12, "adrenal_left": 13}
SYNAPSE_EIGHT = ("aorta", "gallbladder", "kidney_left", "kidney_right", "liver", "pancreas", "spleen", "stomach")


def _studies(out: str) -> str:
    labels = os.path.join(out, "labels", "final")
    os.makedirs(labels, exist_ok=True)
    return labels


def convert_synapse(src: str, out: str, slices: bool = False) -> int:
    labels_dir = _studies(out)
    images = sorted(glob.glob(os.path.join(src, "img", "*.nii*")))
    n = 0
    for image_path in images:
        case = re.sub(r"\D", "", os.path.basename(image_path).split(".")[0])
        candidates = glob.glob(os.path.join(src, "label", f"label{case}.nii*"))
        if not candidates:
            continue
        name = f"case{case}.nii.gz"
        shutil.copyfile(image_path, os.path.join(out, name))
        shutil.copyfile(candidates[0], os.path.join(labels_dir, name))
        if slices:
            img, lab = nib.load(image_path), nib.load(candidates[0])
            data, seg = np.asanyarray(img.dataobj), np.asanyarray(lab.dataobj).astype(np.int16)
            slice_dir = os.path.join(out, "slices")
            slice_labels = _studies(slice_dir)
            sx, sy = img.header.get_zooms()[:2]
            for z in range(data.shape[2]):
                if not seg[:, :, z].any():
                    continue
                affine = np.diag([float(sx), float(sy), 1.0, 1.0])
                file = f"case{case}_z{z:03d}.nii.gz"
                nib.save(nib.Nifti1Image(data[:, :, z].astype(np.float32), affine), os.path.join(slice_dir, file))
                nib.save(nib.Nifti1Image(seg[:, :, z], affine), os.path.join(slice_labels, file))
        n += 1
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump(BTCV_LABELS, f, indent=1)
    return n


def convert_pairs(images_dir: str, masks_dir: str, out: str, mask_prefix: str = "") -> int:
    """2D image/mask pairs matched by file stem (the mask's stem may carry ``mask_prefix``)."""
    labels_dir = _studies(out)
    masks = {}
    for m in glob.glob(os.path.join(masks_dir, "*")):
        stem = os.path.splitext(os.path.basename(m))[0]
        masks[stem[len(mask_prefix):] if mask_prefix and stem.startswith(mask_prefix) else stem] = m
    n = 0
    for image_path in sorted(glob.glob(os.path.join(images_dir, "*"))):
        stem = os.path.splitext(os.path.basename(image_path))[0]
        if stem not in masks:
            continue
        try:
            image = Image.open(image_path)
            mask = np.asarray(Image.open(masks[stem]).convert("L")) > 127
        except OSError as e:
            print(f"skipping {image_path}: {e}", file=sys.stderr)
            continue
        image.convert("RGB" if image.mode not in ("L", "I;16") else image.mode).save(os.path.join(out, f"{stem}.png"))
        Image.fromarray(mask.astype(np.uint8)).save(os.path.join(labels_dir, f"{stem}.png"))
        n += 1
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump({"target": 1}, f)
    return n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["synapse", "kvasir", "tn3k", "qata"])
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--slices", action="store_true", help="synapse: also write axial 2D slices")
    p.add_argument("--split", default="trainval", help="tn3k: trainval or test")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.dataset == "synapse":
        n = convert_synapse(args.src, args.out, args.slices)
    elif args.dataset == "kvasir":
        n = convert_pairs(os.path.join(args.src, "images"), os.path.join(args.src, "masks"), args.out)
    elif args.dataset == "tn3k":
        n = convert_pairs(os.path.join(args.src, f"{args.split}-image"), os.path.join(args.src, f"{args.split}-mask"),
                          args.out)
    else:
        n = convert_pairs(os.path.join(args.src, "Images"), os.path.join(args.src, "Ground-truths"), args.out, "mask_")
    if n == 0:
        print(f"error: no image/label pairs found in {args.src} for {args.dataset}", file=sys.stderr)
        return 2
    print(f"{n} studies written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
