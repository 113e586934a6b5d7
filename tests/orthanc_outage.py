"""The DICOMweb server goes away for a while: clear errors, nothing lost, recovery when it returns.

    python tests/orthanc_outage.py --out runs/orthanc_outage

Runs itself in a private network namespace (Orthanc cannot choose its listen address). Starts Orthanc
with a small MR volume, the app on it, clicks (the series is cached) and saves a label (a DICOM SEG
lands); then stops Orthanc and checks that ``/info/`` and clicks on the cached series are answered,
that listing the studies answers (from MONAI Label's cache) or is a clear 503, and that a label saved meanwhile is refused with a 503 that
says it is kept; then starts Orthanc again and waits for that label to arrive as a second SEG. Writes
``report.json`` (every check, passed or not).
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "apps", "pemed"), os.path.join(ROOT, "tools"), os.path.dirname(__file__)]
from conftest import write_nifti  # noqa: E402
from lib.local_server import LocalServer, copy_app  # noqa: E402
from ohif_browser import Report  # noqa: E402
from orthanc import Orthanc, run_in_private_network, upload_volume  # noqa: E402

SHAPE = (48, 40, 12)


def label_bytes(work: str, value: int) -> bytes:
    label = np.zeros(SHAPE, np.int16)
    label[10:30, 12:28, 3:9] = value
    path = os.path.join(work, f"label_{value}.nii.gz")
    write_nifti(path, label, np.int16)
    with open(path, "rb") as f:
        return f.read()


def click(url: str, series: str) -> int:
    r = requests.post(f"{url}/infer/pemed", params={"image": series, "output": "json"},
                      files={"params": (None, json.dumps({"foreground": [[20, 20, 6]], "reset_state": True}))},
                      timeout=120)
    return r.status_code


def save(url: str, series: str, data: bytes) -> requests.Response:
    return requests.put(f"{url}/datastore/label", params={"image": series},
                        files={"label": ("label.nii.gz", data)}, timeout=120)


def run(args, report: Report) -> None:
    work = tempfile.mkdtemp(prefix="orthanc_outage_")
    volume = os.path.join(work, "volume.nii.gz")
    label = np.zeros(SHAPE, np.int16)
    label[10:30, 12:28, 3:9] = 1
    write_nifti(volume, 50 + 100 * label + np.random.default_rng(0).random(SHAPE))
    cache = os.path.join(work, "cache")
    os.environ["MONAI_LABEL_DICOMWEB_CACHE_PATH"] = cache
    orthanc = Orthanc(os.path.join(work, "orthanc")).start()
    try:
        series = upload_volume(orthanc.dicomweb, volume)
        app = copy_app(os.path.join(work, "app"), args.checkpoint)
        conf = {"pemed_auto_train": "false", "pemed_seg_poll_s": "2", "pemed_dicomweb_modalities": "MR"}
        with LocalServer(app, orthanc.dicomweb, os.path.join(args.out, "server.log"), conf=conf) as server:
            report.check("a click on the series, Orthanc up", click(server.url, series) == 200)
            r = save(server.url, series, label_bytes(work, 77))
            report.check("a label saved, Orthanc up", r.status_code == 200, r.text[:300])
            report.check("one SEG in Orthanc", len(orthanc.series("SEG")) == 1)

            orthanc.stop()
            report.check("/info/ answers, Orthanc down",
                         requests.get(f"{server.url}/info/", timeout=30).status_code == 200)
            report.check("a click on the cached series answers, Orthanc down", click(server.url, series) == 200)
            r = requests.get(f"{server.url}/datastore/", params={"output": "all"}, timeout=60)
            report.check("listing the studies answers from the cache (or a clear 503), Orthanc down",
                         (r.status_code == 200 and series in r.json()["objects"])
                         or (r.status_code == 503 and "cannot be reached" in r.text), f"{r.status_code} {r.text[:200]}")
            kept = label_bytes(work, 78)
            r = save(server.url, series, kept)
            report.check("a label saved while Orthanc is down: 503, kept",
                         r.status_code == 503 and "kept on this server" in r.text, f"{r.status_code} {r.text[:300]}")
            pending = [os.path.join(d, ".pemed_pending") for d, dirs, _ in os.walk(cache) if ".pemed_pending" in dirs]
            waiting = lambda: [f for p in pending for _, _, files in os.walk(p) for f in files]  # noqa: E731
            report.check("the label waits on the server's disk", len(pending) == 1 and len(waiting()) == 2,
                         str(waiting()))

            orthanc = Orthanc(os.path.join(work, "orthanc")).start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(orthanc.series("SEG")) < 2:
                time.sleep(1)
            report.check("the kept label arrives in Orthanc when it is back", len(orthanc.series("SEG")) == 2)
            report.check("nothing is left waiting", not waiting())
            report.check("a click after the outage", click(server.url, series) == 200)
    finally:
        orthanc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint", default=os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    run_in_private_network()
    report = Report(args.out)
    try:
        run(args, report)
    except Exception as e:  # a step that could not run is a failed check, with the report kept
        report.check("every step ran", False, f"{type(e).__name__}: {e}")
    sys.exit(0 if report.save() else 1)


if __name__ == "__main__":
    main()
