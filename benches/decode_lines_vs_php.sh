#!/usr/bin/env bash
# Whole-process comparison of `b24-events decode --lines` with PHP's parse_str on the same
# corpus (one MessageAdd form body per line, `benches/examples/corpus.rs`): the CLI decodes
# every line and prints its JSON (to /dev/null), PHP reads the file and parse_str()s every
# line once (`benches/php_parse_str_count.php CORPUS 1 parse`). Runs the two in turn, RUNS
# times each, and prints the median wall time per body and the ratio. Needs bash, date, php.
#
#   benches/decode_lines_vs_php.sh CLI_BINARY [BODIES (50000)] [RUNS (11)]
#
# The corpus is built once into ${CORPUS_DIR:-/tmp} with the workspace's corpus example.
set -euo pipefail

cli="${1:?usage: $0 CLI_BINARY [BODIES] [RUNS]}"
bodies="${2:-50000}"
runs="${3:-11}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
corpus="${CORPUS_DIR:-/tmp}/b24-corpus-$bodies.txt"

command -v php >/dev/null || { echo "php not found (apt-get install php-cli)" >&2; exit 2; }
[ -x "$cli" ] || { echo "not executable: $cli" >&2; exit 2; }
if [ ! -s "$corpus" ]; then
    (cd "$root" && cargo run -q --release -p b24-benches --example corpus -- "$bodies") >"$corpus.tmp"
    mv "$corpus.tmp" "$corpus"
fi

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rust=() php=()
for ((i = 0; i <= runs; i++)); do
    t0=$(now); "$cli" decode --lines "$corpus" >/dev/null; t1=$(now)
    php "$root/benches/php_parse_str_count.php" "$corpus" 1 parse; t2=$(now)
    if ((i > 0)); then # the first pair warms the page cache
        rust+=($((t1 - t0))); php+=($((t2 - t1)))
    fi
done
r=$(printf '%s\n' "${rust[@]}" | median)
p=$(printf '%s\n' "${php[@]}" | median)
awk -v r="$r" -v p="$p" -v n="$bodies" -v k="$runs" 'BEGIN {
    printf "%d bodies, median of %d runs each (whole process, wall clock)\n", n, k
    printf "b24-events decode --lines: %.3f s = %.2f us/body\n", r / 1e9, r / 1e3 / n
    printf "PHP parse_str:             %.3f s = %.2f us/body\n", p / 1e9, p / 1e3 / n
    printf "PHP / b24-events: %.2fx\n", p / r
}'
