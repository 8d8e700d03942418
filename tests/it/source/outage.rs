//! Issue 13, fast reconnect after an exchange outage: the fake Bybit goes offline for 60 s
//! (open sockets dropped, new connections refused), then online again. Every connection must
//! come back and every topic be resubscribed soon after (the reachability probe, not the
//! backoff's jittered delay of up to `reconnect_max`, decides when), with at most 30 connect
//! attempts per connection during the outage.
//!
//! The time from `go_online` to the last topic resubscribed is printed (not asserted: no timed
//! assertions). One outage by default; `OUTAGE_RUNS=5` repeats it and prints p50/max, and
//! `OUTAGE_SECS` shortens the outage for a quick local run.
//!
//! ```text
//! OUTAGE_RUNS=5 cargo test --test it source::outage -- --nocapture
//! ```

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use ws_gateway::{
    event::{Category, Endpoint},
    pipeline_file::SourceConfig,
    subscriptions::{TopicKey, TopicStatus},
};

use fake_bybit::{LINEAR, PRIVATE, SPOT};

use crate::support::{secs, source::Harness, wait_until};

const TOPICS: [(&str, &str); 6] = [
    (LINEAR, "publicTrade.BTCUSDT"),
    (LINEAR, "orderbook.50.BTCUSDT"),
    (LINEAR, "tickers.ETHUSDT"),
    (SPOT, "publicTrade.BTCUSDT"),
    (PRIVATE, "order"),
    (PRIVATE, "wallet"),
];

fn endpoint(path: &str) -> Endpoint {
    match path {
        LINEAR => Endpoint::Public(Category::Linear),
        SPOT => Endpoint::Public(Category::Spot),
        _ => Endpoint::Private,
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Connect attempts so far, per (endpoint, shard), from the source's health board.
fn attempts(h: &Harness) -> BTreeMap<(String, usize), u64> {
    h.health
        .snapshot()
        .connections
        .into_iter()
        .map(|c| ((c.endpoint, c.shard), c.connect_attempts))
        .collect()
}

fn all_subscribed(h: &Harness) -> bool {
    TOPICS
        .iter()
        .all(|(path, topic)| h.fake.subscribed(path).contains(*topic))
        && TOPICS.iter().all(|(path, topic)| {
            h.registry.status(&TopicKey::new(endpoint(path), *topic)) == Some(TopicStatus::Active)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_outage_every_topic_is_back_soon_within_the_attempt_budget() {
    // Arrange: production reconnect pacing (backoff 500 ms .. 30 s, probe every 1 s, bucket of
    // 10 + 1/s); six topics on three connections, all subscribed.
    let config = SourceConfig {
        connect_on_start: Vec::new(),
        ..SourceConfig::default()
    };
    let h = Harness::with_credentials(config).await;
    for (path, topic) in TOPICS {
        let key = TopicKey::new(endpoint(path), topic);
        h.registry.acquire(&key, "outage-test");
    }
    let up = wait_until(secs(20), || async { all_subscribed(&h).then_some(()) }).await;
    assert!(up.is_some(), "every topic subscribed before the outage");

    let outage = Duration::from_secs(env_u64("OUTAGE_SECS", 60));
    let runs = env_u64("OUTAGE_RUNS", 1).max(1);
    let mut recoveries = Vec::new();
    for run in 1..=runs {
        let before = attempts(&h);
        // Act: the exchange goes away, stays away, comes back.
        h.fake.go_offline();
        let gone = wait_until(secs(10), || async {
            (!TOPICS
                .iter()
                .any(|(path, topic)| h.fake.subscribed(path).contains(*topic)))
            .then_some(())
        })
        .await;
        assert!(gone.is_some(), "the outage dropped every connection");
        tokio::time::sleep(outage).await;
        h.fake.go_online();
        let back_at = Instant::now();
        let back = wait_until(secs(60), || async { all_subscribed(&h).then_some(()) }).await;
        let recovery = back_at.elapsed();
        assert!(back.is_some(), "every topic resubscribed after the outage");

        // Assert: within the attempt budget (the recovering attempt included).
        let after = attempts(&h);
        assert_eq!(after.len(), 3, "three connections: {after:?}");
        for (conn, n) in &after {
            let spent = n - before.get(conn).copied().unwrap_or(0);
            assert!(
                spent <= 30,
                "{conn:?}: {spent} connect attempts during a {outage:?} outage"
            );
            println!("outage run {run}: {conn:?} made {spent} connect attempts");
        }
        for path in [LINEAR, SPOT, PRIVATE] {
            assert_eq!(h.fake.connection_count(path), 1, "one connection on {path}");
        }
        println!("outage run {run}: every topic resubscribed {recovery:?} after go_online");
        recoveries.push(recovery);
    }
    recoveries.sort();
    println!(
        "outage recovery over {} run(s) of {outage:?}: p50 {:?}, max {:?}",
        recoveries.len(),
        recoveries[(recoveries.len() - 1) / 2],
        recoveries[recoveries.len() - 1]
    );
    h.stop().await;
}
