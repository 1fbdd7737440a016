#!/usr/bin/env bash
# Chaos and burst runs of lossless ingest (tests/tests/chaos.rs): DynamoDB Local paused and
# stopped mid-stream, a burst, a poison parked message. `CHAOS_SCALE=full` (make chaos) runs the
# issue's sizes; otherwise the short form `make test` runs. Every server is started and stopped
# by the test itself on 127.0.0.1; each run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scale="${CHAOS_SCALE:-short}"
limit=600
[[ "$scale" == full ]] && limit=1800
echo "== chaos ($scale)"
CHAOS_SCALE="$scale" RUST_BACKTRACE=0 timeout "$limit" \
  cargo test -p b24-tests --test chaos --locked -- --ignored --test-threads 1 --nocapture 2>&1 \
  | tee "${CHAOS_LOG:-/dev/null}" | grep -E '^(CHAOS|test |failures|---- |thread |  left|  right|error)|panicked|test result' || true
exit "${PIPESTATUS[0]}"
