#!/usr/bin/env bash
# Restoration quality at 256x256: the poster-faithful model and the context model trained on the
# same synthetic photos, evaluated with the classical baselines on the same held-out images.
#   bash benchmarks/quality.sh [OUT=outputs/quality] [EPOCHS=15] [COUNT=240]
# Takes ~15-25 min on 2 CPU cores. The report: OUT/eval/report.md
set -euo pipefail
OUT=${1:-outputs/quality}; EPOCHS=${2:-15}; COUNT=${3:-240}
SK=.venv/bin/skinray
[ -d "$OUT/data" ] || $SK synth "$OUT/data" --count "$COUNT" --size 256 --seed 0
[ -d "$OUT/photos" ] || $SK synth "$OUT/photos" --count 8 --size 256 --seed 5
COMMON=(--data "$OUT/data" --storage "$OUT/runs" --image-size 256 --epochs "$EPOCHS" --workers 2 --batch-size 8)
$SK train "${COMMON[@]}" --name context --set model.arch=context --set model.dropout=0.0 \
    --loss mae+ssim --set train.lr_schedule=cosine
$SK train "${COMMON[@]}" --name poster
$SK evaluate --model "$OUT/runs/context" --model "$OUT/runs/poster" --data "$OUT/data" --out "$OUT/eval" \
    --size 256 --photos "$OUT/photos"
