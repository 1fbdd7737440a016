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
mkdir -p .dev/chaos
log=".dev/chaos/chaos-$scale.log"
# The functions' WARN/ERROR lines (parked, lost, redrive retries), for reading a failed run.
export CHAOS_FUNCTION_LOG="$PWD/.dev/chaos/functions-$scale.log"
rm -f "$CHAOS_FUNCTION_LOG"
cargo test -p b24-tests --test chaos --locked --no-run
rc=0
CHAOS_SCALE="$scale" RUST_BACKTRACE=0 timeout "$limit" \
  cargo test -p b24-tests --test chaos --locked -- --ignored --test-threads 1 --nocapture >"$log" 2>&1 || rc=$?
grep -E 'CHAOS|^failures:|^---- |panicked|^test result' "$log" || true
if ((rc != 0)); then
  echo "chaos ($scale) failed (exit $rc); full output: $log, function log: $CHAOS_FUNCTION_LOG" >&2
  tail -n 40 "$log" >&2
fi
exit "$rc"
