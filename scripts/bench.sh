#!/usr/bin/env bash
# `make bench`: every benchmark whose numbers BENCHMARKS.md records, on this machine.
#   criterion   decode throughput and the in-process pieces (cargo bench -p b24-benches)
#   ddb         DynamoDB requests and write units per event (DynamoDB Local)
#   cli         the whole `b24-events decode --lines` process vs PHP's parse_str (php-cli)
#   coldstart   init + first-invoke instructions of b24-fn-messages vs a naive SDK hello
#               (valgrind's callgrind, a fake Lambda Runtime API, DynamoDB Local)
#   changes     commit → change visible on changes.fifo, p50/p99 over 1000 events on the
#               local stack (DynamoDB Local's stream, the runner, the outbox, moto)
# BENCH=cli,coldstart (any subset, comma-separated) runs only those. Installs php-cli and
# valgrind from Debian's packages when missing (as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
only="${BENCH:-criterion,ddb,cli,coldstart,changes}"
want() { [[ ",$only," == *",$1,"* ]]; }
log() { printf '[bench] %s\n' "$*" >&2; }

need=()
want cli && ! command -v php >/dev/null 2>&1 && need+=(php-cli)
want coldstart && ! command -v valgrind >/dev/null 2>&1 && need+=(valgrind)
if ((${#need[@]})); then
  [[ $(id -u) -eq 0 ]] || { log "missing ${need[*]}: apt-get install -y ${need[*]}"; exit 1; }
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

if want criterion; then
  log "criterion (decode)"
  cargo bench --locked -p b24-benches
fi
if want ddb; then
  log "DynamoDB costs per event"
  timeout 900 cargo run --locked -q -p b24-benches --example ddb_costs
fi
if want cli; then
  log "b24-events decode --lines vs PHP parse_str (profile cli)"
  cargo build --locked -q --profile cli -p b24-events-cli
  timeout 1800 benches/decode_lines_vs_php.sh target/cli/b24-events "${BENCH_BODIES:-50000}" "${BENCH_RUNS:-11}"
fi
if want coldstart; then
  log "cold start (callgrind; the first run builds the naive hello: several minutes)"
  cargo build --locked --release -p b24-fn-messages -p b24-fn-app -p b24-events-cli -p b24-state -p b24-coldstart
  CARGO_TARGET_DIR="$PWD/target/naive-hello" timeout 3600 target/release/b24-coldstart \
    --function-bin target/release/b24-fn-messages --runs "${COLDSTART_RUNS:-3}"
fi
if want changes; then
  log "change feed latency on the local stack (${LATENCY_EVENTS:-1000} events)"
  cargo build --locked -q --workspace --bins
  cargo test --locked -q -p b24-tests --test e2e --no-run
  (
    source scripts/stack.sh
    trap 'stack_stop' EXIT
    TABLE_NAME="b24-bench-$$"
    stack_start bench --ignore-changes
    E2E_DDB_ENDPOINT="$DDB_ENDPOINT" E2E_TABLE_NAME="$TABLE_NAME" \
    E2E_URL_MESSAGES="$URL_messages" E2E_URL_DIALOGS="$URL_dialogs" \
    E2E_URL_CONNECTOR="$URL_connector" E2E_URL_APP="$URL_app" E2E_FUNCTION_LOG="$STACK_DIR/lambda.log" \
    E2E_INVOKE_URL="http://127.0.0.1:$LAMBDA_PORT" E2E_LATENCY_EVENTS="${LATENCY_EVENTS:-1000}" \
    E2E_SQS_ENDPOINT="$SQS_ENDPOINT" E2E_CHANGES_QUEUE_URL="$CHANGES_QUEUE_URL" E2E_FAKE_B24_URL="$FAKE_B24_URL" \
      RUST_LOG=warn timeout 900 cargo test --locked -q -p b24-tests --test e2e -- --ignored --exact change_feed_latency --nocapture
  )
fi
