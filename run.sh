#!/usr/bin/env bash
# PE-MED Label: set up a fresh machine and start the app on the bundled sample, or run the tests.
#   ./run.sh start   venv + system packages + sample data, then the MONAI Label server on 127.0.0.1:8000
#   ./run.sh test    the same set-up, then the test suite
#   ./run.sh dicomweb  the same, with the sample as DICOM on a local Orthanc (DICOMweb) and the app on it
#   ./run.sh setup   set-up only
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${PEMED_VENV:-$ROOT/.venv}
PORT=${PEMED_PORT:-8000}
PY=${PYTHON:-python3}

setup_system() {
  if [ ! -f /usr/share/mricron/templates/aal.nii.gz ]; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mricron-data >/dev/null
  fi
}

# The browser test's system parts: Orthanc with DICOMweb, Debian's Chromium, ip for the private network.
# Without root they are left out, and that test says it skips and why.
setup_test_system() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/sbin/Orthanc ] || ! ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so* >/dev/null 2>&1 || ! command -v ip >/dev/null; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
        orthanc orthanc-dicomweb chromium iproute2 >/dev/null; } \
      || echo "run.sh: could not install orthanc, chromium or iproute2; the browser test will skip" >&2
  fi
}

setup_venv() {
  local stamp="$VENV/.requirements-$(sha1sum requirements.txt | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    touch "$stamp"
  fi
}

setup_sample() {
  [ -f datasets/sample/labels.json ] && [ -f datasets/sample/colin27_maps.npz ] || "$VENV/bin/python" datasets/build_sample.py --out datasets/sample
}

setup() {
  setup_system
  setup_venv
  setup_sample
  [ -f apps/pemed/model/pemed.pt ] || { echo "apps/pemed/model/pemed.pt is missing: see apps/pemed/model/MODEL_CARD.md to train it" >&2; exit 1; }
}

case "${1:-}" in
  setup) setup ;;
  start)
    setup
    export PATH="$VENV/bin:$PATH"
    exec monailabel start_server --app apps/pemed --studies datasets/sample/volumes --host 127.0.0.1 --port "$PORT"
    ;;
  dicomweb)
    setup
    setup_test_system
    export PATH="$VENV/bin:$PATH"
    "$VENV/bin/python" tools/orthanc.py --root runs/orthanc --upload datasets/sample/volumes &
    ORTHANC_PID=$!
    trap 'kill $ORTHANC_PID 2>/dev/null' EXIT
    "$VENV/bin/python" -c "import sys, time, requests
for _ in range(240):
    try:
        if requests.get('http://127.0.0.1:8042/dicom-web/series', params={'Modality': 'MR'}, timeout=2).json():
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit('Orthanc did not come up with the sample: see runs/orthanc/orthanc.log')"
    monailabel start_server --app apps/pemed --studies http://127.0.0.1:8042/dicom-web --host 127.0.0.1 --port "$PORT"
    ;;
  test)
    setup
    setup_test_system
    shift
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *) echo "usage: $0 start|dicomweb|test|setup" >&2; exit 2 ;;
esac
