"""Shared fixtures: the app's lib on sys.path, small synthetic studies, a tiny untrained checkpoint."""

import os
import sys

import nibabel as nib
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.join(ROOT, "apps", "pemed")
sys.path.insert(0, APP_DIR)
MRICRON = "/usr/share/mricron/templates"


def write_nifti(path, array, dtype=np.float32):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array).astype(dtype), np.eye(4)), path)


def phantom(shape=(96, 80), seed=0):
    """A 2D image with three bright ellipses on a noisy background, and their label map (1, 2, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    label = np.zeros(shape, np.int16)
    for value, (cy, cx, ry, rx) in enumerate([(30, 25, 12, 9), (60, 50, 15, 12), (25, 60, 8, 10)], start=1):
        label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = value
    image = 100 + 40 * label + rng.normal(0, 5, shape)
    return image.astype(np.float32), label


@pytest.fixture(scope="session")
def studies_2d(tmp_path_factory):
    """A MONAI Label studies folder of 2D NIfTI phantoms with labels/final."""
    root = tmp_path_factory.mktemp("studies2d")
    for i in range(6):
        image, label = phantom(seed=i)
        write_nifti(str(root / f"img_{i}.nii.gz"), image)
        write_nifti(str(root / "labels" / "final" / f"img_{i}.nii.gz"), label, np.int16)
    return str(root)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """An untrained PE-MED checkpoint (all modules on), for plumbing tests."""
    import torch
    from lib.checkpoint import save_checkpoint
    from lib.networks.pemed import PEMEDNet

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("ckpt") / "pemed.pt")
    save_checkpoint(path, PEMEDNet(1), {"note": "untrained"})
    return path


def served_app(dest, tiny_checkpoint):
    """A copy of the app for a test server: the bundled model where there is one, else an untrained one."""
    from lib.local_server import copy_app

    bundled = os.path.join(APP_DIR, "model", "pemed.pt")
    return copy_app(dest, None if os.path.exists(bundled) else tiny_checkpoint)


def write_untrained_automatic_models(model_dir, names):
    """Untrained foundation (the small pemed_sam_tiny, fast on a CPU), Curriculum and ProMISe models
    where the app looks for them (plumbing tests). -> the server conf that serves that foundation model."""
    import torch
    from lib.checkpoint import save_checkpoint
    from lib.foundation import save_foundation
    from lib.networks.curriculum import PromptHeatmapNet
    from lib.networks.promise import ProMISe
    from lib.networks.sam import build_sam, spec_of, with_own_decoder

    torch.manual_seed(0)
    sam = build_sam(spec_of("pemed_sam_tiny"))
    foundation = os.path.abspath(os.path.join(model_dir, "sam_tiny.pt"))
    save_foundation(foundation, sam)
    save_checkpoint(os.path.join(model_dir, "curriculum_box.pt"), PromptHeatmapNet(names, "box", sam.spec.img_size))
    save_checkpoint(os.path.join(model_dir, "curriculum_edges.pt"), PromptHeatmapNet(names, "edges", sam.spec.img_size))
    save_checkpoint(os.path.join(model_dir, "curriculum_sam.pt"), with_own_decoder(sam))
    save_checkpoint(os.path.join(model_dir, "promise.pt"), ProMISe(sam, names))
    return {"sam_checkpoint": foundation, "sam_decoder": "none"}
