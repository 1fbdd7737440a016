#!/usr/bin/env bash
# `make dev`: the product on this machine, no AWS account needed. Installs what is missing,
# starts the official DynamoDB Local on 127.0.0.1, creates the table from the code's schema,
# serves the real functions with `cargo lambda watch` on 127.0.0.1 (reloading on code changes),
# runs the fake Bitrix24 the functions talk back to and the event-source runner that plays the
# template's stream/queue mappings (scripts/runner.json: purge and outbox on the stream; redrive,
# binder and acks on their queues), prints the URLs and commands to try. Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --workspace --bins
source scripts/stack.sh
trap 'stack_stop; exit 0' INT TERM
trap 'stack_stop' EXIT
LAMBDA_PORT="${LAMBDA_PORT:-9000}"
STACK_WAIT_SECONDS=900
export DDB_PORT="${DDB_PORT:-8000}"
# moto's own default port: `b24-events changes` finds dev-changes.fifo there without arguments.
export MOTO_PORT="${MOTO_PORT:-5000}"
# The fake Bitrix24 (REST + OAuth) the functions talk back to; make demo finds it here.
export FAKE_B24_PORT="${FAKE_B24_PORT:-5100}"
# On disk, so the table survives `make ddb-stop` / `make ddb-start` (and the next `make dev`).
export DDB_DATA_DIR="${DDB_DATA_DIR:-$PWD/.dev/dev/ddb-data}"
stack_start dev

cat <<MSG

  Bitrix24 receiver running locally (DynamoDB Local: $DDB_ENDPOINT, table $TABLE_NAME)
  SQS (moto): $SQS_ENDPOINT
    parked queue      $PARKED_QUEUE_URL
    parked DLQ        $PARKED_DLQ_URL
    changes (FIFO)    $CHANGES_QUEUE_URL
    changes DLQ       $CHANGES_DLQ_URL

    POST $URL_messages
    POST $URL_dialogs
    POST $URL_connector
    POST $URL_app

  Fake Bitrix24 (REST + OAuth, app local.b24fake.app): $FAKE_B24_URL
    acks queue        $ACKS_QUEUE_URL

  The whole lifecycle in one command (in a second terminal): make demo

  Or by hand: install a portal through the fake Bitrix24 — it posts a real ONAPPINSTALL, the app
  function verifies it with the fake's OAuth server, keeps the tokens (KMS), and the binder binds
  every event — then send a message with the application_token the install answer shows:

    curl -s -X POST $FAKE_B24_URL/_fake/portals -d '{"member_id":"demo-portal"}'
    curl -s -X POST $FAKE_B24_URL/_fake/portals/demo-portal/install -d '{"url":"$URL_app"}'
    target/debug/b24-events send --url $URL_messages --event ONIMCONNECTORMESSAGEADD --member-id demo-portal --application-token <application_token> --text 'Hello from make dev'
    curl -s $FAKE_B24_URL/_fake/portals/demo-portal/bindings

  See the portal's records:

    AWS_ENDPOINT_URL=$DDB_ENDPOINT TABLE_NAME=$TABLE_NAME AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local target/debug/b24-state dump --member-id demo-portal

  Follow the change feed (what your adapter receives, one b24.change.v1 JSON per line):

    target/debug/b24-events changes --follow

  Try the parking path: \`make ddb-stop\`, send the message again (→ 202 {"outcome":"parked"}),
  \`make ddb-start\`, and watch the redrive apply it (runner.log, then the dump above).

  Function logs: .dev/dev/lambda.log    Event-source runner: .dev/dev/runner.log
  Ctrl-C stops everything.
MSG
tail -n 0 -f .dev/dev/lambda.log &
wait "$(cat .dev/dev/lambda.pid)"
