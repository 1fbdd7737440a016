#!/usr/bin/env bash
# Validates template.yaml offline: `sam validate --lint` (SAM transform + cfn-lint 1.53.3).
# cfn-lint >= 1.54 no longer runs the SAM transform and misses errors, hence the pin
# (scripts/sam-tools.sh installs it). No AWS account or network is needed.
# Then runs the template-vs-code test (tests/tests/template.rs) unless SKIP_TEMPLATE_TEST=1.
# Exits non-zero on any finding.
#
# Usage: scripts/validate-template.sh [template.yaml]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TEMPLATE="${1:-template.yaml}"
SAM="$ROOT/.venv-sam/bin/sam"
CFN_LINT="$ROOT/.venv-sam/bin/cfn-lint"
want="1.53.3"
lint_version() { "$ROOT/.venv-sam/bin/python" -c 'import importlib.metadata as m; print(m.version("cfn-lint"))' 2>/dev/null || true; }
if [[ ! -x "$SAM" || ! -x "$CFN_LINT" || "$(lint_version)" != "$want" ]]; then
  echo "validate-template: installing the SAM tooling (scripts/sam-tools.sh)" >&2
  "$ROOT/scripts/sam-tools.sh" >/dev/null
fi
have="$(lint_version)"
if [[ "$have" != "$want" ]]; then
  echo "validate-template: cfn-lint $have in .venv-sam, need $want" >&2
  exit 2
fi

# Offline: dummy region and credentials, no telemetry, no update checks.
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 \
       AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
       AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-dummy}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-dummy}"
unset AWS_PROFILE AWS_SESSION_TOKEN || true

echo "== sam validate --lint $TEMPLATE (cfn-lint $have)"
"$SAM" validate --lint --template-file "$TEMPLATE"

# sam validate --lint prints findings but also run cfn-lint directly so warnings (W*) fail too
# and every finding is listed with its rule id.
echo "== cfn-lint $TEMPLATE"
"$CFN_LINT" --format parseable -- "$TEMPLATE"
echo "template lint OK"

if [[ "${SKIP_TEMPLATE_TEST:-0}" != "1" && "$TEMPLATE" == "template.yaml" ]]; then
  echo "== cargo test -p b24-tests --test template"
  cargo test --locked -p b24-tests --test template
fi
