#!/usr/bin/env bash
# The end-to-end test of `make test`: the local stack (DynamoDB Local, the real function
# binaries under `cargo lambda watch`, the event-source runner) driven through a whole portal
# lifecycle by `b24-events send` (tests/tests/e2e.rs), then `make demo` against the same
# stack. Everything started here is stopped on exit.
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
E2E_INVOKE_URL="http://127.0.0.1:$LAMBDA_PORT" \
E2E_SQS_ENDPOINT="$SQS_ENDPOINT" E2E_CHANGES_QUEUE_URL="$CHANGES_QUEUE_URL" E2E_FAKE_B24_URL="$FAKE_B24_URL" \
  RUST_BACKTRACE=0 timeout 600 cargo test -p b24-tests --test e2e --locked -- --ignored --test-threads 1 \
  --skip change_feed_latency

# `make demo` against the same stack, as a newcomer runs it against `make dev`.
echo "== make demo against the e2e stack"
demo_out="$STACK_DIR/demo.out"
LAMBDA_PORT="$LAMBDA_PORT" AWS_ENDPOINT_URL="$DDB_ENDPOINT" TABLE_NAME="$TABLE_NAME" MEMBER="demo-e2e-$$" FAKE_B24_URL="$FAKE_B24_URL" \
  timeout 300 scripts/demo.sh >"$demo_out" 2>&1 || { cat "$demo_out"; echo "make demo failed" >&2; exit 1; }
cat "$demo_out"
python3 - "$demo_out" <<'PY'
import re, sys
out = open(sys.argv[1], encoding="utf-8").read()
want = [
    (r"install the app \(fake Bitrix24\)\s+→ 200 \{\"outcome\":\"applied\"\}", "install applied"),
    (r"a forged install\s+→ 401 ", "forged install refused"),
    (r"ONIMCONNECTORMESSAGEADD\s+→ http://127\.0\.0\.1:\d+/lambda-url/b24-fn-messages/bitrix24/messages", "bindings shown"),
    (r"ONAPPUNINSTALL\s+→ http://127\.0\.0\.1:\d+/lambda-url/b24-fn-app/bitrix24/app", "uninstall bound"),
    (r"line 107 myconnector: .*\"message_id\": 501", "delivery reported to the fake"),
    (r"message 501 sent\s+→ 200 \{\"outcome\":\"applied\"\}", "message applied"),
    (r"message 501 delivered twice\s+→ 200 \{\"outcome\":\"duplicate\"\}", "duplicate"),
    (r"message 502 deleted\s+→ 200 \{\"outcome\":\"applied\"\}", "delete applied"),
    (r"a forged token\s+→ 401 ", "forged token refused"),
    (r"message\s+MSG#000000000501\s+\{\"status\": \"edited\"", "edited record shown"),
    (r"message\s+MSG#000000000502\s+\{\"status\": \"deleted\"", "tombstone shown"),
    # The change feed section: the lifecycle's changes, each once.
    (r"portal\.installed\s+portal", "portal.installed change"),
    (r"message\.created\s+message 501 ", "message.created change"),
    (r"message\.edited\s+message 501 .*Добрый вечер", "message.edited change"),
    (r"message\.created\s+message 502 ", "created change of 502"),
    (r"message\.deleted\s+message 502 ", "message.deleted change"),
    (r"dialog\.started\s+session 900", "dialog.started change"),
    (r"dialog\.finished\s+session 900", "dialog.finished change"),
    (r"connector\.disconnected\s+line ", "connector.disconnected change"),
]
missing = [label for pattern, label in want if not re.search(pattern, out)]
feed = out[out.find("on the change feed"):]
if len(re.findall(r"^  message\.created\s+message 501 ", feed, re.M)) != 1:
    missing.append("message 501 created exactly once (it was delivered twice)")
if missing or "Traceback" in out or "Error" in out:
    sys.exit(f"make demo output is missing: {missing}")
print("make demo: every expected answer and record shown")
PY
