#!/usr/bin/env bash
# The end-to-end test of `make test`: the local stack (DynamoDB Local + the real function
# binaries under `cargo lambda watch`) driven through a whole portal lifecycle by
# `b24-events send` (tests/tests/e2e.rs). Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --workspace --bins --locked
cargo test -p b24-tests --test e2e --locked --no-run
source scripts/stack.sh
trap 'stack_stop' EXIT
TABLE_NAME="b24-e2e-$$"
stack_start e2e --ignore-changes
E2E_DDB_ENDPOINT="$DDB_ENDPOINT" E2E_TABLE_NAME="$TABLE_NAME" \
E2E_URL_MESSAGES="$URL_messages" E2E_URL_DIALOGS="$URL_dialogs" \
E2E_URL_CONNECTOR="$URL_connector" E2E_URL_APP="$URL_app" E2E_FUNCTION_LOG="$STACK_DIR/lambda.log" \
  RUST_BACKTRACE=0 timeout 600 cargo test -p b24-tests --test e2e --locked -- --ignored --test-threads 1
