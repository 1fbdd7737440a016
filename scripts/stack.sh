# Shared by scripts/dev.sh and scripts/e2e.sh (sourced, not run): the local stack is DynamoDB
# Local and moto's server (SQS: parked, changes.fifo and their DLQs) on 127.0.0.1 (started by `b24-local ddb` / `b24-local moto`),
# the real function binaries served by `cargo lambda watch` on 127.0.0.1, and `b24-local run`,
# which plays the event source mappings of template.yaml (scripts/runner.json) against them.
# `stack_stop` stops everything `stack_start` started, by pid.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAMILIES=(messages dialogs connector app)
B24_LOCAL="$ROOT/target/debug/b24-local"

stack_log() { printf '[%s] %s\n' "${STACK_NAME:-stack}" "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_server NAME CMD...: runs CMD in the background (stdout to NAME.out, stderr to NAME.log),
# waits for its `AWS_ENDPOINT_URL=...` line and prints the URL.
start_server() {
  local name="$1"; shift
  "$@" >"$STACK_DIR/$name.out" 2>"$STACK_DIR/$name.log" </dev/null &
  echo $! >"$STACK_DIR/$name.pid"
  local i line
  for i in $(seq 1 600); do
    line="$(grep -m1 '^AWS_ENDPOINT_URL=' "$STACK_DIR/$name.out" 2>/dev/null || true)"
    if [[ -n "$line" ]]; then echo "${line#AWS_ENDPOINT_URL=}"; return 0; fi
    kill -0 "$(cat "$STACK_DIR/$name.pid")" 2>/dev/null || break
    sleep 0.1
  done
  stack_log "$name did not start; log: $STACK_DIR/$name.log"
  tail -n 20 "$STACK_DIR/$name.log" >&2 || true
  return 1
}

stop_pid_file() {
  local file="$1" signal="${2:-TERM}" pid
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$file"
}

# stack_start NAME [cargo lambda watch args...]: starts DynamoDB Local, cargo lambda watch and
# the event-source runner; sets STACK_DIR, DDB_ENDPOINT, LAMBDA_PORT, TABLE_NAME and the
# function URLs in URL_<family>. DDB_PORT / LAMBDA_PORT pick fixed ports (default: free ones);
# DDB_DATA_DIR keeps the table on disk (it survives a restart of DynamoDB Local).
stack_start() {
  STACK_NAME="$1"; shift
  STACK_DIR="$ROOT/.dev/$STACK_NAME"
  mkdir -p "$STACK_DIR"
  export PATH="$(scripts/sam-tools.sh --path)"
  command -v cargo-lambda >/dev/null || { stack_log "cargo-lambda missing: run make setup"; return 1; }
  [[ -x "$B24_LOCAL" ]] || { stack_log "$B24_LOCAL missing: cargo build --workspace --bins"; return 1; }

  local ddb_args=(ddb)
  [[ -n "${DDB_PORT:-}" ]] && ddb_args+=(--port "$DDB_PORT")
  [[ -n "${DDB_DATA_DIR:-}" ]] && { mkdir -p "$DDB_DATA_DIR"; ddb_args+=(--data-dir "$DDB_DATA_DIR"); }
  DDB_ENDPOINT="$(start_server ddb "$B24_LOCAL" "${ddb_args[@]}")" || return 1
  # What `stack_ddb start` needs to bring it back on the same port (and data directory).
  printf '%s\n' "${DDB_ENDPOINT##*:}" "${DDB_DATA_DIR:-}" >"$STACK_DIR/ddb.args"
  TABLE_NAME="${TABLE_NAME:-bitrix24-receiver-local}"
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
  AWS_ENDPOINT_URL="$DDB_ENDPOINT" TABLE_NAME="$TABLE_NAME" "$ROOT/target/debug/b24-state" create-table >&2
  stack_log "DynamoDB Local on $DDB_ENDPOINT, table $TABLE_NAME"

  local moto_args=(moto)
  [[ -n "${MOTO_PORT:-}" ]] && moto_args+=(--port "$MOTO_PORT")
  SQS_ENDPOINT="$(start_server moto "$B24_LOCAL" "${moto_args[@]}")" || return 1
  # The template's queues: parked (redrive policy to its DLQ after 30 receives) and its DLQ.
  local queues
  queues="$("$ROOT/.venv-moto/bin/python" - "$SQS_ENDPOINT" "$STACK_NAME" <<'PY'
import json, sys, boto3
endpoint, stack = sys.argv[1], sys.argv[2]
sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
dlq = sqs.create_queue(QueueName=f"{stack}-parked-dlq",
                       Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
parked = sqs.create_queue(QueueName=f"{stack}-parked", Attributes={
    "MessageRetentionPeriod": "1209600", "VisibilityTimeout": "60",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "30"})})["QueueUrl"]
# The change feed: changes.fifo (deduplicated by the change id, ordered per message group) with
# its FIFO DLQ, and the outbox mapping's on-failure queue.
changes_dlq = sqs.create_queue(QueueName=f"{stack}-changes-dlq.fifo", Attributes={
    "FifoQueue": "true", "MessageRetentionPeriod": "1209600"})["QueueUrl"]
changes_dlq_arn = sqs.get_queue_attributes(QueueUrl=changes_dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
changes = sqs.create_queue(QueueName=f"{stack}-changes.fifo", Attributes={
    "FifoQueue": "true", "ContentBasedDeduplication": "false",
    "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
    "MessageRetentionPeriod": "1209600", "VisibilityTimeout": "60",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": changes_dlq_arn, "maxReceiveCount": "20"})})["QueueUrl"]
failures = sqs.create_queue(QueueName=f"{stack}-outbox-failures",
                            Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
# Talking back: portal tasks (binder) and delivery acks (acks function), the vault's KMS key,
# the app's client secret as an SSM SecureString (the fake Bitrix24's default app).
tasks = sqs.create_queue(QueueName=f"{stack}-portal-tasks", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
acks = sqs.create_queue(QueueName=f"{stack}-acks", Attributes={"VisibilityTimeout": "120"})["QueueUrl"]
kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
key = kms.create_key(Description=f"{stack} vault")["KeyMetadata"]["Arn"]
ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="local", aws_secret_access_key="local")
ssm.put_parameter(Name=f"/b24/{stack}/client-secret", Value="fake-client-secret",
                  Type="SecureString", Overwrite=True)
print(parked, dlq, changes, changes_dlq, failures, tasks, acks, key)
PY
)" || { stack_log "creating the queues on $SQS_ENDPOINT failed"; return 1; }
  read -r PARKED_QUEUE_URL PARKED_DLQ_URL CHANGES_QUEUE_URL CHANGES_DLQ_URL OUTBOX_FAILURES_QUEUE_URL \
    PORTAL_TASKS_QUEUE_URL ACKS_QUEUE_URL TOKENS_KMS_KEY_ID <<<"$queues"
  export CHANGES_QUEUE_URL ACKS_QUEUE_URL

  # The fake Bitrix24 (REST + OAuth) the functions talk back to; app local.b24fake.app.
  local fake_args=()
  [[ -n "${FAKE_B24_PORT:-}" ]] && fake_args+=(--port "$FAKE_B24_PORT")
  # Every token the fake issues starts with this marker: tests grep every output for it.
  fake_args+=(--token-prefix "${FAKE_B24_TOKEN_PREFIX:-LEAKCHECK}")
  "$ROOT/target/debug/b24-fake-bitrix24" "${fake_args[@]}" >"$STACK_DIR/fake-b24.out" 2>"$STACK_DIR/fake-b24.log" </dev/null &
  echo $! >"$STACK_DIR/fake-b24.pid"
  FAKE_B24_URL=""
  for _ in $(seq 1 100); do
    FAKE_B24_URL="$(sed -n 's/^BITRIX24_FAKE_URL=//p' "$STACK_DIR/fake-b24.out" 2>/dev/null | head -1)"
    [[ -n "$FAKE_B24_URL" ]] && break
    sleep 0.1
  done
  [[ -n "$FAKE_B24_URL" ]] || { stack_log "the fake Bitrix24 did not start: $STACK_DIR/fake-b24.log"; return 1; }
  export FAKE_B24_URL
  stack_log "fake Bitrix24 on $FAKE_B24_URL"
  stack_log "moto (SQS) on $SQS_ENDPOINT; parked queue $PARKED_QUEUE_URL; changes $CHANGES_QUEUE_URL"

  LAMBDA_PORT="${LAMBDA_PORT:-$(free_port)}"
  cat >"$STACK_DIR/functions.env" <<ENV
TABLE_NAME=$TABLE_NAME
PARKED_QUEUE_URL=$PARKED_QUEUE_URL
CHANGES_QUEUE_URL=$CHANGES_QUEUE_URL
PORTAL_TASKS_QUEUE_URL=$PORTAL_TASKS_QUEUE_URL
ACKS_QUEUE_URL=$ACKS_QUEUE_URL
TOKENS_KMS_KEY_ID=$TOKENS_KMS_KEY_ID
BITRIX24_CLIENT_ID=${BITRIX24_CLIENT_ID:-local.b24fake.app}
BITRIX24_CLIENT_SECRET_PARAMETER=/b24/$STACK_NAME/client-secret
BITRIX24_OAUTH_URL=$FAKE_B24_URL/oauth/token/
HANDLER_URL_TEMPLATE=http://127.0.0.1:$LAMBDA_PORT/lambda-url/b24-fn-{family}/bitrix24/{family}
AWS_ENDPOINT_URL_KMS=$SQS_ENDPOINT
AWS_ENDPOINT_URL_SSM=$SQS_ENDPOINT
AWS_ENDPOINT_URL=$DDB_ENDPOINT
AWS_ENDPOINT_URL_DYNAMODB=$DDB_ENDPOINT
AWS_ENDPOINT_URL_SQS=$SQS_ENDPOINT
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=local
AWS_SECRET_ACCESS_KEY=local
RUST_LOG=${RUST_LOG:-info}
AWS_LAMBDA_LOG_FORMAT=JSON
METRICS_NAMESPACE=Bitrix24Receiver-local
# The local-test switch: plain-HTTP portal endpoints and the fake's OAuth URL (never in AWS).
VERIFIER_ALLOW_INSECURE=true
ENV
  # -A 127.0.0.1: the default address is every interface.
  cargo lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" --env-file "$STACK_DIR/functions.env" "$@" \
    >"$STACK_DIR/lambda.log" 2>&1 </dev/null &
  echo $! >"$STACK_DIR/lambda.pid"
  for f in "${FAMILIES[@]}"; do
    printf -v "URL_$f" '%s' "http://127.0.0.1:$LAMBDA_PORT/lambda-url/b24-fn-$f/bitrix24/$f"
  done

  # The first request to each function builds and starts it; wait until all answer.
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
  # The stream and queue consumers: an empty batch builds and starts each once.
  for f in purge outbox redrive binder acks; do
    until code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"Records":[]}' \
        "http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/b24-fn-$f/invocations" --max-time 600)" && [[ "$code" == 200 ]]; do
      if ((SECONDS > deadline)); then stack_log "function $f did not come up ($code)"; return 1; fi
      sleep 1
    done
  done
  stack_log "functions on 127.0.0.1:$LAMBDA_PORT"

  LAMBDA_INVOKE_URL="http://127.0.0.1:$LAMBDA_PORT" DDB_ENDPOINT="$DDB_ENDPOINT" TABLE_NAME="$TABLE_NAME" \
    SQS_ENDPOINT="$SQS_ENDPOINT" PARKED_QUEUE_URL="$PARKED_QUEUE_URL" \
    OUTBOX_FAILURES_QUEUE_URL="$OUTBOX_FAILURES_QUEUE_URL" PORTAL_TASKS_QUEUE_URL="$PORTAL_TASKS_QUEUE_URL" \
    ACKS_QUEUE_URL="$ACKS_QUEUE_URL" RUNNER_STATE_DIR="$STACK_DIR" \
    AWS_ENDPOINT_URL_DYNAMODB="$DDB_ENDPOINT" AWS_ENDPOINT_URL_SQS="$SQS_ENDPOINT" \
    "$B24_LOCAL" run --config "$ROOT/scripts/runner.json" >"$STACK_DIR/runner.out" 2>"$STACK_DIR/runner.log" </dev/null &
  echo $! >"$STACK_DIR/runner.pid"
  stack_log "event-source runner for $(python3 -c 'import json,sys; print(", ".join(s["function"] for s in json.load(open(sys.argv[1]))["sources"]))' "$ROOT/scripts/runner.json")"
}

stack_stop() {
  [[ -n "${STACK_DIR:-}" ]] || return 0
  stop_pid_file "$STACK_DIR/runner.pid" TERM
  if [[ -f "$STACK_DIR/lambda.pid" ]]; then
    # SIGINT stops cargo lambda watch and the function processes it started.
    stop_pid_file "$STACK_DIR/lambda.pid" INT
    pkill -f "$ROOT/target/debug/b24-fn-" 2>/dev/null || true
  fi
  stop_pid_file "$STACK_DIR/fake-b24.pid" TERM
  stop_pid_file "$STACK_DIR/moto.pid" TERM
  stop_pid_file "$STACK_DIR/ddb.pid" TERM
}

# stack_ddb stop|start NAME: stops DynamoDB Local of a running stack, or starts it again on the
# same port and data directory (scripts/dev-ddb.sh; the parking path by hand).
stack_ddb() {
  local action="$1"; STACK_NAME="$2"; STACK_DIR="$ROOT/.dev/$STACK_NAME"
  [[ -f "$STACK_DIR/ddb.args" ]] || { stack_log "no stack '$STACK_NAME' is running (start it with make dev)"; return 1; }
  local port data
  { read -r port; read -r data; } <"$STACK_DIR/ddb.args"
  case "$action" in
    stop)
      [[ -f "$STACK_DIR/ddb.pid" ]] || { stack_log "DynamoDB Local is not running"; return 0; }
      stop_pid_file "$STACK_DIR/ddb.pid" TERM
      stack_log "DynamoDB Local stopped (port $port); events now park on the queue"
      ;;
    start)
      if [[ -f "$STACK_DIR/ddb.pid" ]] && kill -0 "$(cat "$STACK_DIR/ddb.pid")" 2>/dev/null; then
        stack_log "DynamoDB Local is already running on port $port"; return 0
      fi
      local args=(ddb --port "$port")
      [[ -n "$data" ]] && args+=(--data-dir "$data")
      local endpoint
      endpoint="$(start_server ddb "$B24_LOCAL" "${args[@]}")" || return 1
      stack_log "DynamoDB Local back on $endpoint; the redrive applies what was parked"
      ;;
    *) stack_log "usage: stack_ddb stop|start NAME"; return 2 ;;
  esac
}
