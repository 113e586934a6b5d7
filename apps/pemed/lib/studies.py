"""Opening a MONAI Label studies folder (images + labels/final) the way the server does."""

from typing import Dict, List

from monailabel.datastore.local import LocalDatastore

STUDY_EXTENSIONS = ("*.nii.gz", "*.nii", "*.png", "*.jpg", "*.jpeg")


def open_studies(folder: str) -> LocalDatastore:
    return LocalDatastore(folder, extensions=STUDY_EXTENSIONS, auto_reload=False)


def labelled(datastore: LocalDatastore) -> List[Dict[str, str]]:
    """[{"image": path, "label": path}, ...] for the images that have a final label, sorted by image."""
    return sorted((d for d in datastore.datalist() if d.get("label")), key=lambda d: d["image"])
