//! A per-process token bucket on NEW Bybit connections, shared by every endpoint and shard, so
//! a reconnect storm stays far below Bybit's 500 connections per 5 minutes per IP.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

/// `burst` tokens, refilled one per `refill`. [`TokenBucket::acquire`] waits for a token.
#[derive(Debug)]
pub struct TokenBucket {
    burst: f64,
    refill: Duration,
    /// (tokens available, when they were counted). A plain mutex: never held across an await.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, refill: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            burst,
            refill: refill.max(Duration::from_millis(1)),
            state: Mutex::new((burst, Instant::now())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (f64, Instant)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a token now, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.1);
        let tokens = (state.0 + elapsed.as_secs_f64() / self.refill.as_secs_f64()).min(self.burst);
        *state = (tokens, now);
        if tokens >= 1.0 {
            state.0 -= 1.0;
            Ok(())
        } else {
            Err(self.refill.mul_f64(1.0 - tokens))
        }
    }

    /// Waits until a token is available and takes it (cancel-safe: nothing is held on drop).
    pub async fn acquire(&self) {
        while let Err(wait) = self.try_take() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_is_immediate_then_one_token_per_refill_period() {
        let bucket = TokenBucket::new(3, Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        bucket.acquire().await;
        bucket.acquire().await;
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2100), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_its_burst() {
        let bucket = TokenBucket::new(2, Duration::from_millis(100));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(bucket.try_take().is_ok());
        assert!(bucket.try_take().is_ok());
        assert!(bucket.try_take().is_err());
    }
}
