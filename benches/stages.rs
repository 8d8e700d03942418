//! Per-stage costs over the real fixtures, plus the whole in-process path from the raw frame
//! text to the envelope bytes (the one parse, decode, classify, enrich), on one core. Inputs are
//! built outside the timed closures.
//!
//! `cargo bench --bench stages -- --warm-up-time 1 --measurement-time 3 pipeline`

use std::hint::black_box;

use async_tungstenite::tungstenite::Utf8Bytes;
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

/// The frame text as the socket hands it over (shared bytes; a clone is a reference count).
fn text(text: &str) -> Utf8Bytes {
    text.trim_end().to_owned().into()
}

fn frame(endpoint: Endpoint, text_: &str) -> RawFrame {
    RawFrame::parse(endpoint, 1, text(text_)).expect("a data frame")
}

fn stages(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, fixture) in FIXTURES {
        let t = text(fixture);
        group.bench_with_input(BenchmarkId::new("parse", name), &t, |b, t| {
            b.iter(|| black_box(RawFrame::parse(*endpoint, 1, t.clone()).ok()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, fixture) in FIXTURES {
        let d = decode(frame(*endpoint, fixture));
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
    for (name, endpoint, fixture) in FIXTURES {
        let cl = classify(decode(frame(*endpoint, fixture)));
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

    // The acceptance path: raw frame text → envelope bytes.
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, fixture) in FIXTURES {
        let t = text(fixture);
        let mut e = Enricher::default();
        group.bench_with_input(BenchmarkId::new("frame_to_envelope", name), &t, |b, t| {
            b.iter(|| {
                black_box(
                    RawFrame::parse(*endpoint, 1, t.clone())
                        .map(|f| e.enrich(classify(decode(f))))
                        .ok(),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
