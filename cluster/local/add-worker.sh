#!/usr/bin/env bash
# Add one worker node to the local cluster started by cluster/local/start.sh (same GCS_PORT).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=$(cd "${VENV:-.venv}" && pwd)
export PATH="$VENV/bin:$PATH"
export RAY_AUTH_MODE=token
GCS_PORT=${GCS_PORT:-6380}
WORKER_CPUS=${WORKER_CPUS:-2}
export RAY_API_SERVER_ADDRESS="http://127.0.0.1:${DASHBOARD_PORT:-8265}"  # the head's dashboard (see start.sh)
# No log monitor of its own: every node here writes into the head's log folder (one machine), which
# the head's log monitor already streams to drivers; a second one would print each line twice.
ray start --address="127.0.0.1:$GCS_PORT" --node-ip-address=127.0.0.1 \
    --num-cpus="$WORKER_CPUS" --resources='{"worker_node": 1}' --include-log-monitor=false \
    --disable-usage-stats >/dev/null
