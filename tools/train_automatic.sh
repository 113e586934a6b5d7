#!/bin/bash
# The automatic methods' models from scratch, as trained for the README's figures, then their evaluation.
#   bash tools/train_automatic.sh [OUT=runs/auto] [DEVICE=cpu]
# The README's figures come from these budgets on this project's 2-core CPU, in two sittings: the
# foundation model with one thread while the detector, the edge-point network and the UNet trained
# one after another on the other (the edge-point network was stopped after 5 of a planned 9 epochs,
# so its learning rate fell as a 9-epoch run's does: every 2 epochs by 0.6; "--epochs 5" steps it
# every epoch); then ProMISe and Curriculum's decoders, first 4 epochs each (the README's "earlier"
# rows), in the next sitting 40 from scratch, two at a time on one thread each. The detector and
# the edge-point network start from the app's PE-MED checkpoint (train_auto.py --pemed). A GPU run
# takes DEVICE=cuda and larger budgets. Each step resumes where it stopped (--resume). The files
# carry the app's names: copy them into apps/pemed/model/ (task_unet.pt is the evaluation's
# baseline, not served) to serve them.
set -e
OUT=${1:-runs/auto}
DEVICE=${2:-cpu}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
$PY apps/pemed/train_sam.py --engine --out "$OUT/sam_tiny.pt" --epochs 40 --samples-per-epoch 512 --batch 8 \
  --device "$DEVICE" --resume
$PY apps/pemed/train_auto.py box --engine --out "$OUT/curriculum_box.pt" --epochs 24 --samples-per-epoch 640 \
  --batch 8 --device "$DEVICE" --resume
$PY apps/pemed/train_auto.py edges --engine --out "$OUT/curriculum_edges.pt" --epochs 5 --samples-per-epoch 640 \
  --batch 8 --device "$DEVICE" --resume
$PY apps/pemed/train_auto.py unet --engine --out "$OUT/task_unet.pt" --epochs 24 --samples-per-epoch 640 \
  --batch 8 --device "$DEVICE" --resume
for m in promise curriculum_sam; do
  $PY apps/pemed/train_auto.py $m --engine --base "$OUT/sam_tiny.pt" --out "$OUT/$m.pt" --epochs 40 \
    --samples-per-epoch 192 --batch 8 --device "$DEVICE" --resume
done
$PY apps/pemed/train_auto.py curriculum_sam --edge-positive --engine --base "$OUT/sam_tiny.pt" \
  --out "$OUT/curriculum_sam_positive.pt" --epochs 40 --samples-per-epoch 192 --batch 8 --device "$DEVICE" --resume
$PY apps/pemed/evaluate_auto.py --models "$OUT" --edge-positive-decoder "$OUT/curriculum_sam_positive.pt" \
  --synthetic 2 --real 1 --out benchmarks/results/automatic/eval.json
$PY benchmarks/automatic_latency.py --models "$OUT" --out benchmarks/results/automatic/latency.json
