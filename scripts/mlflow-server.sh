#!/usr/bin/env bash
# Start or stop an MLflow tracking server with a database backend and proxied artifacts.
#
#   scripts/mlflow-server.sh [start] [PORT] [DIR]   start on 127.0.0.1:PORT (default 5000),
#                                                   wait until /health answers, print URI + PID
#   scripts/mlflow-server.sh stop [DIR]             stop the server recorded in DIR
#
# DIR (default ~/.local/share/wearssl/mlflow) holds the pid file, the server log and the URI
# (DIR/mlflow.uri), and by default the SQLite database (DIR/mlflow.db) and the artifacts
# (DIR/artifacts).
# Environment (all optional):
#   MLFLOW_BACKEND_STORE_URI      database instead of DIR/mlflow.db, e.g. postgresql://...
#                                 (read it from a secret store at start; never write it in a file)
#   MLFLOW_ARTIFACTS_DESTINATION  where proxied artifacts go instead of DIR/artifacts, e.g. s3://...
#   WEARSSL_MLFLOW_HOST           interface to bind (default 127.0.0.1: loopback only)
#   WEARSSL_MLFLOW_WORKERS        server worker processes (default 2)
#   WEARSSL_MLFLOW_TIMEOUT        seconds to wait for /health (default 120)
#   MLFLOW_SERVER_ALLOWED_HOSTS   Host headers MLflow accepts (its default: localhost, private IPs)
set -euo pipefail

print_usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

absolute_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd)
}

# True when the pid file names a live MLflow server (not a process that reused the pid).
is_running() {
    local pid_file="$1"
    [[ -s "$pid_file" ]] && ps -p "$(cat "$pid_file")" -o args= 2>/dev/null | grep -q mlflow
}

stop_server() {
    local dir pid_file pid
    dir="$(absolute_dir "${1:-$DEFAULT_DIR}")"
    pid_file="$dir/mlflow.pid"
    if ! is_running "$pid_file"; then
        echo "no MLflow server running from $dir"
        rm -f "$pid_file"
        return 0
    fi
    pid="$(cat "$pid_file")"
    # The server leads its own process group when setsid exists: stop the group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    fi
    rm -f "$pid_file" "$dir/mlflow.uri"
    echo "stopped MLflow server (pid $pid)"
}

healthy() {
    local url="$1"
    if command -v curl >/dev/null; then
        curl -sf -o /dev/null --max-time 2 "$url"
    else
        python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "$url" 2>/dev/null
    fi
}

start_server() {
    local port="${1:-5000}" dir host workers timeout pid_file log uri pid launcher
    [[ "$port" =~ ^[0-9]+$ ]] || { echo "error: PORT must be a number, got '$port'" >&2; exit 2; }
    dir="$(absolute_dir "${2:-$DEFAULT_DIR}")"
    host="${WEARSSL_MLFLOW_HOST:-127.0.0.1}"
    workers="${WEARSSL_MLFLOW_WORKERS:-2}"
    timeout="${WEARSSL_MLFLOW_TIMEOUT:-120}"
    pid_file="$dir/mlflow.pid"
    log="$dir/mlflow.log"
    uri="http://$host:$port"
    if is_running "$pid_file"; then
        echo "error: an MLflow server (pid $(cat "$pid_file")) already runs from $dir;" \
            "stop it first: $0 stop $dir" >&2
        exit 1
    fi
    launcher=(nohup)
    command -v setsid >/dev/null && launcher=(setsid nohup)
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "${launcher[@]}" mlflow server \
        --host "$host" \
        --port "$port" \
        --workers "$workers" \
        --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///$dir/mlflow.db}" \
        --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-$dir/artifacts}" \
        --serve-artifacts \
        </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
    for _ in $(seq 1 $((timeout * 2))); do
        if healthy "$uri/health"; then
            echo "$uri" >"$dir/mlflow.uri"
            echo "MLflow tracking server: $uri (pid $pid, log $log)"
            echo "export MLFLOW_TRACKING_URI=$uri"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "error: MLflow server did not answer $uri/health within ${timeout}s; end of $log:" >&2
    tail -n 40 "$log" >&2
    stop_server "$dir" >/dev/null
    exit 1
}

DEFAULT_DIR="${HOME}/.local/share/wearssl/mlflow"

case "${1:-}" in
    stop) shift; stop_server "$@" ;;
    start) shift; start_server "$@" ;;
    -h | --help) print_usage ;;
    *) start_server "$@" ;;
esac
