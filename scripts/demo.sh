#!/usr/bin/env bash
# `make demo`: the README demo against a running `make dev` (or any deployment: set BASE_URL
# to the API's base URL, e.g. https://abc123.execute-api.eu-central-1.amazonaws.com).
# Installs a portal through the fake Bitrix24 (which sends a real ONAPPINSTALL: the app
# function verifies it with the fake's OAuth server, the binder binds every event), sends,
# edits and deletes messages, opens and closes a dialog, disconnects the connector, then shows
# the portal's records in DynamoDB Local, the changes the lifecycle put on the change feed,
# and acks message 501's delivery (the acks function reports it to the fake Bitrix24).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
B24=target/debug/b24-events
[[ -x $B24 ]] || cargo build -q -p b24-events-cli
url() {
  if [[ -n "${BASE_URL:-}" ]]; then echo "${BASE_URL%/}/bitrix24/$1"
  else echo "http://127.0.0.1:${LAMBDA_PORT:-9000}/lambda-url/b24-fn-$1/bitrix24/$1"; fi
}
MEMBER="${MEMBER:-demo-portal}"
FAKE="${FAKE_B24_URL:-http://127.0.0.1:${FAKE_B24_PORT:-5100}}"
now=$(date +%s)

if [[ -n "${BASE_URL:-}" ]]; then
  # A deployment: no fake Bitrix24 to install from; a plain install (accepted only when the
  # stack does not verify installs through OAuth, see docs/deploy.md).
  TOKEN="${TOKEN:-demo-application-token}"
  printf '%-34s → ' "install the app"
  "$B24" send --url "$(url app)" --member-id "$MEMBER" --application-token "$TOKEN" --event OnAppInstall --ts "$now" || true
else
  # The portal on the fake Bitrix24 (already there on a second run), then its install: the
  # fake posts ONAPPINSTALL to the app function and hands back the handler's answer.
  curl -s -o /dev/null -X POST "$FAKE/_fake/portals" -H 'content-type: application/json' -d "{\"member_id\":\"$MEMBER\"}"
  install="$(curl -sf -X POST "$FAKE/_fake/portals/$MEMBER/install" -H 'content-type: application/json' \
    -d "{\"url\":\"$(url app)\"}")" || { echo "the fake Bitrix24 at $FAKE did not answer (is make dev running?)" >&2; exit 1; }
  TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["credentials"]["application_token"])' <<<"$install")"
  printf '%-34s → %s\n' "install the app (fake Bitrix24)" \
    "$(python3 -c 'import json,sys; r=json.load(sys.stdin)["response"]; print(r["status"], r["body"])' <<<"$install")"
fi
send() { local label="$1" family="$2"; shift 2
  printf '%-34s → ' "$label"
  "$B24" send --url "$(url "$family")" --member-id "$MEMBER" --application-token "$TOKEN" "$@" || true
}
send "message 501 sent" messages --event OnImConnectorMessageAdd --message-id 501 --text '[b]Оператор:[/b] [br]Добрый день!' --ts $((now+1))
send "message 501 delivered twice" messages --event OnImConnectorMessageAdd --message-id 501 --text '[b]Оператор:[/b] [br]Добрый день!' --ts $((now+1))
send "message 501 edited" messages --event OnImConnectorMessageUpdate --message-id 501 --external-id ext-501 --text 'Добрый вечер!' --ts $((now+2))
send "message 502 sent" messages --event OnImConnectorMessageAdd --message-id 502 --text 'Oops' --ts $((now+3))
send "message 502 deleted" messages --event OnImConnectorMessageDelete --message-id 502 --external-id ext-502 --ts $((now+4))
send "dialog 900 opened" dialogs --event OnImConnectorDialogStart --session-id 900 --ts $((now+5))
send "dialog 900 closed" dialogs --event OnImConnectorDialogFinish --session-id 900 --ts $((now+6))
send "connector disconnected" connector --event OnImConnectorStatusDelete --ts $((now+7))
"$B24" send --url "$(url messages)" --member-id "$MEMBER" --application-token wrong-token \
  --event OnImConnectorMessageAdd --message-id 503 | sed 's/^/a forged token                     → /' || true
"$B24" send --url "$(url app)" --member-id "$MEMBER" --application-token "$TOKEN" \
  --event OnAppInstall --refresh-token forged-refresh-token | sed 's/^/a forged install                   → /' || true
[[ -n "${BASE_URL:-}" ]] && exit 0

echo; echo "Records of $MEMBER in DynamoDB Local:"
AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${DDB_PORT:-8000}}" TABLE_NAME="${TABLE_NAME:-bitrix24-receiver-local}" \
AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
  target/debug/b24-state dump --member-id "$MEMBER" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    keys = ("status", "text", "ids", "revisions", "outcome", "event_code", "installed", "bound", "already_bound")
    what = json.dumps({k: (len(r[k]) if k in ("bound", "already_bound") else r[k]) for k in keys if k in r}, ensure_ascii=False)
    kind, sk = r["record_type"], r["sk"][:40]
    print(f"  {kind:<10} {sk:<40} {what}")
'

# The change feed: what the vendor's adapter receives (make dev's changes.fifo; the stack's
# CHANGES_QUEUE_URL when set). `b24-events changes` prints and deletes them.
echo; echo "Changes of $MEMBER on the change feed (b24.change.v1; raw JSON: $B24 changes):"
sleep 1
show_changes="$(cat <<'PY'
import json, os, sys
for line in sys.stdin:
    c = json.loads(line)
    if c["member_id"] != os.environ["MEMBER"]:
        continue
    m, d = c.get("message") or {}, c.get("dialog") or {}
    if m:
        about = f"message {m['im']['message_id']}"
    elif d:
        about = f"session {d['session_id']}"
    elif c["type"].startswith("portal"):
        about = "portal"
    else:
        about = f"line {c.get('line')}"
    text = " " + json.dumps(m["text"], ensure_ascii=False) if m.get("text") else ""
    print(f"  {c['type']:<22} {about:<14} id {c['id'][:12]}{text}")
PY
)"
"$B24" changes --wait 3 | MEMBER="$MEMBER" python3 -c "$show_changes"

# What the receiver did on the portal's behalf: the bindings, and the delivery ack of 501.
echo; echo "Events the binder bound on the fake Bitrix24 (event.bind in one batch):"
curl -s "$FAKE/_fake/portals/$MEMBER/bindings" |
  python3 -c 'import json,sys; [print("  %-28s → %s" % (b["event"], b["handler"])) for b in json.load(sys.stdin)]'
echo; printf '%-34s → ' "the adapter acks 501's delivery"
"$B24" ack --member-id "$MEMBER" --connector myconnector --line 107 --chat-id 1807 --message-id 501 \
  --external-id ext-501 --external-chat-id channel-123 | cut -c1-60
for _ in $(seq 1 40); do
  deliveries="$(curl -s "$FAKE/_fake/portals/$MEMBER/deliveries")"
  [[ "$deliveries" == *'"message_id":501'* ]] && break
  sleep 0.5
done
echo "Delivery statuses the fake Bitrix24 received (imconnector.send.status.delivery):"
python3 -c 'import json,sys; [print("  line %s %s: %s" % (d.get("line"), d.get("connector"), json.dumps(d.get("messages"), ensure_ascii=False))) for d in json.load(sys.stdin)]' <<<"$deliveries"
