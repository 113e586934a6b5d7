"""Orthanc (Debian's packages orthanc + orthanc-dicomweb) as the project's DICOMweb server.

    python tools/orthanc.py --root runs/orthanc --upload datasets/sample/volumes   # serve until Ctrl-C

Orthanc runs with its own configuration and storage under ``--root`` (nothing of the system's
Orthanc is used or changed), answers only to this machine (``RemoteAccessAllowed`` false; Orthanc
cannot choose its listen address, so tests run it in a private network namespace), and has its
DICOM port off: DICOMweb (QIDO/WADO/STOW-RS) at http://127.0.0.1:PORT/dicom-web is the only way in.
``--upload`` converts each NIfTI volume of a folder to a DICOM MR series (datasets/to_dicom.py) and
stores it over STOW-RS.
"""

import argparse
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import pydicom
import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets"))
from to_dicom import series_name, write_series  # noqa: E402

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")


def find_binary() -> Optional[str]:
    return shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None)


def find_dicomweb_plugin() -> Optional[str]:
    return next((p for d in PLUGIN_DIRS for p in glob.glob(os.path.join(d, "libOrthancDicomWeb.so*"))), None)


class Orthanc:
    """One Orthanc process with its own config and storage folder; a context manager."""

    def __init__(self, root: str, port: int = 8042):
        self.root = os.path.abspath(root)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.proc: Optional[subprocess.Popen] = None

    def config(self) -> dict:
        plugin = find_dicomweb_plugin()
        if not plugin:
            raise RuntimeError("Orthanc's DICOMweb plugin is missing: apt-get install orthanc-dicomweb")
        return {
            "Name": "PEMED", "StorageDirectory": os.path.join(self.root, "storage"),
            "IndexDirectory": os.path.join(self.root, "storage"), "HttpPort": self.port,
            "HttpServerEnabled": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": False, "Plugins": [plugin], "StorageCompression": False,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }

    def start(self, timeout_s: float = 60.0) -> "Orthanc":
        binary = find_binary()
        if not binary:
            raise RuntimeError("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
        os.makedirs(os.path.join(self.root, "storage"), exist_ok=True)
        config = os.path.join(self.root, "orthanc.json")
        with open(config, "w") as f:
            json.dump(self.config(), f, indent=2)
        log = open(os.path.join(self.root, "orthanc.log"), "ab")
        self.proc = subprocess.Popen([binary, config], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}; see {self.root}/orthanc.log")
            try:
                if requests.get(f"{self.dicomweb}/studies", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s:.0f} s; see {self.root}/orthanc.log")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def series(self, modality: Optional[str] = None) -> List[dict]:
        """QIDO-RS: every series (of one modality), as DICOM JSON."""
        params = {"Modality": modality} if modality else {}
        r = requests.get(f"{self.dicomweb}/series", params=params, timeout=30)
        r.raise_for_status()
        return r.json() if r.content else []


def run_in_private_network() -> None:
    """Re-run this script in a new network namespace with only loopback up (Orthanc listens on every
    address it has; there it has 127.0.0.1 alone). Needs root or user namespaces, and ``ip``."""
    if os.environ.get("PEMED_PRIVATE_NETWORK") == "1":
        return
    command = " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv)
    os.execvpe("unshare", ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"],
               dict(os.environ, PEMED_PRIVATE_NETWORK="1"))


def stow(dicomweb_url: str, files: List[str], batch: int = 64) -> int:
    """STOW-RS: stores the DICOM files in batches; returns how many the server took."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=dicomweb_url)
    stored = 0
    for i in range(0, len(files), batch):
        response = client.store_instances([pydicom.dcmread(f) for f in files[i:i + batch]])
        stored += len(response.get("ReferencedSOPSequence", [])) if response is not None else 0
    return stored


def upload_volume(dicomweb_url: str, volume: str) -> str:
    """A NIfTI volume as a DICOM MR series on the server; its SeriesInstanceUID."""
    with tempfile.TemporaryDirectory() as tmp:
        series_uid, files = write_series(volume, tmp)
        stored = stow(dicomweb_url, files)
    if stored != len(files):
        raise RuntimeError(f"{volume}: the server stored {stored} of {len(files)} slices")
    return series_uid


def upload_volumes(dicomweb_url: str, folder: str) -> dict:
    """Each NIfTI volume of ``folder`` as a DICOM MR series on the server; {name: SeriesInstanceUID}."""
    return {series_name(v): upload_volume(dicomweb_url, v) for v in sorted(glob.glob(os.path.join(folder, "*.nii*")))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="runs/orthanc", help="config, storage and log folder")
    parser.add_argument("--port", type=int, default=8042)
    parser.add_argument("--upload", help="a folder of NIfTI volumes to store as DICOM series")
    args = parser.parse_args()
    with Orthanc(args.root, args.port) as server:
        if args.upload:
            print(json.dumps({"uploaded": upload_volumes(server.dicomweb, args.upload)}), flush=True)
        print(f"Orthanc DICOMweb at {server.dicomweb} (log {server.root}/orthanc.log); Ctrl-C stops it", flush=True)
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
