"""The DICOMweb server away for a while (tests/orthanc_outage.py, run in a private network namespace):
clear errors, a label saved meanwhile kept and stored when Orthanc is back. Skips, saying what is
missing, only where Orthanc or ``unshare -n`` cannot be had; .ci/run installs them."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
from orthanc import find_binary, find_dicomweb_plugin  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "orthanc_outage.py")


def missing():
    what = []
    if not find_binary() or not find_dicomweb_plugin():
        what.append("Orthanc with its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb)")
    if not shutil.which("ip") or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        what.append("a private network namespace (unshare -n as root, and iproute2's ip)")
    return what


@pytest.mark.skipif(bool(missing()), reason="the outage test needs: " + "; ".join(missing()))
def test_an_orthanc_outage_loses_nothing(tmp_path, tiny_checkpoint):
    bundled = os.path.join(ROOT, "apps", "pemed", "model", "pemed.pt")
    checkpoint = bundled if os.path.exists(bundled) else tiny_checkpoint
    run = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path), "--checkpoint", checkpoint],
                         capture_output=True, text=True, timeout=900)
    report_file = tmp_path / "report.json"
    assert report_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_file.read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert run.returncode == 0 and report["passed"] and not failed, json.dumps(failed, indent=1) + run.stdout[-3000:]
    assert len(report["checks"]) == 11  # every step ran
