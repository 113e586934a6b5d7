#!/usr/bin/env bash
# Get ready, on this machine, for training on a lent GPU machine that has PyTorch but no package
# registry (the `device` tool of this workplace): download the wheels it lacks for Python 3.12 (the
# versions installed in .venv) into .whl/, copy Colin27's label maps (mricron-data is not there) and
# MONAI Label's installed package into .gpu/, and keep both out of git. Then run
# tools/gpu_session.py there (its docstring has the commands), carrying .whl, .gpu and
# datasets/sample/slices in every call: a path a call does not carry is removed there.
# Which packages: the ones train.py, evaluate.py and ablation.py import that the GPU image does not
# hold (found by running them with every other package blocked). MONAI Label travels as its
# installed package, not its wheel: the wheel's data files land in monailabel/ too, and
# `pip install --target` then replaces the package with them. Its 51 MB OHIF build stays behind.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="monai pytorch-ignite nibabel pydantic pydantic_core pydantic-settings annotated-types
typing-inspection fastapi starlette python-dotenv python-multipart watchdog"
[ -f datasets/sample/colin27_maps.npz ] || { echo "run ./run.sh setup first" >&2; exit 1; }
mkdir -p .git/info .whl .gpu/site
for d in /.whl/ /.gpu/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done
pins=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | python3 -c "
import sys
want = {n.lower().replace('_', '-') for n in '''$PACKAGES'''.split()}
print(' '.join(l.strip() for l in sys.stdin if l.split('==')[0].lower().replace('_', '-') in want))")
rm -f .whl/*.whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
cp datasets/sample/colin27_maps.npz .gpu/
site=$(.venv/bin/python -c "import monailabel, os; print(os.path.dirname(monailabel.__file__))")
rm -rf .gpu/site/monailabel
cp -r "$site" .gpu/site/monailabel
rm -rf .gpu/site/monailabel/endpoints/static
find .gpu/site -name __pycache__ -prune -exec rm -rf {} +
du -sh .whl .gpu
