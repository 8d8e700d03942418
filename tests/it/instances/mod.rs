//! Issue 14, spec section 11: several real `ws-gateway` processes (`WS_GATEWAY_CLUSTER=postgres`)
//! on 127.0.0.2, .3, .4 (.5 for a fourth) against the fake Bybit, the real RabbitMQ and one fresh
//! PostgreSQL database, checked black-box: upstream topics as the fake sees them (per instance,
//! through a proxy of each), `GET /api/v1/cluster`, and consumers on the class queues that keep
//! each message's `instance`, `epoch`, `event_key` and `topic` headers.
//!
//! Every test here is `#[ignore]`d (each starts three or four processes and runs for tens of
//! seconds); `.ci/run` runs them as their own step:
//! `cargo test --test it instances -- --ignored --test-threads 1`. They print the measured
//! figures (failover p50/max, repeats) with `--nocapture`. A test the feature does not pass yet
//! says so in its `#[ignore = "issue 14: ..."]` and is in the step's `--skip` list; run it by
//! name to see where the feature stands.

mod api;
mod faults;
mod harness;
mod moves;
mod relay;
mod spread;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_bybit::{FakeBybit, LINEAR, PRIVATE, Trading};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    catchup::{exec_id, order_id},
    support::{
        instances::{Cluster, Msg, Recorder},
        secs,
    },
};

/// Instance ids and their addresses.
pub const A: &str = "gw-a";
pub const B: &str = "gw-b";
pub const C: &str = "gw-c";
pub const D: &str = "gw-d";
pub const HOSTS: [(&str, &str); 4] = [
    (A, "127.0.0.2"),
    (B, "127.0.0.3"),
    (C, "127.0.0.4"),
    (D, "127.0.0.5"),
];

/// `n` linear symbols of the suite's own (`T00USDT`, ...).
pub fn symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("T{i:02}USDT")).collect()
}

/// A pipeline file holding trades of `symbols` and, if `private`, the private stream
/// (`execution`, `order`) from startup, with quick reconnects.
pub fn pipeline(symbols: &[String], private: bool) -> String {
    let mut out = String::from(
        "[source]\nconnect_on_start = []\nreconnect_initial = \"100ms\"\nreconnect_max = \"500ms\"\n",
    );
    if private {
        out.push_str("\n[[subscriptions]]\nchannel_type = \"execution\"\n");
        out.push_str("\n[[subscriptions]]\nchannel_type = \"order\"\n");
    }
    for s in symbols {
        out.push_str(&format!(
            "\n[[subscriptions]]\nchannel_type = \"trades\"\nsymbol = \"{s}\"\n"
        ));
    }
    out
}

/// A cluster of `A`, `B` and `C` started at the same moment on the pipeline of `symbols`
/// (with the private stream if `private`).
pub async fn three_started(symbols: &[String], private: bool) -> Cluster {
    let mut c = Cluster::new(&pipeline(symbols, private)).await;
    for (id, host) in &HOSTS[..3] {
        c.add(id, host).await;
    }
    c.start_together(&[A, B, C]).await;
    c
}

/// The (path, topic)s that pipeline wants upstream.
pub fn expected(symbols: &[String], private: bool) -> BTreeSet<(String, String)> {
    let mut out: BTreeSet<(String, String)> = symbols
        .iter()
        .map(|s| (LINEAR.to_owned(), format!("publicTrade.{s}")))
        .collect();
    if private {
        out.insert((PRIVATE.to_owned(), "execution".into()));
        out.insert((PRIVATE.to_owned(), "order".into()));
    }
    out
}

/// Symbol → (trade id, connections that got it) in production order.
pub type Produced = BTreeMap<String, Vec<(u64, usize)>>;

/// Public trades on every symbol (one trade per symbol every `every`) and, if `private`, an
/// account trading every 100 ms; what was produced is kept.
pub struct Traffic {
    stop: CancellationToken,
    produced: Arc<Mutex<Produced>>,
    trading: Option<Trading>,
}

impl Traffic {
    pub fn start(fake: &FakeBybit, symbols: &[String], every: Duration, private: bool) -> Self {
        let stop = CancellationToken::new();
        let produced = Arc::new(Mutex::new(BTreeMap::new()));
        let tapes: Vec<_> = symbols
            .iter()
            .map(|s| (s.clone(), fake.trades("linear", s)))
            .collect();
        let (token, out) = (stop.clone(), produced.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                for (s, tape) in &tapes {
                    let (ids, sent) = tape.push(1);
                    let mut out = out.lock().unwrap();
                    let v: &mut Vec<(u64, usize)> = out.entry(s.clone()).or_default();
                    v.extend(ids.map(|i| (i, sent)));
                }
            }
        });
        let trading = private.then(|| {
            fake.account()
                .keep_trading("linear", "BTCUSDT", Duration::from_millis(100))
        });
        Self {
            stop,
            produced,
            trading,
        }
    }

    /// Stops producing (public and private).
    pub fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.trading.take() {
            t.stop();
        }
    }

    pub fn produced(&self) -> Produced {
        self.produced.lock().unwrap().clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops `traffic`, lets the queues settle, and returns what the recorders received:
/// (executions, orders, trades).
pub async fn stop_and_collect(
    traffic: &mut Traffic,
    rec: &BTreeMap<String, Recorder>,
) -> (Vec<Msg>, Vec<Msg>, Vec<Msg>) {
    traffic.stop();
    tokio::time::sleep(secs(3)).await;
    for r in rec.values() {
        r.settle(secs(2), secs(30)).await;
    }
    (
        rec["executions"].msgs(),
        rec["orders"].msgs(),
        rec["trades"].msgs(),
    )
}

/// Trade ids received per symbol (items `s` and `i` of each message's `data`).
pub fn received_trades(msgs: &[Msg]) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in msgs {
        for item in m.body["data"].as_array().into_iter().flatten() {
            if let (Some(s), Some(i)) = (item["s"].as_str(), item["i"].as_str())
                && let Ok(i) = i.parse()
            {
                out.entry(s.to_owned()).or_default().push(i);
            }
        }
    }
    out
}

/// Per symbol, the trade ids produced after the first one received that never reached the
/// queue, and how many were produced while no connection held the topic upstream.
pub fn trade_gaps(produced: &Produced, msgs: &[Msg]) -> BTreeMap<String, (Vec<u64>, usize)> {
    let got = received_trades(msgs);
    let mut out = BTreeMap::new();
    for (s, ids) in produced {
        let have: HashSet<u64> = got.get(s).into_iter().flatten().copied().collect();
        let Some(first) = got.get(s).and_then(|v| v.iter().min().copied()) else {
            out.insert(s.clone(), (ids.iter().map(|(i, _)| *i).collect(), 0));
            continue;
        };
        let missing: Vec<u64> = ids
            .iter()
            .filter(|(i, _)| *i > first && !have.contains(i))
            .map(|(i, _)| *i)
            .collect();
        let unheld = ids.iter().filter(|(i, n)| *i > first && *n == 0).count();
        if !missing.is_empty() || unheld > 0 {
            out.insert(s.clone(), (missing, unheld));
        }
    }
    out
}

/// The envelopes of `msgs`.
pub fn bodies(msgs: &[Msg]) -> Vec<Value> {
    msgs.iter().map(|m| m.body.clone()).collect()
}

/// Private events the account produced that are missing from the queues: (executions
/// missing, orders without their latest state), with the totals produced.
pub fn private_missing(
    fake: &FakeBybit,
    executions: &[Msg],
    orders: &[Msg],
) -> (Vec<String>, Vec<String>, usize, usize) {
    let account = fake.account();
    let have_exec: HashSet<String> = crate::catchup::items(&bodies(executions))
        .iter()
        .map(|(_, i)| exec_id(i))
        .collect();
    let have_orders: HashSet<String> = crate::catchup::items(&bodies(orders))
        .iter()
        .map(|(_, i)| order_id(i))
        .collect();
    let produced = account.executions();
    let missing_exec: Vec<String> = produced
        .iter()
        .map(exec_id)
        .filter(|id| !have_exec.contains(id))
        .collect();
    let mut latest = BTreeMap::new();
    for u in account.order_updates() {
        latest.insert(u["orderId"].as_str().unwrap_or("").to_owned(), order_id(&u));
    }
    let missing_orders: Vec<String> = latest
        .values()
        .filter(|id| !have_orders.contains(*id))
        .cloned()
        .collect();
    (missing_exec, missing_orders, produced.len(), latest.len())
}

/// Messages of `victim` under an epoch of `old` (topic → its epoch before the move) that
/// arrived after another instance's first message of that topic under a higher epoch.
pub fn stale_after_takeover(
    msgs: &[Msg],
    victim: &str,
    old: &BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut taken: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for m in msgs {
        let (Some(topic), Some(epoch), Some(inst)) = (&m.topic, m.epoch, &m.instance) else {
            continue;
        };
        let Some(old_epoch) = old.get(topic) else {
            continue;
        };
        if inst != victim && epoch > *old_epoch {
            taken.insert(topic.clone());
        } else if inst == victim && epoch <= *old_epoch && taken.contains(topic) {
            out.push((topic.clone(), epoch));
        }
    }
    out
}

/// Per topic, the highest epoch among the messages of `instance` (its leases' epochs as
/// consumers saw them).
pub fn epochs_of(msgs: &[Msg], instance: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for m in msgs {
        if let (Some(t), Some(e), Some(i)) = (&m.topic, m.epoch, &m.instance)
            && i == instance
        {
            let v = out.entry(t.clone()).or_insert(0);
            *v = (*v).max(e);
        }
    }
    out
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}
