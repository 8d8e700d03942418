//! Public trade recovery in a session (the pure parts are in [`crate::source::trade_gap`]).
//!
//! When a `publicTrade` topic that this connection emitted trades on before is acked again
//! after a reconnect, its live frames are held (at most `[source] trade_recovery_hold`
//! frames, at most `trade_recovery_wait` from the ack). The REST fetch of recent trades starts
//! as soon as the first live frame arrives (its first trade bounds the gap) or after
//! [`FIRST_LIVE_WAIT`] on a quiet topic; it runs in its own task, so the socket keeps being
//! read. The recovered trades are then emitted, then the held live frames, in order; on a REST
//! failure or when the wait or the bound is exceeded, the held frames are emitted and the gap
//! is counted as lost. Other topics are never held.

use std::collections::{HashMap, HashSet};

use async_tungstenite::tungstenite::Utf8Bytes;
use serde_json::Value;
use tokio::{sync::mpsc, time::Instant};

use super::{Next, Session};
use crate::{
    event::{Endpoint, RawFrame},
    source::trade_gap::{self, Lost, TradeMark},
    telemetry,
    wire::DataHead,
};

/// A quiet topic (no live trade since the ack) is fetched after this long.
const FIRST_LIVE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// A REST answer for one topic's recovery.
#[derive(Debug)]
pub(super) struct Fetched {
    topic: String,
    generation: u64,
    result: Result<Vec<Value>, String>,
}

/// One topic's recovery in progress.
#[derive(Debug)]
struct Recovery {
    generation: u64,
    /// The last trade emitted before the gap.
    mark: TradeMark,
    /// Recovered trades per event: [`trade_gap::TRADES_PER_EVENT`] after this connection's own
    /// gap; 1 after a dead owner's, whose last published frames are not known exactly.
    per_event: usize,
    acked_at: Instant,
    /// Live frames that arrived since the ack, in order.
    held: Vec<RawFrame>,
    /// The first live trade since the ack.
    first_live: Option<TradeMark>,
    fetching: bool,
}

/// The trade recoveries of one session.
#[derive(Debug)]
pub(super) struct TradeGaps {
    pending: HashMap<String, Recovery>,
    /// Trade ids published as recovered before any live trade of their topic arrived: a live
    /// frame whose last trade is among them repeats them and is dropped (until a new one).
    repeats: HashMap<String, HashSet<String>>,
    tx: mpsc::Sender<Fetched>,
    pub(super) results: mpsc::Receiver<Fetched>,
    generation: u64,
}

impl Default for TradeGaps {
    fn default() -> Self {
        let (tx, results) = mpsc::channel(trade_gap::CONCURRENT_FETCHES * 4);
        Self {
            pending: HashMap::new(),
            repeats: HashMap::new(),
            tx,
            results,
            generation: 0,
        }
    }
}

impl TradeGaps {
    /// Whether any topic is being recovered or deduplicated (the hot path checks this first).
    fn idle(&self) -> bool {
        self.pending.is_empty() && self.repeats.is_empty()
    }
}

impl Session<'_> {
    fn category_label(&self) -> &'static str {
        self.ctx.endpoint.label()
    }

    /// A topic was acked: if it is a public trade topic this connection emitted trades on
    /// before, its recovery starts.
    pub(super) fn trade_acked(&mut self, topic: &str) {
        if !matches!(self.ctx.endpoint, Endpoint::Public(_))
            || !trade_gap::is_public_trade(topic)
            || self.ctx.config.trade_recovery_wait.is_zero()
            || self.ctx.trade_recovery.rest.is_none()
            || self.trades.pending.contains_key(topic)
        {
            return;
        }
        // This connection's own last trade, or the one a lease taken from a dead owner brought.
        let key = crate::subscriptions::TopicKey::new(self.ctx.endpoint, topic);
        let inherited = self.ctx.ownership.take_inherited_trade(&key);
        let (mark, per_event) = match (self.ctx.trade_marks.get(topic), inherited) {
            (Some(mark), _) => (mark.clone(), trade_gap::TRADES_PER_EVENT),
            (None, Some(m)) => (TradeMark::new(&m.id, m.time), 1),
            (None, None) => return,
        };
        self.trades.generation += 1;
        tracing::debug!(endpoint = self.label(), topic, last_trade = %mark.id,
            "Public trade topic back after a gap; holding its live frames while REST answers.");
        self.trades.pending.insert(
            topic.to_owned(),
            Recovery {
                generation: self.trades.generation,
                mark,
                per_event,
                acked_at: Instant::now(),
                held: Vec::new(),
                first_live: None,
                fetching: false,
            },
        );
    }

    /// Notes the last trade of a frame, here and, in a cluster, for the lease (the next owner
    /// recovers from it if this instance dies).
    fn note_trade(&mut self, topic: &str, data: &str) {
        if let Some((id, time)) = self.ctx.trade_marks.note(topic, data) {
            self.ctx
                .ownership
                .note_trade(self.ctx.endpoint, topic, id, time);
        }
    }

    /// A live `publicTrade` frame: noted as the topic's last trade and emitted, or held while
    /// its topic is recovered, or dropped as a repeat of recovered trades.
    pub(super) fn trade_frame(&mut self, text: Utf8Bytes, head: DataHead) -> Next {
        let topic = head.topic(text.as_str());
        let data = head.data(text.as_str());
        if self.trades.idle() {
            self.note_trade(topic, data);
            return Next::Emit(text, head);
        }
        if let Some(seen) = self.trades.repeats.get(topic) {
            if trade_gap::last_trade(data).is_some_and(|(id, _)| seen.contains(id)) {
                tracing::debug!(
                    topic,
                    "Live trades already published as recovered; frame dropped."
                );
                return Next::Continue;
            }
            let topic = topic.to_owned();
            self.trades.repeats.remove(&topic);
        }
        let topic = head.topic(text.as_str());
        self.note_trade(topic, data);
        let Some(recovery) = self.trades.pending.get_mut(topic) else {
            return Next::Emit(text, head);
        };
        if recovery.first_live.is_none() {
            recovery.first_live = trade_gap::first_trade(data).map(|(id, t)| TradeMark::new(id, t));
        }
        let topic = topic.to_owned();
        let frame = RawFrame::new(
            self.ctx.endpoint,
            self.id,
            self.last_frame.into_std(),
            text,
            head,
        );
        recovery.held.push(frame);
        if recovery.held.len() > self.ctx.config.trade_recovery_hold {
            return Next::Release(self.give_up(&topic, "too many live frames held"));
        }
        if !recovery.fetching {
            self.start_fetch(&topic);
        }
        Next::Continue
    }

    /// Periodic: starts the fetch of quiet topics, gives up recoveries past their wait.
    pub(super) fn trade_tick(&mut self, now: Instant) -> Next {
        if self.trades.pending.is_empty() {
            return Next::Continue;
        }
        let wait = self.ctx.config.trade_recovery_wait;
        let first_wait = FIRST_LIVE_WAIT.min(wait / 2);
        let mut due = Vec::new();
        let mut late = Vec::new();
        for (topic, r) in &self.trades.pending {
            let age = now.saturating_duration_since(r.acked_at);
            if age >= wait {
                late.push(topic.clone());
            } else if !r.fetching && age >= first_wait {
                due.push(topic.clone());
            }
        }
        for topic in due {
            self.start_fetch(&topic);
        }
        let mut out = Vec::new();
        for topic in late {
            out.extend(self.give_up(&topic, "REST did not answer in time"));
        }
        if out.is_empty() {
            Next::Continue
        } else {
            Next::Release(out)
        }
    }

    fn start_fetch(&mut self, topic: &str) {
        let Some(recovery) = self.trades.pending.get_mut(topic) else {
            return;
        };
        let (Some(rest), Some(category)) = (
            self.ctx.trade_recovery.rest.clone(),
            self.ctx.endpoint.category(),
        ) else {
            return;
        };
        recovery.fetching = true;
        let generation = recovery.generation;
        let permits = self.ctx.trade_recovery.permits.clone();
        let tx = self.trades.tx.clone();
        let stop = self.stop.clone();
        let wait = self.ctx.config.trade_recovery_wait;
        let topic = topic.to_owned();
        let symbol = topic
            .strip_prefix("publicTrade.")
            .unwrap_or_default()
            .to_owned();
        self.ctx
            .supervisor
            .spawn("source-trade-recovery", async move {
                let fetch = async {
                    let _permit = permits.acquire().await;
                    rest.recent_trades(category.as_str(), &symbol, trade_gap::rest_keeps(category))
                        .await
                };
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = tokio::time::timeout(wait, fetch) => match r {
                        Ok(Ok(list)) => Ok(list),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!("no answer within {wait:?}")),
                    },
                };
                // The session may be gone (its receiver with it): nothing to do then.
                let _ = tx
                    .send(Fetched {
                        topic,
                        generation,
                        result,
                    })
                    .await;
            });
    }

    /// REST answered for a topic: the recovered trades, then its held live frames.
    pub(super) fn trades_fetched(&mut self, fetched: Fetched) -> Next {
        let current = self
            .trades
            .pending
            .get(&fetched.topic)
            .is_some_and(|r| r.generation == fetched.generation);
        if !current {
            return Next::Continue;
        }
        let topic = fetched.topic;
        let list = match fetched.result {
            Ok(list) => list,
            Err(error) => {
                let reason = format!("REST failed: {error}");
                return Next::Release(self.give_up(&topic, &reason));
            }
        };
        let Some(recovery) = self.trades.pending.remove(&topic) else {
            return Next::Continue;
        };
        let plan = trade_gap::plan(&list, &recovery.mark, recovery.first_live.as_ref());
        let category = self.category_label();
        let recovered = plan.trades.len();
        metrics::counter!(telemetry::TRADES_RECOVERED, "category" => category)
            .increment(recovered as u64);
        if let Some(lost) = plan.lost {
            metrics::counter!(telemetry::TRADE_GAPS_LOST, "category" => category).increment(1);
            let first_rest = plan.trades.first().and_then(|t| t.get("i")).cloned();
            let count = match lost {
                Lost::Counted(n) => {
                    metrics::counter!(telemetry::TRADES_LOST, "category" => category).increment(n);
                    Some(n)
                }
                Lost::Uncounted => None,
            };
            tracing::warn!(endpoint = category, topic = %topic, after_trade = %recovery.mark.id,
                after_time = recovery.mark.time, before_trade = ?first_rest, lost = ?count,
                recovered, "Public trades missed in a reconnect gap are older than Bybit's REST keeps; lost.");
        } else {
            tracing::info!(endpoint = category, topic = %topic, after_trade = %recovery.mark.id,
                recovered, "Public trades missed in a reconnect gap recovered over REST.");
        }
        if recovery.first_live.is_none()
            && let Some(last) = plan.trades.last()
        {
            // Nothing live yet: these trades may still arrive live; drop them then.
            let ids: HashSet<String> = plan
                .trades
                .iter()
                .filter_map(|t| t.get("i")?.as_str().map(str::to_owned))
                .collect();
            let id = last.get("i").and_then(Value::as_str).unwrap_or_default();
            let time = last.get("T").and_then(Value::as_u64).unwrap_or(0);
            self.ctx.trade_marks.set(&topic, TradeMark::new(id, time));
            self.ctx
                .ownership
                .note_trade(self.ctx.endpoint, &topic, id, time);
            self.trades.repeats.insert(topic.clone(), ids);
        }
        let mut out = trade_gap::recovered_frames(
            self.ctx.endpoint,
            self.id,
            &topic,
            &plan.trades,
            recovery.per_event,
        );
        out.extend(recovery.held);
        Next::Release(out)
    }

    /// Ends a recovery without REST's trades: the gap is counted and logged, the held live
    /// frames are returned to be emitted.
    fn give_up(&mut self, topic: &str, reason: &str) -> Vec<RawFrame> {
        let Some(recovery) = self.trades.pending.remove(topic) else {
            return Vec::new();
        };
        let category = self.category_label();
        metrics::counter!(telemetry::TRADE_GAPS_LOST, "category" => category).increment(1);
        tracing::warn!(endpoint = category, topic, after_trade = %recovery.mark.id,
            after_time = recovery.mark.time, before_trade = ?recovery.first_live.as_ref().map(|m| &m.id),
            held = recovery.held.len(), reason,
            "Public trades missed in a reconnect gap not recovered; live frames released.");
        recovery.held
    }

    /// Emits `frames` in order; false when the source is stopping or its output is gone.
    pub(super) async fn deliver(&mut self, frames: Vec<RawFrame>) -> bool {
        for frame in frames {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                sent = self.ctx.out.send(frame) => if sent.is_err() { return false },
            }
        }
        true
    }

    /// The session is ending: every held live frame, in order, so nothing received is lost
    /// (their gaps are counted).
    pub(super) fn trades_release_all(&mut self) -> Vec<RawFrame> {
        let topics: Vec<String> = self.trades.pending.keys().cloned().collect();
        let mut out = Vec::new();
        for topic in topics {
            out.extend(self.give_up(&topic, "the connection ended"));
        }
        self.trades.repeats.clear();
        out
    }
}
