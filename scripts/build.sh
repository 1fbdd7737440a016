#!/usr/bin/env bash
# `make build`: builds the arm64 Lambda artifacts (one per function) with `sam build` (rust-cargolambda
# workflow: cargo-lambda + zig cross-compile, no Docker), offline, and prints their sizes.
# Output: .aws-sam/build/<Function>/bootstrap and .aws-sam/build/template.yaml,
# ready for `sam deploy` (docs/deploy.md).
#
# Env: MAX_BOOTSTRAP_BYTES (default 5242880 = 5 MiB): warn when a bootstrap is larger;
#      STRICT_SIZE=1 turns that warning into a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ ! -x .venv-sam/bin/sam || ! -x .venv-tools/bin/cargo-lambda ]]; then
  echo "build: installing the SAM tooling (scripts/sam-tools.sh)" >&2
  scripts/sam-tools.sh >/dev/null
fi
# cargo-lambda finds zig through the ziglang package of the Python that runs it, so the
# tools venv goes first on PATH.
export PATH="$(scripts/sam-tools.sh --path)"
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1 \
       AWS_REGION="${AWS_REGION:-us-east-1}" AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

start=$(date +%s)
# Settings (no cache, not parallel) come from samconfig.toml [default.build.parameters].
sam build --template-file template.yaml "$@"
echo "sam build took $(( $(date +%s) - start )) s"

max="${MAX_BOOTSTRAP_BYTES:-5242880}"
too_big=0
found=0
printf '%-22s %12s %9s  %s\n' FUNCTION BYTES MiB ARCH
for f in .aws-sam/build/*/bootstrap; do
  [[ -e "$f" ]] || continue
  found=$((found + 1))
  fn="$(basename "$(dirname "$f")")"
  bytes=$(stat -c %s "$f")
  arch="$(file -b "$f" 2>/dev/null | cut -d, -f2 | sed 's/^ //' || true)"
  printf '%-22s %12d %9.2f  %s\n' "$fn" "$bytes" "$(awk -v b="$bytes" 'BEGIN{print b/1048576}')" "$arch"
  if (( bytes > max )); then
    echo "warning: $f is larger than $max bytes" >&2
    too_big=1
  fi
done
# One bootstrap per function in the template.
expected=$(grep -c 'BuildMethod: rust-cargolambda' template.yaml)
if (( found != expected )); then
  echo "build: expected $expected bootstrap files (one per function in template.yaml), found $found" >&2
  exit 1
fi
if (( too_big )) && [[ "${STRICT_SIZE:-0}" == "1" ]]; then
  exit 1
fi
