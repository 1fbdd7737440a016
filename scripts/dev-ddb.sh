#!/usr/bin/env bash
# `make ddb-stop` / `make ddb-start`: stop DynamoDB Local of a running `make dev` by hand, or
# start it again on the same port and data directory (the table survives). While it is down the
# webhooks answer `202 {"outcome":"parked"}` and the event waits on the parked queue; once it is
# back the redrive (run by the event-source runner) applies it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/stack.sh
stack_ddb "${1:?usage: scripts/dev-ddb.sh stop|start}" "${STACK:-dev}"
