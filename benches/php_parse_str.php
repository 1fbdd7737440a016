<?php
// Times PHP's parse_str over the decode benchmark corpus (one form body per line), for
// comparison with `cargo bench -p b24-benches --bench decode`. See BENCHMARKS.md.
//   cargo run -q -p b24-benches --example corpus -- 256 > /tmp/corpus.txt
//   php benches/php_parse_str.php /tmp/corpus.txt
$bodies = file($argv[1], FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
$n = count($bodies);
$bytes = array_sum(array_map('strlen', $bodies));
$rounds = (int)($argv[2] ?? 200);
for ($i = 0; $i < 5; $i++) { foreach ($bodies as $b) { parse_str($b, $out); } } // warm-up
$best = INF;
for ($r = 0; $r < 10; $r++) {
    $t = hrtime(true);
    for ($i = 0; $i < $rounds; $i++) {
        foreach ($bodies as $b) { parse_str($b, $out); }
    }
    $best = min($best, (hrtime(true) - $t) / ($rounds * $n));
}
printf("PHP %s parse_str: %d bodies, %.0f bytes avg; best of 10: %.2f us/body, %.0f bodies/s, %.1f MiB/s\n",
    PHP_VERSION, $n, $bytes / $n, $best / 1000, 1e9 / $best, ($bytes / $n) / ($best / 1e9) / 1048576);
