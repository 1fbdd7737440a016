#!/usr/bin/env bash
# Fuzz the b24-events decoder with cargo-fuzz (libFuzzer; needs a nightly toolchain).
#   FUZZ_SECONDS=60 scripts/fuzz.sh        # default 60 s
#   FUZZ_TARGET=decode                     # the only target
# Findings land in fuzz/artifacts/decode/, the corpus in fuzz/corpus/decode/ (both git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
target="${FUZZ_TARGET:-decode}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "error: cargo fuzz needs a nightly toolchain; install it with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ..." >&2
    cargo install cargo-fuzz --locked
fi

# Seed the corpus with the wire fixtures (form and JSON) the first time.
corpus="fuzz/corpus/$target"
if [ ! -d "$corpus" ]; then
    mkdir -p "$corpus"
    for f in shared/events/tests/fixtures/*.form; do
        { printf '\000'; cat "$f"; } > "$corpus/$(basename "$f")"
    done
    for f in shared/events/tests/fixtures/*.json; do
        case "$f" in *.expected.json) continue ;; esac
        { printf '\003'; cat "$f"; } > "$corpus/$(basename "$f")"
    done
fi

exec cargo +nightly fuzz run "$target" -- -max_total_time="$seconds"
