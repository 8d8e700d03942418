//! The REST catch-up (spec section 10): after every private (re)connect and at start, what
//! Bybit sent while the private socket was down (or the gateway dead) is fetched over REST and
//! published as `recovered` events, before the live frames that arrived meanwhile; wallet and
//! positions are published once as snapshots.
//!
//! - [`items`]: item identities, recovered keys and frames;
//! - [`cursor`]: the per-topic cursor, advanced only by broker confirms, written in batches;
//! - `fetch`: the REST calls of one catch-up.
//!
//! The source does not import this wing: it sees the [`Engine`] as a
//! [`PrivateHook`](crate::source::gate::PrivateHook) that `app.rs` hands it.

pub mod cursor;
mod fetch;
pub mod items;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, Weak},
};

use tokio_util::sync::CancellationToken;

use crate::{
    event::RawFrame,
    pipeline_file::CatchupConfig,
    rest::RestClient,
    shutdown::Supervisor,
    source::gate::{CatchupStart, PrivateHook},
    store::cursors::Cursor,
    telemetry,
};
use items::{Family, ItemId};

/// Item identities this process published (live or recovered: the flag), bounded: the oldest
/// are forgotten first (the cursor covers them once confirmed).
#[derive(Debug, Default)]
struct Seen {
    map: HashMap<(Family, String), bool>,
    order: VecDeque<(Family, String)>,
    capacity: usize,
}

impl Seen {
    /// Whether `id` was published by a catch-up.
    fn recovered(&self, family: Family, id: &str) -> bool {
        self.map
            .get(&(family, id.to_owned()))
            .copied()
            .unwrap_or(false)
    }

    /// Records `id` as published (`recovered` by a catch-up, else live); `false` when it was
    /// already recorded.
    fn insert(&mut self, family: Family, id: &str, recovered: bool) -> bool {
        let key = (family, id.to_owned());
        if let Some(r) = self.map.get_mut(&key) {
            *r |= recovered;
            return false;
        }
        self.map.insert(key.clone(), recovered);
        self.order.push_back(key);
        while self.order.len() > self.capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        true
    }
}

/// The catch-up engine: one per process, shared by the private sessions.
#[derive(Debug)]
pub struct Engine {
    rest: RestClient,
    config: CatchupConfig,
    /// Confirmed progress per topic (loaded from the database, advanced by the cursor writer).
    cursors: cursor::Cursors,
    seen: Mutex<Seen>,
    /// With no cursor: the start of the first catch-up (process start − lookback), ms.
    default_from: u64,
    /// The connection whose catch-ups run, and their parent token (a new connect replaces it).
    current: Mutex<Option<(u64, CancellationToken)>>,
    supervisor: Supervisor,
    stop: CancellationToken,
    me: Weak<Engine>,
}

impl Engine {
    /// An engine fetching with `rest`, starting from `cursors`; its tasks end on `stop`.
    pub fn new(
        rest: RestClient,
        config: CatchupConfig,
        cursors: cursor::Cursors,
        supervisor: Supervisor,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let lookback = u64::try_from(config.first_start_lookback.as_millis()).unwrap_or(0);
        let default_from = rest.clock().now_ms().saturating_sub(lookback);
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            seen: Mutex::new(Seen {
                capacity: config.seen_capacity,
                ..Seen::default()
            }),
            rest,
            config,
            cursors,
            default_from,
            current: Mutex::new(None),
            supervisor,
            stop,
        })
    }

    /// Keeps the items not published yet (behind `start`, the cursor the catch-up began
    /// from, or in the seen set) and marks them published, in one step under the lock, so a
    /// live frame of the same item arriving meanwhile is dropped.
    fn take_new(
        &self,
        start: Option<&Cursor>,
        family: Family,
        items: Vec<(ItemId, fetch::Item)>,
    ) -> Vec<fetch::Item> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        items
            .into_iter()
            .filter(|(id, _)| !start.is_some_and(|c| c.covers(id.ts, &id.id)))
            .filter(|(id, _)| seen.insert(family, &id.id, true))
            .map(|(_, item)| item)
            .collect()
    }

    async fn run(self: Arc<Self>, request: CatchupStart, token: CancellationToken) {
        let CatchupStart {
            connection_id,
            topics,
            out,
            done,
            authed_at,
        } = request;
        let mut done = Some(done);
        let plan: Vec<(String, Family)> = topics
            .iter()
            .filter_map(|t| Some((t.clone(), Family::of(t)?)))
            .collect();
        if plan.is_empty() {
            if let Some(d) = done.take() {
                let _ = d.send(());
            }
            return;
        }
        let starts: BTreeMap<String, Cursor> = {
            let mut state = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
            let default_from = i64::try_from(self.default_from).unwrap_or(i64::MAX);
            plan.iter()
                .filter(|(_, f)| f.has_cursor())
                .map(|(t, _)| (t.clone(), state.begin(t, connection_id, default_from)))
                .collect()
        };
        let from: BTreeMap<String, u64> = starts
            .iter()
            .map(|(t, c)| (t.clone(), u64::try_from(c.ts).unwrap_or(0)))
            .collect();
        let from = self.within_retention(from);
        let mut delay = self.config.retry_initial;
        let mut gap: Option<u64> = None;
        loop {
            let to = self.rest.clock().now_ms();
            let fetched = tokio::select! {
                () = token.cancelled() => {
                    if gap.is_some() {
                        // The next catch-up (a newer connect) covers this range.
                        metrics::gauge!(telemetry::CATCHUP_GAPS_OPEN).decrement(1.0);
                    }
                    return;
                }
                () = self.stop.cancelled() => return,
                r = fetch::fetch(&self.rest, &self.config, &plan, &from, to) => r,
            };
            match fetched {
                Ok(batches) => {
                    let mut frames = Vec::new();
                    for batch in batches {
                        let new = if batch.family.has_cursor() {
                            self.take_new(starts.get(&batch.topic), batch.family, batch.items)
                        } else {
                            batch.items.into_iter().map(|(_, i)| i).collect()
                        };
                        if !new.is_empty() {
                            metrics::counter!(telemetry::CATCHUP_RECOVERED,
                                "topic" => batch.family.as_str())
                            .increment(new.len() as u64);
                        }
                        for item in new {
                            let text =
                                items::frame_text(&item.key, &batch.topic, item.ts, &item.value);
                            match recovered_frame(connection_id, text, item.key) {
                                Ok(frame) => frames.push(frame),
                                Err(()) => tracing::warn!(topic = %batch.topic,
                                    "A recovered item did not make a frame; skipped."),
                            }
                        }
                    }
                    let n = frames.len();
                    for frame in frames {
                        tokio::select! {
                            () = self.stop.cancelled() => return,
                            sent = out.send(frame) => if sent.is_err() { return },
                        }
                    }
                    {
                        let mut state = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
                        for topic in starts.keys() {
                            state.release(topic, connection_id);
                        }
                    }
                    let took = authed_at.elapsed();
                    metrics::histogram!(telemetry::CATCHUP_DURATION).record(took.as_secs_f64());
                    if gap.is_some() {
                        metrics::gauge!(telemetry::CATCHUP_GAPS_OPEN).decrement(1.0);
                        tracing::warn!(
                            recovered = n,
                            "Catch-up succeeded after REST failures; the gap is closed (these events come after live ones)."
                        );
                    } else {
                        tracing::info!(
                            recovered = n,
                            after_auth_ms = took.as_millis() as u64,
                            "Catch-up done; recovered events published before the held live frames."
                        );
                    }
                    if let Some(d) = done.take() {
                        let _ = d.send(());
                    }
                    return;
                }
                Err(error) => {
                    if gap.is_none() {
                        let since = from.values().min().copied().unwrap_or(to);
                        gap = Some(since);
                        metrics::gauge!(telemetry::CATCHUP_GAPS_OPEN).increment(1.0);
                        for (_, family) in &plan {
                            metrics::counter!(telemetry::CATCHUP_GAPS, "topic" => family.as_str())
                                .increment(1);
                        }
                        tracing::error!(%error, topics = ?topics, from_ms = since, to_ms = to,
                            retry_in = ?delay,
                            "Catch-up over REST failed: a gap in the private streams; live events flow after max_hold, the catch-up is retried in the background.");
                    } else {
                        tracing::warn!(%error, retry_in = ?delay, "Catch-up retry failed.");
                    }
                    tokio::select! {
                        () = token.cancelled() => {
                            if gap.is_some() {
                                // The next catch-up (a newer connect) covers this range.
                                metrics::gauge!(telemetry::CATCHUP_GAPS_OPEN).decrement(1.0);
                            }
                            return;
                        }
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.config.retry_max.max(self.config.retry_initial));
                }
            }
        }
    }
}

impl Engine {
    /// `from` with every start older than Bybit keeps ([`CatchupConfig::retention`]) moved to
    /// the oldest time REST still answers for; what lies before is a gap, counted and logged
    /// once at ERROR, never fetched (Bybit would refuse it, and a retry would loop).
    fn within_retention(&self, from: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        let now = self.rest.clock().now_ms();
        let keep = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
        let floor = now.saturating_sub(keep);
        from.into_iter()
            .map(|(topic, ts)| {
                if ts < floor {
                    let family = Family::of(&topic).map_or("other", Family::as_str);
                    metrics::counter!(telemetry::CATCHUP_GAPS, "topic" => family).increment(1);
                    tracing::error!(topic = %topic, from_ms = ts, to_ms = floor,
                        "Catch-up: this range is older than Bybit's REST history keeps; its events are lost (counted as a gap).");
                    (topic, floor)
                } else {
                    (topic, ts)
                }
            })
            .collect()
    }
}

/// A recovered item's frame, through the same decode → classify → enrich as a live frame; it
/// comes out with `recovered: true` and `key`.
fn recovered_frame(connection_id: u64, text: String, key: String) -> Result<RawFrame, ()> {
    RawFrame::recovered(crate::event::Endpoint::Private, connection_id, text, key).map_err(drop)
}

impl PrivateHook for Engine {
    fn start(&self, request: CatchupStart) {
        let Some(this) = self.me.upgrade() else {
            return;
        };
        // A newer connection's catch-up replaces the older connection's (it covers the same
        // range from the cursor); catch-ups of one session run side by side.
        let token = {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            match current.as_ref() {
                Some((id, parent)) if *id == request.connection_id => parent.child_token(),
                _ => {
                    let parent = self.stop.child_token();
                    if let Some((_, old)) = current.replace((request.connection_id, parent.clone()))
                    {
                        old.cancel();
                    }
                    parent.child_token()
                }
            }
        };
        self.supervisor.spawn("catchup", this.run(request, token));
    }

    fn live(&self, frame: &RawFrame) -> bool {
        let Some(family) = Family::of(frame.topic()).filter(|f| f.has_cursor()) else {
            return true;
        };
        let ids = items::live_ids(family, frame.data());
        if ids.is_empty() {
            return true;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Dropped only when a catch-up already published every item (Bybit does not send an
        // item twice live; a repeated live frame passes as it came).
        let all_recovered = ids.iter().all(|id| seen.recovered(family, &id.id));
        for id in &ids {
            seen.insert(family, &id.id, false);
        }
        !all_recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_remembers_the_newest_ids_and_whether_a_catch_up_published_them() {
        let mut seen = Seen {
            capacity: 2,
            ..Seen::default()
        };
        assert!(seen.insert(Family::Execution, "a", false));
        assert!(!seen.recovered(Family::Execution, "a"));
        assert!(!seen.insert(Family::Execution, "a", true), "known already");
        assert!(
            seen.recovered(Family::Execution, "a"),
            "now known as recovered"
        );
        assert!(seen.insert(Family::Order, "a", false), "families differ");
        assert!(seen.insert(Family::Execution, "b", true));
        assert!(
            seen.insert(Family::Execution, "a", false),
            "the oldest was forgotten past the capacity"
        );
    }
}
