#!/usr/bin/env bash
# Restoration quality at 256x256 on held-out photos of a seed no model trained on: the default
# recipe (the `lut` model, as `make model` trains the bundled one), the poster's recipe
# (jobs/configs/poster.yaml) and the earlier `affine` recipe, trained on the same synthetic photos
# at the same crop size for the same epochs, evaluated per subset (colour / camera / clean) with
# the classical baselines and the two oracles.
#   bash benchmarks/quality.sh [OUT=outputs/quality] [EPOCHS=30] [COUNT=1600] [SIZE=64]
# Re-running resumes finished runs. Report: OUT/eval/report.md (and metrics.json).
set -euo pipefail
OUT=${1:-outputs/quality}; EPOCHS=${2:-30}; COUNT=${3:-1600}; SIZE=${4:-64}
SK=.venv/bin/skinray
[ -d "$OUT/data" ] || $SK synth "$OUT/data" --count "$COUNT" --size 256 --seed 0
[ -d "$OUT/heldout" ] || $SK synth "$OUT/heldout" --count 60 --size 256 --seed 7
COMMON=(--data "$OUT/data" --storage "$OUT/runs" --image-size "$SIZE" --epochs "$EPOCHS" --workers 2
        --batch-size 8 --set data.val_fraction=0.1)
$SK train --config jobs/configs/default.yaml "${COMMON[@]}" --name lut
$SK train --config jobs/configs/poster.yaml "${COMMON[@]}" --name poster
$SK train --config jobs/configs/default.yaml "${COMMON[@]}" --name affine --set model.arch=affine \
    --set model.dropout=0.0 --loss mae+ssim
$SK evaluate --model "$OUT/runs/lut" --model "$OUT/runs/poster" --model "$OUT/runs/affine" \
    --data "$OUT/heldout" --split all --out "$OUT/eval" --size 256
