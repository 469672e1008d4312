#!/usr/bin/env bash
# Start a real Ray head from the venv (token auth on, dashboard on loopback), submit the
# pre-training job to it with `ray job submit --working-dir .`, check it succeeded, stop Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$(pwd)/$VENV/bin:$PATH"
export RAY_AUTH_MODE=token RAY_DATA_DISABLE_PROGRESS_BARS=1
free_port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DASHBOARD_PORT=${DASHBOARD_PORT:-$(free_port)}
AGENT_PORT=${AGENT_PORT:-$(free_port)}
WORK=$(mktemp -d)
RAY_TMP="$WORK/ray"
# stop only this head's processes (they all carry its temp dir), not other Ray sessions
trap 'pkill -9 -f "$RAY_TMP" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

ray start --head --temp-dir "$RAY_TMP" --num-cpus 2 --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
    --dashboard-agent-listen-port "$AGENT_PORT" \
    --include-dashboard true --disable-usage-stats >"$WORK/ray-start.log" 2>&1 \
    || { cat "$WORK/ray-start.log"; exit 1; }

python jobs/synth.py --subjects 6 --days 1 --out "$WORK/corpus" --seed 0 >/dev/null
ADDRESS="http://127.0.0.1:$DASHBOARD_PORT"
# the head's job agent comes up a little after `ray start` returns
for _ in $(seq 60); do ray job list --address "$ADDRESS" >/dev/null 2>&1 && break; sleep 2; done
for attempt in 1 2 3 4 5; do
  ray job submit --address "$ADDRESS" --working-dir . -- \
    python jobs/pretrain.py name=submit-smoke "corpus=$WORK/corpus" \
    "runtime.storage_path=$WORK/runs" "tracking.tracking_uri=sqlite:///$WORK/mlflow.db" \
    optim.epochs=1 optim.max_steps_per_epoch=1 sampling.windows_per_subject=16 \
    sampling.subjects_per_batch=2 eval.windows_per_subject=16 tracking.registered_model=null \
    >"$WORK/job.log" 2>&1 && break
  grep -q "No available agent" "$WORK/job.log" || break
  sleep 10
done
cat "$WORK/job.log"
grep -q "pre-training finished: 1 epochs" "$WORK/job.log"
grep -q "succeeded" "$WORK/job.log"
echo "job-submit smoke: passed"
