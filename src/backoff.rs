//! Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
//! Jitter"): attempt `n` sleeps a uniform random time in `[0, min(cap, base * 2^n))`.
//!
//! Shared by every reconnecting component (Bybit connections, the broker, the database sink), so
//! a storm of failures spreads out instead of retrying in lockstep.

use std::time::Duration;

use rand::Rng;

/// Backoff state for one retrying component. `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// `base` bounds the first delay, `cap` every delay.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The next delay; grows until the cap, forever (attempts are unlimited).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..nanos))
    }

    /// Upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to the first (shortest) delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_is_under_base_and_growth_stops_at_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        for _ in 0..100 {
            let mut fresh = b.clone();
            fresh.reset();
            assert!(fresh.next_delay() < Duration::from_millis(500));
        }
        for _ in 0..40 {
            assert!(b.next_delay() < Duration::from_secs(30));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }
}
