#!/usr/bin/env bash
# Stop the local cluster that cluster/local/start.sh started with the same GCS_PORT (or TEMP_DIR).
# Only that cluster's processes are stopped; other Ray instances on the machine keep running.
set -uo pipefail
GCS_PORT=${GCS_PORT:-6380}
TEMP_DIR=${TEMP_DIR:-/tmp/skinray-ray-$GCS_PORT}
for signal in TERM KILL; do
    pkill "-$signal" -f -- "$TEMP_DIR" 2>/dev/null || true
    for _ in $(seq 1 20); do
        pgrep -f -- "$TEMP_DIR" >/dev/null || break
        sleep 0.5
    done
done
if pgrep -f -- "$TEMP_DIR" >/dev/null; then
    echo "some processes of the cluster in $TEMP_DIR are still running" >&2
    exit 1
fi
echo "Ray cluster in $TEMP_DIR stopped."
