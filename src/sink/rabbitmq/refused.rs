//! The back-off of re-sends after the broker refused messages (NACK, return).

use std::time::Duration;

/// First delay before messages the broker refused (NACK, return) are sent again.
const REFUSED_RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest delay between re-sends of refused messages.
const REFUSED_RETRY_CAP: Duration = Duration::from_secs(10);

/// When refused messages may be sent again: exponential (100 ms, 200 ms, ... capped at 10 s)
/// while the broker keeps refusing, back to the first delay once it confirms. Until then
/// nothing is sent, neither the refused messages nor newer ones, so per-topic order holds;
/// the messages stay in the retry queue (private ones are never dropped).
#[derive(Debug)]
pub(super) struct RefusedRetry {
    attempt: u32,
    not_before: Option<tokio::time::Instant>,
}

impl RefusedRetry {
    pub(super) fn new() -> Self {
        Self {
            attempt: 0,
            not_before: None,
        }
    }

    /// The broker refused messages at `now`: hold re-sends for the next delay, and return it.
    pub(super) fn refused(&mut self, now: tokio::time::Instant) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        let delay = REFUSED_RETRY_BASE
            .saturating_mul(factor)
            .min(REFUSED_RETRY_CAP);
        self.attempt = self.attempt.saturating_add(1);
        self.not_before = Some(now + delay);
        delay
    }

    /// The broker confirmed messages: the next refusal starts from the first delay again.
    pub(super) fn confirmed(&mut self) {
        self.attempt = 0;
    }

    /// Until when sending must wait (`None`: send now).
    pub(super) fn hold_until(&self, now: tokio::time::Instant) -> Option<tokio::time::Instant> {
        self.not_before.filter(|t| *t > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_exponentially_to_a_cap_and_confirms_reset_it() {
        let now = tokio::time::Instant::now();
        let mut r = RefusedRetry::new();
        assert_eq!(r.hold_until(now), None, "nothing refused: send at once");
        let delays: Vec<_> = (0..10).map(|_| r.refused(now)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[3], Duration::from_millis(800));
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), REFUSED_RETRY_CAP);
        assert_eq!(r.hold_until(now), Some(now + REFUSED_RETRY_CAP));
        assert_eq!(r.hold_until(now + REFUSED_RETRY_CAP), None);
        r.confirmed();
        assert_eq!(r.refused(now), Duration::from_millis(100));
    }
}
