//! Bybit's server time as seen from here: the measured offset (server − local) that REST
//! timestamps and the WebSocket `auth` `expires` are derived from, so a local clock that is
//! seconds off still authenticates. Exported as `ws_gateway_server_time_offset_seconds`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::telemetry;

/// Shared handle; clones see the same offset.
#[derive(Debug, Clone)]
pub struct ServerClock {
    offset_ms: Arc<AtomicI64>,
    /// `true` once the first sync attempt has finished (whatever its outcome).
    attempted: watch::Sender<bool>,
}

impl Default for ServerClock {
    /// The local clock (offset 0), with nothing to wait for.
    fn default() -> Self {
        Self::local()
    }
}

impl ServerClock {
    /// The local clock (offset 0) and no sync pending: [`ServerClock::wait_first_sync`]
    /// returns at once.
    pub fn local() -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(0)),
            attempted: watch::Sender::new(true),
        }
    }

    /// A clock whose first sync is still to come: [`ServerClock::wait_first_sync`] waits for it.
    pub fn pending() -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(0)),
            attempted: watch::Sender::new(false),
        }
    }

    /// The machine's clock in ms since the epoch.
    pub fn local_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Bybit's time now, in ms since the epoch (local clock + measured offset).
    pub fn now_ms(&self) -> u64 {
        let now = Self::local_ms().saturating_add(self.offset_ms());
        u64::try_from(now).unwrap_or(0)
    }

    /// Server − local, in ms (positive: Bybit is ahead of this machine).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Records a measured offset and updates the gauge.
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(telemetry::SERVER_TIME_OFFSET).set(offset_ms as f64 / 1000.0);
        self.mark_attempted();
    }

    /// Records that a sync attempt finished (also when it failed), releasing waiters.
    pub fn mark_attempted(&self) {
        self.attempted.send_replace(true);
    }

    /// Records one measurement: `server_ms` read between local `sent_ms` and `received_ms`;
    /// the server's time is taken at the midpoint of the round trip. Returns the offset.
    pub fn record(&self, server_ms: i64, sent_ms: i64, received_ms: i64) -> i64 {
        let mid = sent_ms + (received_ms - sent_ms) / 2;
        let offset = server_ms - mid;
        self.set_offset_ms(offset);
        offset
    }

    /// Waits (at most `limit`) until the first sync attempt has finished; returns whether it
    /// had.
    pub async fn wait_first_sync(&self, limit: Duration) -> bool {
        let mut rx = self.attempted.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Attempt, RestClient, RestError, endpoints};

impl RestClient {
    /// Reads Bybit's server time and records the offset in the clock; returns it in ms.
    pub async fn sync_clock(&self) -> Result<i64, RestError> {
        self.sync_clock_with(2).await
    }

    pub(super) async fn sync_clock_with(&self, attempts: u32) -> Result<i64, RestError> {
        // Its own short loop over single attempts (not `get_with`, which calls this on a
        // refused timestamp); the round trip measured is the successful attempt's.
        let mut outcome = Err(RestError::GaveUp {
            endpoint: endpoints::TIME,
            attempts,
            last: String::new(),
        });
        let (mut sent, mut received) = (0, 0);
        for attempt in 1..=attempts.max(1) {
            sent = ServerClock::local_ms();
            let a = self.attempt(endpoints::TIME, "", false).await;
            received = ServerClock::local_ms();
            match a {
                Attempt::Done(r) => {
                    outcome = Ok(r);
                    break;
                }
                Attempt::Fail(e) => {
                    outcome = Err(e);
                    break;
                }
                Attempt::Retry(last) | Attempt::RateLimited(last, _) | Attempt::ClockSkew(last) => {
                    outcome = Err(RestError::GaveUp {
                        endpoint: endpoints::TIME,
                        attempts: attempt,
                        last,
                    });
                }
            }
            if attempt < attempts {
                tokio::time::sleep(self.delay(attempt)).await;
            }
        }
        let result = match outcome {
            Ok(r) => r,
            Err(e) => {
                self.inner.clock.mark_attempted();
                return Err(e);
            }
        };
        let server_ms = result
            .get("timeNano")
            .and_then(Value::as_str)
            .and_then(|n| n.parse::<i128>().ok())
            .map(|n| n / 1_000_000)
            .or_else(|| {
                result
                    .get("timeSecond")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<i128>().ok())
                    .map(|s| s * 1000)
            })
            .and_then(|ms| i64::try_from(ms).ok());
        let Some(server_ms) = server_ms else {
            self.inner.clock.mark_attempted();
            return Err(RestError::BadAnswer {
                endpoint: endpoints::TIME,
                reason: "no timeNano/timeSecond in the answer".into(),
            });
        };
        Ok(self.inner.clock.record(server_ms, sent, received))
    }

    /// Syncs the clock now and then every `every` (every 30 s after a failure) until `stop`.
    pub async fn run_clock_sync(self, every: Duration, stop: CancellationToken) {
        loop {
            let synced = tokio::select! {
                () = stop.cancelled() => return,
                r = self.sync_clock() => r,
            };
            let wait = match synced {
                Ok(offset_ms) => {
                    tracing::debug!(offset_ms, "Bybit server time synced.");
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Bybit server time sync failed; using the last offset.");
                    every.min(Duration::from_secs(30))
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_taken_at_the_midpoint_of_the_round_trip() {
        let clock = ServerClock::local();
        assert_eq!(clock.record(31_000, 0, 2_000), 30_000);
        assert_eq!(clock.offset_ms(), 30_000);
        let drift = i64::try_from(clock.now_ms()).unwrap() - ServerClock::local_ms();
        assert!((29_900..=30_100).contains(&drift), "{drift}");
        assert_eq!(clock.record(-5_000, 0, 0), -5_000);
    }

    #[tokio::test]
    async fn a_pending_clock_releases_waiters_after_the_first_attempt() {
        let clock = ServerClock::pending();
        assert!(!clock.wait_first_sync(Duration::from_millis(10)).await);
        clock.mark_attempted();
        assert!(clock.wait_first_sync(Duration::from_millis(10)).await);
        assert!(ServerClock::local().wait_first_sync(Duration::ZERO).await);
    }
}
