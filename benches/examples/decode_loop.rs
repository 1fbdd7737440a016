//! Decodes the benchmark corpus `ROUNDS` times, for instruction counting under
//! `valgrind --tool=callgrind` (noise-free, unlike wall-clock time on a shared machine):
//!
//! ```sh
//! cargo build --profile bench -p b24-benches --example decode_loop
//! valgrind --tool=callgrind target/bench/examples/decode_loop 0 form    # start-up + corpus
//! valgrind --tool=callgrind target/bench/examples/decode_loop 10 form   # … + 10 × 256 decodes
//! ```
//!
//! (difference of the two totals) / (10 × 256) = instructions per decoded body. Arguments:
//! `ROUNDS` (default 10), `form` | `json` (default form), corpus size (default 256).

use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let json = args.next().as_deref() == Some("json");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(256);
    let (bodies, ct) = if json {
        (
            b24_benches::json_corpus(n, b24_benches::SEED),
            Some("application/json"),
        )
    } else {
        (b24_benches::form_corpus(n, b24_benches::SEED), None)
    };
    let mut ok = 0usize;
    for _ in 0..rounds {
        for body in &bodies {
            ok += black_box(b24_events::decode(black_box(body.as_bytes()), ct)).is_ok() as usize;
        }
    }
    assert_eq!(ok, rounds * bodies.len());
}
