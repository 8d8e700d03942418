//! Tasks behind the API: subscription status follower, `last_event_at` flusher and the
//! database ping. All run under the [`Supervisor`] and end on shutdown.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    event::{Endpoint, Event},
    health::ComponentState,
    shutdown::Supervisor,
    source::subscriptions::TopicKey,
    state::AppState,
    store, telemetry,
};

/// How often the database is pinged for `/health`.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A ping slower than this counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a status write that failed is retried (as a full resync).
const RESYNC_EVERY: Duration = Duration::from_secs(5);

/// Starts the three tasks.
pub fn spawn(state: &AppState, supervisor: &Supervisor, last_event_flush: Duration) {
    supervisor.spawn("api-status", follow_status(state.clone()));
    supervisor.spawn(
        "api-last-event",
        track_last_event(
            state.clone(),
            last_event_flush.max(Duration::from_millis(10)),
        ),
    );
    supervisor.spawn("db-ping", ping(state.clone()));
}

/// Writes every desired topic's status to its active rows; `true` when all writes succeeded.
async fn resync(state: &AppState) -> bool {
    let mut ok = true;
    for view in state.registry.snapshot() {
        let res = store::subscriptions::set_status(
            &state.db,
            &view.key,
            view.status.as_str(),
            view.status.message(),
        )
        .await;
        if let Err(error) = res {
            tracing::warn!(%error, "Cannot write subscription status; will retry.");
            ok = false;
            break;
        }
    }
    ok
}

async fn follow_status(state: AppState) {
    let mut rx = state.registry.status_changes();
    let mut dirty = !resync(&state).await;
    let mut tick = tokio::time::interval(RESYNC_EVERY);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick(), if dirty => dirty = !resync(&state).await,
            change = rx.recv() => match change {
                Ok(c) => {
                    let res = store::subscriptions::set_status(
                        &state.db, &c.key, c.status.as_str(), c.status.message(),
                    ).await;
                    if let Err(error) = res {
                        tracing::warn!(%error, topic = %c.key.topic, "Cannot write subscription status; will retry.");
                        dirty = true;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "Status follower lagged; resyncing.");
                    dirty = !resync(&state).await;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Topics held by API services (not `/ws` clients or the pipeline file): only their rows exist.
fn api_topics(state: &AppState) -> Vec<TopicKey> {
    state
        .registry
        .snapshot()
        .into_iter()
        .filter(|v| {
            v.holders
                .iter()
                .any(|h| !h.starts_with("ws:") && h != "pipeline")
        })
        .map(|v| v.key)
        .collect()
}

async fn track_last_event(state: AppState, every: Duration) {
    let mut rx = state.events.subscribe();
    // endpoint → topic → newest receipt time; looked up by &str, so no allocation per event.
    let mut seen: HashMap<Endpoint, HashMap<String, DateTime<Utc>>> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => flush(&state, &mut seen).await,
            event = rx.recv() => match event {
                Ok(event) => note(&mut seen, &event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn note(seen: &mut HashMap<Endpoint, HashMap<String, DateTime<Utc>>>, event: &Arc<Event>) {
    let topics = seen.entry(event.endpoint).or_default();
    match topics.get_mut(event.topic.as_str()) {
        Some(at) if *at < event.received_at => *at = event.received_at,
        Some(_) => {}
        None => {
            topics.insert(event.topic.clone(), event.received_at);
        }
    }
}

async fn flush(state: &AppState, seen: &mut HashMap<Endpoint, HashMap<String, DateTime<Utc>>>) {
    if seen.is_empty() {
        return;
    }
    let wanted = api_topics(state);
    for key in wanted {
        let Some(at) = seen.get(&key.endpoint).and_then(|t| t.get(&key.topic)) else {
            continue;
        };
        if let Err(error) = store::subscriptions::touch_last_event(&state.db, &key, *at).await {
            tracing::debug!(%error, topic = %key.topic, "Cannot write last_event_at.");
            // Keep the map: the next flush retries.
            return;
        }
    }
    seen.clear();
}

async fn ping(state: AppState) {
    let mut tick = tokio::time::interval(PING_EVERY);
    let mut last = None;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let up = matches!(
            tokio::time::timeout(PING_TIMEOUT, store::ping(&state.db)).await,
            Ok(Ok(()))
        );
        let now = if up {
            ComponentState::Up
        } else {
            ComponentState::Down
        };
        state.health.set_database(now);
        metrics::gauge!(telemetry::DB_UP).set(if up { 1.0 } else { 0.0 });
        if last.is_some_and(|l| l != now) || (last.is_none() && !up) {
            if up {
                tracing::info!("Database answers again.");
            } else {
                tracing::warn!("Database does not answer.");
            }
        }
        last = Some(now);
    }
}
