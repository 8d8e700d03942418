//! Rate-limited log lines for data loss and spooling (spec section 9): market data dropped at
//! ERROR, private events written to the spool at WARN, at most one line per [`LOG_EVERY`]
//! each, with the count and the time range (`received_at`) of the events since the last line.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use crate::event::Event;

/// At most one line per kind this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Tally {
    count: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    logged_at: Option<Instant>,
}

impl Tally {
    fn add(&mut self, n: u64, from: DateTime<Utc>, to: DateTime<Utc>) {
        self.count += n;
        self.first = Some(self.first.map_or(from, |f| f.min(from)));
        self.last = Some(self.last.map_or(to, |l| l.max(to)));
    }

    /// The tally to log now (and resets it), if there is one and the last line is old enough.
    fn take(&mut self, force: bool, now: Instant) -> Option<(u64, DateTime<Utc>, DateTime<Utc>)> {
        if self.count == 0 {
            return None;
        }
        let due = self
            .logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        if !due && !force {
            return None;
        }
        self.logged_at = Some(now);
        let out = (self.count, self.first?, self.last?);
        self.count = 0;
        self.first = None;
        self.last = None;
        Some(out)
    }
}

/// The tallies of a publish sink.
#[derive(Debug, Default)]
pub struct LossLog {
    /// Market events the broker did not take in time (full buffers, shutdown).
    dropped: Mutex<Tally>,
    /// Market events the broker refused (NACKed or returned).
    refused: Mutex<Tally>,
    spooled: Mutex<Tally>,
}

fn lock(m: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LossLog {
    /// `n` market events dropped (`reason`), received between `from` and `to`.
    pub fn dropped(&self, n: u64, from: DateTime<Utc>, to: DateTime<Utc>, reason: &'static str) {
        if n == 0 {
            return;
        }
        let tally = if reason == "refused" {
            &self.refused
        } else {
            &self.dropped
        };
        lock(tally).add(n, from, to);
        self.flush(reason == "shutdown");
    }

    /// One market event dropped.
    pub fn dropped_one(&self, event: &Event) {
        self.dropped(1, event.received_at, event.received_at, "full");
    }

    /// `n` private events written to the spool, received between `from` and `to`.
    pub fn spooled(&self, n: u64, from: DateTime<Utc>, to: DateTime<Utc>) {
        if n == 0 {
            return;
        }
        lock(&self.spooled).add(n, from, to);
        self.flush(false);
    }

    /// Logs what is due (everything with `force`, e.g. when stopping).
    pub fn flush(&self, force: bool) {
        let now = Instant::now();
        let dropped = lock(&self.dropped).take(force, now);
        if let Some((count, from, to)) = dropped {
            tracing::error!(
                dropped = count,
                received_from = %from,
                received_to = %to,
                "Market data dropped: the broker did not take it in time."
            );
        }
        let refused = lock(&self.refused).take(force, now);
        if let Some((count, from, to)) = refused {
            tracing::error!(
                dropped = count,
                received_from = %from,
                received_to = %to,
                "Market data dropped: the broker refused it (NACKed or returned; on a cluster, the node of its classic queue is down)."
            );
        }
        let spooled = lock(&self.spooled).take(force, now);
        if let Some((count, from, to)) = spooled {
            tracing::warn!(
                spooled = count,
                received_from = %from,
                received_to = %to,
                "Private events written to the on-disk spool while the broker is away."
            );
        }
    }

    /// Time range of `events` (by `received_at`).
    pub fn range<'a>(
        events: impl IntoIterator<Item = &'a std::sync::Arc<Event>>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        events.into_iter().fold(None, |acc, e| {
            let t = e.received_at;
            Some(
                acc.map_or((t, t), |(a, b): (DateTime<Utc>, DateTime<Utc>)| {
                    (a.min(t), b.max(t))
                }),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_carries_the_count_and_the_time_range() {
        let mut t = Tally::default();
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(3);
        let now = Instant::now();
        t.add(2, t0, t0);
        assert_eq!(t.take(false, now), Some((2, t0, t0)));
        t.add(5, t1, t1);
        t.add(1, t0, t0);
        assert_eq!(
            t.take(false, now + Duration::from_secs(1)),
            None,
            "rate-limited"
        );
        assert_eq!(
            t.take(false, now + LOG_EVERY),
            Some((6, t0, t1)),
            "the next line sums what was held back"
        );
        assert_eq!(t.take(true, now + LOG_EVERY), None, "nothing new");
    }
}
