//! Per-stage costs over the real fixtures, plus the whole in-process path
//! (decode + classify + enrich). Inputs are built outside the timed closures.
//!
//! `cargo bench --bench stages -- --quick`

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ws_gateway::{
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
};

const FIXTURES: &[(&str, Endpoint, &str)] = &[
    (
        "linear_publicTrade",
        Endpoint::Public(Category::Linear),
        include_str!("../tests/fixtures/bybit/linear_publicTrade.json"),
    ),
    (
        "spot_publicTrade",
        Endpoint::Public(Category::Spot),
        include_str!("../tests/fixtures/bybit/spot_publicTrade.json"),
    ),
    (
        "linear_tickers_delta",
        Endpoint::Public(Category::Linear),
        include_str!("../tests/fixtures/bybit/linear_tickers_delta.json"),
    ),
    (
        "linear_orderbook_50_delta",
        Endpoint::Public(Category::Linear),
        include_str!("../tests/fixtures/bybit/linear_orderbook_50_delta.json"),
    ),
    (
        "linear_orderbook_500_snapshot",
        Endpoint::Public(Category::Linear),
        include_str!("../tests/fixtures/bybit/linear_orderbook_500_snapshot.json"),
    ),
    (
        "wallet",
        Endpoint::Private,
        include_str!("../tests/fixtures/bybit/wallet.json"),
    ),
];

fn frame(endpoint: Endpoint, text: &str) -> RawFrame {
    RawFrame {
        endpoint,
        connection_id: 1,
        received_at: chrono::Utc::now(),
        received_mono: std::time::Instant::now(),
        text: text.trim_end().to_owned().into(),
    }
}

fn stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, text) in FIXTURES {
        let f = frame(*endpoint, text);
        group.bench_with_input(BenchmarkId::new("decode", name), &f, |b, f| {
            b.iter(|| black_box(decode(f.clone()).ok()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, text) in FIXTURES {
        let d = decode(frame(*endpoint, text)).unwrap();
        group.bench_with_input(BenchmarkId::new("classify", name), &d, |b, d| {
            b.iter_batched(
                || d.clone(),
                |d| black_box(classify(d)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("enrich");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, text) in FIXTURES {
        let cl = classify(decode(frame(*endpoint, text)).unwrap());
        let mut e = Enricher::default();
        group.bench_with_input(BenchmarkId::new("enrich", name), &cl, |b, cl| {
            b.iter_batched(
                || cl.clone(),
                |cl| black_box(e.enrich(cl)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, text) in FIXTURES {
        let f = frame(*endpoint, text);
        let mut e = Enricher::default();
        group.bench_with_input(
            BenchmarkId::new("decode_classify_enrich", name),
            &f,
            |b, f| b.iter(|| black_box(decode(f.clone()).map(|d| e.enrich(classify(d))).ok())),
        );
    }
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
