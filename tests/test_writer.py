"""The infer task's NRRD answer matches MONAI Label's ITK writer (geometry and voxel order)."""

import numpy as np
import SimpleITK as sitk
from monailabel.transform.writer import write_itk

from lib.infers.pemed import write_label_nrrd


def test_label_nrrd_matches_the_itk_writer(tmp_path):
    label = np.zeros((30, 20, 12), np.uint8, order="F")
    label[5:9, 3:15, 7] = 1
    label[20, 2, 3] = 2
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.1, 2.5])
    affine[:3, 3] = [12.5, -30.0, 7.25]
    write_itk(label, str(tmp_path / "itk.nrrd"), affine, "uint8", False)
    write_label_nrrd(label, affine, str(tmp_path / "ours.nrrd"))
    a, b = sitk.ReadImage(str(tmp_path / "itk.nrrd")), sitk.ReadImage(str(tmp_path / "ours.nrrd"))
    assert np.allclose(a.GetSpacing(), b.GetSpacing()) and np.allclose(a.GetOrigin(), b.GetOrigin())
    assert np.allclose(a.GetDirection(), b.GetDirection())
    assert (sitk.GetArrayFromImage(a) == sitk.GetArrayFromImage(b)).all()
    assert (sitk.GetArrayFromImage(b).transpose() == label).all()
