//! Open-loop REST load generator for `docs/readme/api.md`: fires requests at a fixed rate
//! (half `GET /api/v1/subscriptions?requesting_service=…`, half `POST /api/v1/subscriptions`
//! over 500 distinct (service, symbol) pairs) and prints latency percentiles.
//!
//! `cargo run --release --example loadgen -- http://127.0.0.1:4400 <api-key> [rate] [seconds]`

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:4400".into());
    let key = args.get(2).cloned().unwrap_or_default();
    let rate: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
    let secs: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(30);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"];
    let (tx, mut rx) = mpsc::channel::<(bool, Duration, u16)>(1 << 16);
    let total = rate * secs;
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let start = Instant::now();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        let (client, tx, base, key) = (client.clone(), tx.clone(), base.clone(), key.clone());
        let service = format!("load-{}", i % 100);
        let symbol = symbols[(i / 100 % 5) as usize];
        tokio::spawn(async move {
            let create = i % 2 == 0;
            let t = Instant::now();
            let req = if create {
                client
                    .post(format!("{base}/api/v1/subscriptions"))
                    .json(&serde_json::json!({"channel_type": "trades", "symbol": symbol, "requesting_service": service}))
            } else {
                client.get(format!(
                    "{base}/api/v1/subscriptions?requesting_service={service}"
                ))
            };
            let status = match req.header("x-api-key", key).send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            let _ = tx.send((create, t.elapsed(), status)).await;
        });
    }
    drop(tx);
    let (mut list, mut create) = (Vec::new(), Vec::new());
    let mut errors = 0;
    while let Some((is_create, d, status)) = rx.recv().await {
        if !(200..300).contains(&status) {
            errors += 1;
        }
        if is_create { &mut create } else { &mut list }.push(d);
    }
    let elapsed = start.elapsed();
    println!(
        "{total} requests in {elapsed:.1?} ({:.0}/s), {errors} non-2xx",
        total as f64 / elapsed.as_secs_f64()
    );
    for (name, v) in [("list", &mut list), ("create", &mut create)] {
        v.sort();
        let p = |q: f64| v[((v.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3;
        println!(
            "{name:>6}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            v.len(),
            p(0.5),
            p(0.9),
            p(0.99),
            p(1.0)
        );
    }
}
