//! `[source]`: how the Bybit connections behave: heartbeats, acks, reconnect backoff and probe,
//! the connection rate limit, request and connection sizes, failed-topic retries and the public
//! trade recovery after a reconnect.

use std::time::Duration;

use serde::Deserialize;

use crate::event::Category;

/// Bybit connection behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Public categories connected at startup so reachability shows at once.
    pub connect_on_start: Vec<Category>,
    /// Interval between our `ping` ops.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection with no frame for `ping_interval + pong_timeout` is dead.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// `expires` of the private `auth` op is now + this window.
    #[serde(with = "humantime_serde")]
    pub auth_expiry_window: Duration,
    /// How long to wait for a subscribe/auth ack before treating the request as failed.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Upper bound of the first reconnect delay (full jitter below it).
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Cap of the exponential reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// During an outage (connect refused or unanswered), the exchange host is probed with a
    /// plain TCP connect this often, and a connection reconnects as soon as the probe sees the
    /// host back instead of sleeping out its backoff delay; `0s` disables the probe.
    #[serde(with = "humantime_serde")]
    pub reconnect_probe: Duration,
    /// Token bucket on new connections: burst size.
    pub connect_burst: u32,
    /// Token bucket on new connections: one token per this period.
    #[serde(with = "humantime_serde")]
    pub connect_refill: Duration,
    /// Bybit's limit of args per spot subscribe request.
    pub spot_args_per_request: usize,
    /// Args per request on other endpoints (Bybit does not cap them, we keep requests small).
    pub args_per_request: usize,
    /// Bybit's limit of characters of args per connection; past it we shard.
    pub max_args_chars_per_connection: usize,
    /// Bybit's limit of args (topics) per options connection; past it we shard.
    pub option_args_per_connection: usize,
    /// Capacity of each connection's outbound command queue (ping, subscribe, unsubscribe).
    pub command_capacity: usize,
    /// A topic Bybit rejected (`failed`) is subscribed again after a reconnect or a re-post
    /// only once this long has passed since it failed; the wait doubles with each failure in
    /// a row, up to `failed_retry_max`.
    #[serde(with = "humantime_serde")]
    pub failed_retry: Duration,
    /// Cap of the doubling failed-topic retry backoff.
    #[serde(with = "humantime_serde")]
    pub failed_retry_max: Duration,
    /// After a public reconnect, the live frames of a `publicTrade` topic are held at most
    /// this long (from its subscribe ack) while the trades missed in the gap are fetched over
    /// REST; then they flow and the gap is counted as lost. `0s` turns trade recovery off.
    #[serde(with = "humantime_serde")]
    pub trade_recovery_wait: Duration,
    /// Most live frames held per `publicTrade` topic during its recovery; past it the recovery
    /// is given up (the gap counted) and the frames flow.
    pub trade_recovery_hold: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            connect_on_start: vec![Category::Linear],
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            auth_expiry_window: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            reconnect_probe: Duration::from_secs(1),
            connect_burst: 10,
            connect_refill: Duration::from_secs(1),
            spot_args_per_request: 10,
            args_per_request: 10,
            max_args_chars_per_connection: 21_000,
            option_args_per_connection: 2_000,
            command_capacity: 256,
            failed_retry: Duration::from_secs(300),
            failed_retry_max: Duration::from_secs(3600),
            trade_recovery_wait: Duration::from_secs(5),
            trade_recovery_hold: 10_000,
        }
    }
}
