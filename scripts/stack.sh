# Shared by scripts/dev.sh and scripts/e2e.sh (sourced, not run): the local stack is the
# official DynamoDB Local on 127.0.0.1 plus the four real function binaries served by
# `cargo lambda watch` on 127.0.0.1. `stack_stop` stops everything `stack_start` started.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAMILIES=(messages dialogs connector app)

stack_log() { printf '[%s] %s\n' "${STACK_NAME:-stack}" "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# stack_start NAME: starts DynamoDB Local and cargo lambda watch; sets STACK_DIR, DDB_ENDPOINT,
# LAMBDA_PORT, TABLE_NAME and the function URLs in URL_<family>.
stack_start() {
  STACK_NAME="$1"; shift
  STACK_DIR="$ROOT/.dev/$STACK_NAME"
  mkdir -p "$STACK_DIR"
  export PATH="$(scripts/sam-tools.sh --path)"
  command -v cargo-lambda >/dev/null || { stack_log "cargo-lambda missing: run make setup"; return 1; }

  local line
  line="$(DDB_RUN_DIR="$STACK_DIR/ddb" scripts/ddb-local.sh start)"
  DDB_ENDPOINT="${line#AWS_ENDPOINT_URL=}"
  TABLE_NAME="${TABLE_NAME:-bitrix24-receiver-local}"
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  AWS_ENDPOINT_URL="$DDB_ENDPOINT" TABLE_NAME="$TABLE_NAME" "$ROOT/target/debug/b24-state" create-table >&2
  stack_log "DynamoDB Local on $DDB_ENDPOINT, table $TABLE_NAME"

  cat >"$STACK_DIR/functions.env" <<ENV
TABLE_NAME=$TABLE_NAME
AWS_ENDPOINT_URL=$DDB_ENDPOINT
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
RUST_LOG=${RUST_LOG:-info}
AWS_LAMBDA_LOG_FORMAT=JSON
METRICS_NAMESPACE=Bitrix24Receiver-local
VERIFIER_ALLOW_INSECURE=${VERIFIER_ALLOW_INSECURE:-false}
ENV
  LAMBDA_PORT="${LAMBDA_PORT:-$(free_port)}"
  # -A 127.0.0.1: the default address is every interface.
  cargo lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" --env-file "$STACK_DIR/functions.env" "$@" \
    >"$STACK_DIR/lambda.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/lambda.pid"
  for f in "${FAMILIES[@]}"; do
    printf -v "URL_$f" '%s' "http://127.0.0.1:$LAMBDA_PORT/lambda-url/b24-fn-$f/bitrix24/$f"
  done

  # The first request to each function builds and starts it; wait until all four answer.
  local f url code deadline=$((SECONDS + ${STACK_WAIT_SECONDS:-600}))
  for f in "${FAMILIES[@]}"; do
    url="URL_$f"; url="${!url}"
    until code="$(curl -s -o /dev/null -w '%{http_code}' -X GET "$url" --max-time 600)" && [[ "$code" == 405 ]]; do
      if ((SECONDS > deadline)) || ! kill -0 "$(cat "$STACK_DIR/lambda.pid")" 2>/dev/null; then
        stack_log "function $f did not come up (last HTTP status '$code'); log: $STACK_DIR/lambda.log"
        tail -n 40 "$STACK_DIR/lambda.log" >&2 || true
        return 1
      fi
      sleep 1
    done
  done
  stack_log "functions on 127.0.0.1:$LAMBDA_PORT"
}

stack_stop() {
  [[ -n "${STACK_DIR:-}" ]] || return 0
  if [[ -f "$STACK_DIR/lambda.pid" ]]; then
    local pid; pid="$(cat "$STACK_DIR/lambda.pid")"
    # SIGINT stops cargo lambda watch and the function processes it started.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    pkill -f "$ROOT/target/debug/b24-fn-" 2>/dev/null || true
    rm -f "$STACK_DIR/lambda.pid"
  fi
  DDB_RUN_DIR="$STACK_DIR/ddb" scripts/ddb-local.sh stop || true
}
