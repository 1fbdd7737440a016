//! Prints the decode benchmark corpus, one PHP form body per line:
//! `cargo run -p b24-benches --example corpus -- [N]` (default 256).

fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    for body in b24_benches::form_corpus(n, b24_benches::SEED) {
        println!("{body}");
    }
}
