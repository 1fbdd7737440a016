<?php
// Runs PHP's parse_str over the decode benchmark corpus exactly ROUNDS times, for
// instruction counting under callgrind (see BENCHMARKS.md "## Decoding"):
//   valgrind --tool=callgrind php benches/php_parse_str_count.php /tmp/corpus.txt 10 parse
//   valgrind --tool=callgrind php benches/php_parse_str_count.php /tmp/corpus.txt 10 empty
// "empty" runs the same loop without parse_str; the difference / (ROUNDS × bodies) is the
// cost of one parse_str call (body → PHP array, freed again when $out is overwritten).
$bodies = file($argv[1], FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
$rounds = (int)($argv[2] ?? 10);
$parse = ($argv[3] ?? 'parse') === 'parse';
$out = null;
for ($i = 0; $i < $rounds; $i++) {
    if ($parse) {
        foreach ($bodies as $b) { parse_str($b, $out); }
    } else {
        foreach ($bodies as $b) { $out = $b; }
    }
}
$out = null;
