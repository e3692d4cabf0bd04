#!/usr/bin/env bash
# Start a local Ray cluster on this machine: one head node and WORKERS worker nodes, each its own
# set of processes. The dashboard and job server listen on 127.0.0.1 only; token authentication
# (Ray's default) stays on: clients need RAY_AUTH_MODE=token and the token in ~/.ray/auth_token.
#
#   cluster/local/start.sh            # head + 1 worker node
#   WORKERS=2 cluster/local/start.sh
#   cluster/local/add-worker.sh       # one more worker node
#   cluster/local/stop.sh
#
# Jobs run with this project's .venv first on PATH, so `python` in `ray job submit -- python ...`
# is the project's interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/ray" ] || make install >/dev/null
VENV=$(cd "$VENV" && pwd)
export PATH="$VENV/bin:$PATH"
export RAY_AUTH_MODE=token
WORKERS=${WORKERS:-1}
GCS_PORT=${GCS_PORT:-6380}            # outside Ray's default worker port range 10002-19999
DASHBOARD_PORT=${DASHBOARD_PORT:-8265}
HEAD_CPUS=${HEAD_CPUS:-2}
WORKER_CPUS=${WORKER_CPUS:-2}
AGENT_PORT=${AGENT_PORT:-52365}      # the head's job agent; give another if a Ray already runs here
TEMP_DIR=${TEMP_DIR:-/tmp/skinray-ray-$GCS_PORT}  # this cluster's own session files: stop.sh finds it by them
# Ray's state API (used by Ray Train to check that a run's controller lives) must ask this
# cluster's dashboard, not whichever other Ray on the machine it would find.
export RAY_API_SERVER_ADDRESS="http://127.0.0.1:$DASHBOARD_PORT"

ray start --head --node-ip-address=127.0.0.1 --port="$GCS_PORT" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASHBOARD_PORT" \
    --dashboard-agent-listen-port="$AGENT_PORT" \
    --num-cpus="$HEAD_CPUS" --temp-dir="$TEMP_DIR" --disable-usage-stats >/dev/null
for _ in $(seq 1 "$WORKERS"); do
    VENV="$VENV" GCS_PORT="$GCS_PORT" WORKER_CPUS="$WORKER_CPUS" DASHBOARD_PORT="$DASHBOARD_PORT" \
        "$(dirname "$0")/add-worker.sh"
done
echo "Ray cluster up: head + $WORKERS worker node(s)."
echo "  dashboard and job server: http://127.0.0.1:$DASHBOARD_PORT (loopback only)"
echo "  submit jobs with:  RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:$DASHBOARD_PORT --working-dir . -- python jobs/train.py ..."
