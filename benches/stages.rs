//! Per-stage costs over the real fixtures, plus the whole in-process path from the raw frame
//! text to the envelope bytes (the one parse, decode, classify, enrich), on one core. Inputs are
//! built outside the timed closures.
//!
//! `cargo bench --bench stages -- --warm-up-time 1 --measurement-time 3 pipeline`
//! (`source/trade_mark`: the source's per-frame extra on public trades)

use std::hint::black_box;

use async_tungstenite::tungstenite::Utf8Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ws_gateway::{
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
    source::trade_gap::TradeMarks,
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

    // The source's per-frame extra for public trades: noting the topic's last trade (for
    // recovery after a reconnect), next to the one parse it follows.
    let mut group = c.benchmark_group("source");
    group.throughput(Throughput::Elements(1));
    for (name, endpoint, fixture) in FIXTURES.iter().filter(|f| f.0.ends_with("publicTrade")) {
        let f = frame(*endpoint, fixture);
        let mut marks = TradeMarks::default();
        group.bench_with_input(BenchmarkId::new("trade_mark", name), &f, |b, f| {
            b.iter(|| {
                marks
                    .note(black_box(f.topic()), black_box(f.data()))
                    .is_some()
            })
        });
    }
    group.finish();
}

/// CPU time of this thread (ns), from `/proc/thread-self/schedstat`: on a shared machine it
/// counts only the time this thread ran, unlike criterion's wall clock.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// `STAGES_CPU_TIME=1 cargo bench --bench stages`: the acceptance path per fixture in CPU time
/// of one thread (a cross-check of the criterion numbers when other work shares the cores).
/// `STAGES_CPU_TIME=linear_publicTrade,wallet` limits it to those fixtures.
fn cpu_time_report(only: &str) {
    const N: u32 = 2_000_000;
    let wanted = |name: &str| only == "1" || only.split(',').any(|o| o == name);
    for (name, endpoint, fixture) in FIXTURES.iter().filter(|f| wanted(f.0)) {
        let t = text(fixture);
        let mut e = Enricher::default();
        let mut run = |n: u32| {
            for _ in 0..n {
                black_box(
                    RawFrame::parse(*endpoint, 1, t.clone())
                        .map(|f| e.enrich(classify(decode(f))))
                        .ok(),
                );
            }
        };
        let before = thread_cpu_ns().unwrap_or(0);
        for _ in 0..N / 4 {
            black_box(RawFrame::parse(*endpoint, 1, t.clone()).ok());
        }
        let parse = (thread_cpu_ns().unwrap_or(before) - before) as f64 / f64::from(N / 4);
        println!("cpu-time {name}: parse {parse:.0} ns/frame");
        run(N / 10);
        let (Some(before), wall) = (thread_cpu_ns(), std::time::Instant::now()) else {
            return;
        };
        run(N);
        let cpu = thread_cpu_ns().unwrap_or(before) - before;
        let ns = cpu as f64 / f64::from(N);
        println!(
            "cpu-time {name}: {ns:.0} ns/frame, {:.2} M frames/s (wall {:.0} ns/frame)",
            1e3 / ns,
            wall.elapsed().as_nanos() as f64 / f64::from(N)
        );
    }
}

fn entry(c: &mut Criterion) {
    if let Ok(only) = std::env::var("STAGES_CPU_TIME") {
        cpu_time_report(&only);
        return;
    }
    stages(c);
}

criterion_group!(benches, entry);
criterion_main!(benches);
