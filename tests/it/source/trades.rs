//! Issue 13, public trade recovery: a busy `publicTrade` topic (the fake producing 200
//! trades/s), the exchange gone for 2 s, then back. The consumer (the app's in-process
//! broadcast, which feeds `/ws` and the broker alike) sees every trade id exactly once, the
//! missed ones marked `recovered`; when more were missed than Bybit's REST keeps (spot: 60),
//! the lost count equals the number missing.
//!
//! ```text
//! cargo test --test it source::trades -- --nocapture
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fake_bybit::FakeBybit;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    event::{Category, Endpoint},
    subscriptions::TopicKey,
};

use crate::support::{
    TestApp, TestConfig, fast_config, metrics::metric_sum, secs, spawn_app, sqlite_url, wait_until,
};

const SYMBOL: &str = "BTCUSDT";
const TOPIC: &str = "publicTrade.BTCUSDT";

/// Trade id → whether it came marked `recovered`, how often it came, when it first came.
type Seen = Arc<Mutex<BTreeMap<u64, (bool, u32, Instant)>>>;

/// Each `push` of the producer: the ids, and how many connections got them live.
type Produced = Arc<Mutex<Vec<(std::ops::Range<u64>, usize)>>>;

struct Run {
    fake: FakeBybit,
    app: TestApp,
    _dir: tempfile::TempDir,
    seen: Seen,
    /// Ids the fake produced, with whether a connection got them live.
    produced: Produced,
    stop: CancellationToken,
}

impl Run {
    async fn start(category: Category) -> Self {
        let fake = FakeBybit::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = TestConfig::default()
            .var("BYBIT_WS_URL", fake.base_url())
            .var("BYBIT_REST_URL", fake.rest_url())
            .var("DATABASE_URL", sqlite_url(dir.path()));
        config.pipeline.source = fast_config(secs(20), secs(10));
        let app = spawn_app(config).await;
        let seen: Seen = Arc::default();
        let mut events = app.events.subscribe();
        let collected = seen.clone();
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        panic!("the test consumer lagged by {n} events")
                    }
                    Err(_) => return,
                };
                if ev.topic.as_str() != TOPIC || ev.category != Some(category) {
                    continue;
                }
                let envelope: Value = serde_json::from_slice(&ev.json).unwrap();
                let recovered = envelope["recovered"].as_bool().unwrap_or(false);
                let data: Vec<Value> = serde_json::from_slice(ev.data()).unwrap();
                let mut seen = collected.lock().unwrap();
                for t in data {
                    let id: u64 = t["i"].as_str().unwrap().parse().unwrap();
                    let e = seen.entry(id).or_insert((recovered, 0, Instant::now()));
                    e.1 += 1;
                }
            }
        });
        let endpoint = Endpoint::Public(category);
        app.registry
            .acquire(&TopicKey::new(endpoint, TOPIC), "trades-test");
        let path = format!("/v5/public/{category}");
        assert!(
            fake.wait_subscribed(&path, TOPIC, secs(10)).await,
            "{TOPIC} subscribed on {path}"
        );
        let produced: Produced = Arc::default();
        let stop = CancellationToken::new();
        let (tape, log, token) = (
            fake.trades(category.as_str(), SYMBOL),
            produced.clone(),
            stop.clone(),
        );
        // 200 trades/s: 10 every 50 ms, also while no one is connected.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !token.is_cancelled() {
                tick.tick().await;
                let pushed = tape.push(10);
                log.lock().unwrap().push(pushed);
            }
        });
        Self {
            fake,
            app,
            _dir: dir,
            seen,
            produced,
            stop,
        }
    }

    fn seen_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Lets trades flow, drops the exchange for 2 s, lets trades flow again, stops the
    /// producer and waits until the last produced trade arrived; returns when it came back.
    async fn outage(&self) -> Instant {
        let flowing = wait_until(secs(10), || async {
            (self.seen_count() >= 100).then_some(())
        })
        .await;
        assert!(flowing.is_some(), "live trades flow before the drop");
        self.fake.go_offline();
        tokio::time::sleep(secs(2)).await;
        let back_at = Instant::now();
        self.fake.go_online();
        tokio::time::sleep(secs(3)).await;
        self.stop.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let last = self
            .produced
            .lock()
            .unwrap()
            .last()
            .map(|(r, _)| r.end - 1)
            .unwrap();
        let arrived = wait_until(secs(20), || async {
            self.seen.lock().unwrap().contains_key(&last).then_some(())
        })
        .await;
        assert!(arrived.is_some(), "the last produced trade {last} arrived");
        back_at
    }

    /// Ids produced while no connection got them live.
    fn missed(&self) -> Vec<u64> {
        self.produced
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, sent)| *sent == 0)
            .flat_map(|(r, _)| r.clone())
            .collect()
    }

    fn all_produced(&self) -> Vec<u64> {
        self.produced
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(r, _)| r.clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_missed_in_a_public_drop_arrive_recovered_and_contiguous() {
    let run = Run::start(Category::Linear).await;
    let back_at = run.outage().await;
    let seen = run.seen.lock().unwrap().clone();
    let produced = run.all_produced();
    let missed = run.missed();
    assert!(
        missed.len() >= 200,
        "a 2 s drop at 200 trades/s misses hundreds: {}",
        missed.len()
    );
    // Every trade produced arrived exactly once: contiguous ids across the gap.
    let ids: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        ids, produced,
        "the consumer sees every trade id, in one run"
    );
    let repeats: Vec<_> = seen.iter().filter(|(_, (_, n, _))| *n > 1).collect();
    assert!(repeats.is_empty(), "no trade twice: {repeats:?}");
    // The missed ones came over REST, marked; the rest live.
    let recovered: Vec<u64> = seen
        .iter()
        .filter(|(_, (r, _, _))| *r)
        .map(|(id, _)| *id)
        .collect();
    for id in &missed {
        assert!(recovered.contains(id), "missed trade {id} marked recovered");
    }
    let closed = missed
        .iter()
        .filter_map(|id| seen.get(id).map(|(_, _, at)| *at))
        .max()
        .unwrap();
    println!(
        "trades: {} produced, {} missed live, {} recovered over REST, 0 lost; the gap was \
         filled {:?} after the exchange came back (reconnect, resubscribe, REST included)",
        produced.len(),
        missed.len(),
        recovered.len(),
        closed.saturating_duration_since(back_at)
    );
    run.app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_rest_no_longer_has_are_counted_as_lost() {
    let lost_before = metric_sum("ws_gateway_trades_lost_total", "category=\"spot\"");
    let run = Run::start(Category::Spot).await;
    let _back_at = run.outage().await;
    let seen = run.seen.lock().unwrap().clone();
    let produced = run.all_produced();
    let missing: Vec<u64> = produced
        .iter()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .collect();
    // Spot REST keeps 60: a 2 s drop at 200 trades/s misses more.
    assert!(
        missing.len() > 60,
        "more missed than REST keeps: {}",
        missing.len()
    );
    // The missing ids are one run, right before what REST still had.
    assert_eq!(
        missing.last().unwrap() - missing.first().unwrap() + 1,
        missing.len() as u64,
        "one contiguous hole"
    );
    let repeats: Vec<_> = seen.iter().filter(|(_, (_, n, _))| *n > 1).collect();
    assert!(repeats.is_empty(), "no trade twice: {repeats:?}");
    let recovered = seen.values().filter(|(r, _, _)| *r).count();
    assert!(recovered > 0, "what REST still had came recovered");
    let lost = metric_sum("ws_gateway_trades_lost_total", "category=\"spot\"") - lost_before;
    assert_eq!(
        lost,
        missing.len() as f64,
        "the lost count equals the trades missing"
    );
    println!(
        "trades (spot): {} produced, {} missed live, {recovered} recovered, {} lost (counted {lost})",
        produced.len(),
        run.missed().len(),
        missing.len()
    );
    run.app.shutdown().await.unwrap();
}
