#!/usr/bin/env bash
# Restoration quality at 256x256: the poster-faithful model, the context model and the affine
# model trained on the same synthetic photos for the same epochs, evaluated with the classical
# baselines on the same held-out images.
#   bash benchmarks/quality.sh [OUT=outputs/quality] [EPOCHS=15] [COUNT=240]
# About 15 min per model on 2 CPU cores (re-running resumes finished runs). Report: OUT/eval/report.md
set -euo pipefail
OUT=${1:-outputs/quality}; EPOCHS=${2:-15}; COUNT=${3:-240}
SK=.venv/bin/skinray
[ -d "$OUT/data" ] || $SK synth "$OUT/data" --count "$COUNT" --size 256 --seed 0
[ -d "$OUT/photos" ] || $SK synth "$OUT/photos" --count 8 --size 256 --seed 5
COMMON=(--data "$OUT/data" --storage "$OUT/runs" --image-size 256 --epochs "$EPOCHS" --workers 2 --batch-size 8)
RECIPE=(--set model.dropout=0.0 --loss mae+ssim --set train.lr_schedule=cosine)
$SK train "${COMMON[@]}" --name context --set model.arch=context "${RECIPE[@]}"
$SK train "${COMMON[@]}" --name poster
$SK train "${COMMON[@]}" --name affine --set model.arch=affine "${RECIPE[@]}"
$SK evaluate --model "$OUT/runs/affine" --model "$OUT/runs/context" --model "$OUT/runs/poster" \
    --data "$OUT/data" --out "$OUT/eval" --size 256 --photos "$OUT/photos"
