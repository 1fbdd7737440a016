//! Criterion benchmark of `b24_events::decode` over a generated corpus of realistic
//! MessageAdd bodies (1–5 messages, Cyrillic text with BB-codes). See BENCHMARKS.md.

use b24_benches::{form_corpus, json_corpus, SEED};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const N: usize = 256;

fn bench_decode(c: &mut Criterion) {
    let form = form_corpus(N, SEED);
    let json = json_corpus(N, SEED);

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("form_corpus_256_bodies", |b| {
        b.iter(|| {
            for body in &form {
                black_box(b24_events::decode(black_box(body.as_bytes()), None).unwrap());
            }
        })
    });
    g.bench_function("json_corpus_256_bodies", |b| {
        b.iter(|| {
            for body in &json {
                black_box(
                    b24_events::decode(black_box(body.as_bytes()), Some("application/json"))
                        .unwrap(),
                );
            }
        })
    });
    let bytes: usize = form.iter().map(String::len).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("form_corpus_bytes", |b| {
        b.iter(|| {
            for body in &form {
                black_box(b24_events::decode(black_box(body.as_bytes()), None).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
