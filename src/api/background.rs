//! Tasks behind the API: the subscription write-back (status follower, `last_event_at`
//! flusher, both of [`crate::subscriptions::Subscriptions`]) and the database ping. All run
//! under the [`Supervisor`] and end on shutdown.

use std::time::Duration;

use crate::{health::ComponentState, shutdown::Supervisor, state::AppState, store, telemetry};

/// How often the database is pinged for `/health`.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A ping slower than this counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts the tasks; the status follower only when this instance writes the statuses itself
/// (alone: in cluster mode each topic's owner writes them, `cluster::status`).
pub(super) fn spawn(state: &AppState, supervisor: &Supervisor, last_event_flush: Duration) {
    let subs = &state.subscriptions;
    if subs.writes_status() {
        supervisor.spawn(
            "api-status",
            subs.clone().follow_status(state.shutdown.clone()),
        );
    }
    supervisor.spawn(
        "api-last-event",
        subs.clone().track_last_event(
            state.events.subscribe(),
            last_event_flush.max(Duration::from_millis(10)),
            state.shutdown.clone(),
        ),
    );
    supervisor.spawn("db-ping", ping(state.clone()));
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
