#!/usr/bin/env bash
# Installs the deploy/build tooling into repo-local virtualenvs, idempotently:
#   .venv-sam    aws-sam-cli + cfn-lint==1.53.3 (newer cfn-lint misses errors in SAM templates)
#   .venv-tools  cargo-lambda + ziglang (cross-compiles the arm64 Lambda binaries, no Docker)
# and the Rust std for aarch64-unknown-linux-gnu.
# Kept in separate venvs: aws-sam-cli pins a boto3/botocore that breaks a global awscli v1.
#
# Usage: scripts/sam-tools.sh            # then: export PATH="$(scripts/sam-tools.sh --path)"
#        scripts/sam-tools.sh --path     # only print the PATH (no install)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAM_VENV="$ROOT/.venv-sam"
TOOLS_VENV="$ROOT/.venv-tools"
CFN_LINT_VERSION="1.53.3"
SAM_CLI_SPEC="${SAM_CLI_SPEC:-aws-sam-cli}"   # e.g. SAM_CLI_SPEC='aws-sam-cli==1.170.0' to pin
PYTHON="${PYTHON:-python3}"

tool_path() { printf '%s\n' "$TOOLS_VENV/bin:$SAM_VENV/bin:$PATH"; }

if [[ "${1:-}" == "--path" ]]; then
  tool_path
  exit 0
fi

log() { printf '[sam-tools] %s\n' "$*" >&2; }

ensure_venv() {
  local dir="$1"
  if [[ ! -x "$dir/bin/python" ]]; then
    log "creating $dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  fi
}

# --- SAM CLI + pinned cfn-lint -------------------------------------------------
ensure_venv "$SAM_VENV"
if ! "$SAM_VENV/bin/sam" --version >/dev/null 2>&1; then
  log "installing $SAM_CLI_SPEC cfn-lint==$CFN_LINT_VERSION into .venv-sam"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check "$SAM_CLI_SPEC" "cfn-lint==$CFN_LINT_VERSION" >&2
fi
have_lint="$("$SAM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cfn-lint"))' 2>/dev/null || true)"
if [[ "$have_lint" != "$CFN_LINT_VERSION" ]]; then
  log "pinning cfn-lint==$CFN_LINT_VERSION (found '${have_lint:-none}')"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION" >&2
fi

# --- cargo-lambda + zig --------------------------------------------------------
ensure_venv "$TOOLS_VENV"
if ! "$TOOLS_VENV/bin/cargo-lambda" lambda --version >/dev/null 2>&1 \
   || ! "$TOOLS_VENV/bin/python" -c 'import ziglang' >/dev/null 2>&1; then
  log "installing cargo-lambda ziglang into .venv-tools"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check cargo-lambda ziglang >&2
fi

# --- Rust target for arm64 Lambdas ---------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx 'aarch64-unknown-linux-gnu'; then
    log "rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu >&2
  fi
else
  log "warning: rustup not found; make sure the aarch64-unknown-linux-gnu std is installed"
fi

log "sam $("$SAM_VENV/bin/sam" --version 2>/dev/null | awk '{print $NF}'), cfn-lint $CFN_LINT_VERSION, $("$TOOLS_VENV/bin/cargo-lambda" lambda --version 2>/dev/null | head -n1)"
log "tools ready; add them to PATH with:"
printf 'export PATH="%s"\n' "$(tool_path)"
