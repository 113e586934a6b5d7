"""The browser test (tests/ohif_browser.py): OHIF over Orthanc in Debian's headless Chromium, run in a
private network namespace. It skips, saying what is missing, only where those cannot be had; .ci/run
installs them (apt: orthanc orthanc-dicomweb chromium iproute2; pip: playwright)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import APP_DIR, MRICRON, ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
from orthanc import find_binary, find_dicomweb_plugin  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ohif_browser.py")


def missing():
    what = []
    if not find_binary() or not find_dicomweb_plugin():
        what.append("Orthanc with its DICOMweb plugin (apt-get install orthanc orthanc-dicomweb)")
    if not os.path.exists("/usr/bin/chromium"):
        what.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        what.append("playwright (pip install playwright)")
    if not shutil.which("ip") or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        what.append("a private network namespace (unshare -n as root, and iproute2's ip)")
    if not os.path.exists(os.path.join(MRICRON, "aal.nii.gz")):
        what.append("the mricron-data templates")
    if not os.path.exists(os.path.join(APP_DIR, "model", "pemed.pt")):
        what.append("the bundled checkpoint apps/pemed/model/pemed.pt")
    return what


@pytest.mark.skipif(bool(missing()), reason="browser test needs: " + "; ".join(missing()))
def test_annotating_in_ohif_over_orthanc(tmp_path):
    out = tmp_path / "ohif"
    run = subprocess.run([sys.executable, SCRIPT, "--out", str(out)], capture_output=True, text=True, timeout=1200)
    report_file = out / "report.json"
    assert report_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_file.read_text())
    failed = [c for c in report["checks"] if not c["ok"]]
    assert run.returncode == 0 and report["passed"] and not failed, json.dumps(failed, indent=1) + run.stderr[-2000:]
    assert len(report["checks"]) >= 20  # every step ran
    for shot in ("1_study_list", "2_viewer", "3_panel_connected", "4_first_click", "5_correcting_click",
                 "5b_second_structure", "6_saved"):
        assert (out / f"{shot}.png").stat().st_size > 10_000
