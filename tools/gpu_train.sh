#!/usr/bin/env bash
# Train the default PE-MED network from the training-data engine on a lent GPU machine, in one command
# that ends inside the device tool's 10-minute limit. Run there from the repository root, carrying .whl
# and .gpu (tools/gpu_prepare.sh makes them). Results go to $OUT (the tool's return folder; runs/gpu
# elsewhere): the checkpoint split into 15 MB parts (each returned file must stay under 16 MiB), the
# run's record and log. Join the parts with `cat pemed.pt.part-* > pemed.pt`.
#   EPOCHS=12 SAMPLES=4096 BATCH=32 WORKERS=14 LIMIT_S=540 INIT=apps/pemed/model/pemed.pt bash tools/gpu_train.sh
set -uo pipefail
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT" runs/gpu
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout "${LIMIT_S:-540}" python3 apps/pemed/train.py --engine --device cuda --maps-cache .gpu/colin27_maps.npz \
  --out runs/gpu/pemed.pt --init "${INIT:-apps/pemed/model/pemed.pt}" --epochs "${EPOCHS:-12}" \
  --samples-per-epoch "${SAMPLES:-4096}" --batch "${BATCH:-32}" --lr "${LR:-3e-4}" --workers "${WORKERS:-14}" \
  --resume > "$OUT/train.log" 2>&1
echo "train.py exit status $?"
grep -E "val_mean_dice:|checkpoint written" "$OUT/train.log" | tail -4
[ -f runs/gpu/pemed.pt ] && split -b 15M runs/gpu/pemed.pt "$OUT/pemed.pt.part-"
cp runs/gpu/pemed_run/train_stats.json "$OUT/" 2>/dev/null
cp runs/gpu/pemed.train.json "$OUT/" 2>/dev/null
ls -la "$OUT"
