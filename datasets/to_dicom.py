"""NIfTI volumes as DICOM MR series (one file a slice), to put the sample on a DICOMweb server.

    python datasets/to_dicom.py datasets/sample/volumes/ch2.nii.gz OUT_DIR [--modality MR]

Each slice carries the volume's geometry (Image Position/Orientation Patient, Pixel Spacing, Slice
Thickness), so a viewer or MONAI Label's DICOM reader rebuilds the same volume; ``geometry_difference``
reads the series back and compares it with its source. UIDs derive from the file name, so converting
the same volume again gives the same series (a DICOMweb server then keeps one copy).
"""

import argparse
import json
import os
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk
from pydicom.uid import generate_uid

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def series_name(volume_path: str) -> str:
    return os.path.basename(volume_path).split(".")[0]


def write_series(volume_path: str, out_dir: str, modality: str = "MR", patient: str = "PEMED-SAMPLE") -> Tuple[str, List[str]]:
    """Writes ``volume_path`` as one DICOM file a slice under ``out_dir``; returns (SeriesInstanceUID, files)."""
    image = sitk.ReadImage(volume_path)
    if image.GetDimension() != 3:
        raise ValueError(f"{volume_path}: a 3D volume is needed, got {image.GetDimension()}D")
    image = sitk.Cast(image, sitk.sitkInt16)  # MR and CT stored as signed 16-bit, like most scanners
    name = series_name(volume_path)
    study_uid = generate_uid(entropy_srcs=[patient, "study"])
    series_uid = generate_uid(entropy_srcs=[patient, name, "series"])
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))  # row, then column cosines
    shared: Dict[str, str] = {
        "0008|0016": MR_IMAGE_STORAGE if modality == "MR" else CT_IMAGE_STORAGE,
        "0008|0020": "20261201", "0008|0030": "120000",
        "0008|0060": modality,
        "0008|103e": f"{name} (PE-MED sample)",
        "0010|0010": patient, "0010|0020": patient,
        "0020|000d": study_uid, "0020|000e": series_uid,
        "0020|0010": "1", "0020|0011": str(1 + sum(map(ord, name)) % 900),
        "0020|0037": orientation,
        "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        "0028|1050": "100", "0028|1051": "200",  # a window that shows the sample's 0..255 intensities
    }
    os.makedirs(out_dir, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    files = []
    for z in range(image.GetDepth()):
        frame = image[:, :, z]
        for tag, value in shared.items():
            frame.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        frame.SetMetaData("0020|0032", "\\".join(f"{v:.6f}" for v in position))
        frame.SetMetaData("0020|0013", str(z + 1))
        frame.SetMetaData("0008|0018", generate_uid(entropy_srcs=[series_uid, str(z)]))
        path = os.path.join(out_dir, f"{name}_{z:04d}.dcm")
        writer.SetFileName(path)
        writer.Execute(frame)
        files.append(path)
    return series_uid, files


def read_series(series_dir: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(series_dir))
    return reader.Execute()


def geometry_difference(volume_path: str, series_dir: str) -> Dict[str, float]:
    """How far the series read back lies from its source: spacing, origin (mm), direction, voxels."""
    source, back = sitk.ReadImage(volume_path), read_series(series_dir)
    if source.GetSize() != back.GetSize():
        raise ValueError(f"size {back.GetSize()} read back, {source.GetSize()} written")
    return {
        "spacing": float(np.max(np.abs(np.subtract(source.GetSpacing(), back.GetSpacing())))),
        "origin_mm": float(np.max(np.abs(np.subtract(source.GetOrigin(), back.GetOrigin())))),
        "direction": float(np.max(np.abs(np.subtract(source.GetDirection(), back.GetDirection())))),
        "voxels": float(np.max(np.abs(sitk.GetArrayFromImage(source).astype(np.float64)
                                      - sitk.GetArrayFromImage(back).astype(np.float64)))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volume")
    parser.add_argument("out_dir")
    parser.add_argument("--modality", default="MR", choices=["MR", "CT"])
    args = parser.parse_args()
    series_uid, files = write_series(args.volume, args.out_dir, args.modality)
    print(json.dumps({"series": series_uid, "files": len(files),
                      "read_back_difference": geometry_difference(args.volume, args.out_dir)}))


if __name__ == "__main__":
    main()
