//! Bybit v5 REST: a thin client of ours over `reqwest` (rustls). Signing (`X-BAPI-*`), the
//! server clock ([`ServerClock`]), cursor pagination and 7-day windows, and Bybit's rate limits
//! (`retCode` 10006, HTTP 429/5xx): a bounded number of retries with exponential backoff, then
//! a clear error ([`RestError::GaveUp`]), never a loop. Every request is counted in
//! `ws_gateway_rest_requests_total{endpoint,ret_code}`.
//!
//! Items come back as raw `serde_json::Value`s in Bybit's REST shape; callers map them.

mod clock;
mod reads;
pub mod shape;
mod sign;

use std::{sync::Arc, time::Duration};

use secrecy::ExposeSecret;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use clock::ServerClock;
pub use reads::time_field;
pub use sign::{query_string, sign};

use crate::{config::BybitCredentials, telemetry};

/// Bybit keeps at most this span per `startTime`/`endTime` query on the history endpoints.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How often the server clock is measured again.
pub const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(300);

/// Endpoint paths.
pub mod endpoints {
    /// Server time (public).
    pub const TIME: &str = "/v5/market/time";
    /// Recent public trades (public).
    pub const RECENT_TRADE: &str = "/v5/market/recent-trade";
    /// Executions (signed).
    pub const EXECUTIONS: &str = "/v5/execution/list";
    /// Open and recent orders (signed).
    pub const ORDERS_REALTIME: &str = "/v5/order/realtime";
    /// Order history (signed).
    pub const ORDERS_HISTORY: &str = "/v5/order/history";
    /// Positions (signed).
    pub const POSITIONS: &str = "/v5/position/list";
    /// Wallet balance (signed).
    pub const WALLET: &str = "/v5/account/wallet-balance";
}

/// Retry and timing settings.
#[derive(Debug, Clone)]
pub struct RestPolicy {
    /// Attempts per request in total (≥ 1), retries included.
    pub attempts: u32,
    /// First retry delay; doubles per retry (with jitter), capped at `max_delay`.
    pub base_delay: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// `X-BAPI-RECV-WINDOW` in ms.
    pub recv_window_ms: u64,
    /// Most pages one listing follows before it gives up (a cursor that never ends).
    pub max_pages: usize,
}

impl Default for RestPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            timeout: Duration::from_secs(10),
            recv_window_ms: 5000,
            max_pages: 500,
        }
    }
}

/// Why a REST call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// A signed endpoint was called without `BYBIT_API_KEY`/`BYBIT_API_SECRET`.
    #[error("Bybit REST {endpoint}: no API credentials (set BYBIT_API_KEY and BYBIT_API_SECRET)")]
    NoCredentials {
        /// The path called.
        endpoint: &'static str,
    },
    /// Bybit refused the request with a non-retryable `retCode` (bad key 10003, bad signature
    /// 10004, bad parameters 10001, ...).
    #[error("Bybit REST {endpoint} refused: retCode {ret_code} ({ret_msg})")]
    Refused {
        /// The path called.
        endpoint: &'static str,
        /// Bybit's `retCode`.
        ret_code: i64,
        /// Bybit's `retMsg`.
        ret_msg: String,
    },
    /// Retryable failures (rate limit, 5xx, transport) on every allowed attempt.
    #[error("Bybit REST {endpoint}: gave up after {attempts} attempts; last: {last}")]
    GaveUp {
        /// The path called.
        endpoint: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// An answer that is not Bybit's JSON shape, or a cursor that never ends.
    #[error("Bybit REST {endpoint}: {reason}")]
    BadAnswer {
        /// The path called.
        endpoint: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Stopped while waiting to retry.
    #[error("Bybit REST {endpoint}: cancelled")]
    Cancelled {
        /// The path called.
        endpoint: &'static str,
    },
}

impl RestError {
    /// Bybit's `retCode` when Bybit refused the request.
    pub fn ret_code(&self) -> Option<i64> {
        match self {
            Self::Refused { ret_code, .. } => Some(*ret_code),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    credentials: Option<BybitCredentials>,
    clock: ServerClock,
    policy: RestPolicy,
    stop: CancellationToken,
}

/// The client; clones share the connection pool and the clock.
#[derive(Debug, Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
    /// The cluster-wide REST budget (weight 1 per request), asked before every attempt;
    /// `None` (cluster off) asks nothing.
    budget: Option<crate::cluster::budget::ConnectBudget>,
}

/// One attempt's outcome.
enum Attempt {
    Done(Value),
    Retry(String),
    /// Rate limited; Bybit's `X-Bapi-Limit-Reset-Timestamp` says when the limit resets.
    RateLimited(String, Option<Duration>),
    ClockSkew(String),
    Fail(RestError),
}

impl RestClient {
    /// A client for `base` (`BYBIT_REST_URL`). `stop` cuts retry waits short.
    pub fn new(
        base: &Url,
        credentials: Option<BybitCredentials>,
        clock: ServerClock,
        policy: RestPolicy,
        stop: CancellationToken,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("ws-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            inner: Arc::new(Inner {
                http,
                base: base.as_str().trim_end_matches('/').to_owned(),
                credentials,
                clock,
                policy,
                stop,
            }),
            budget: None,
        }
    }

    /// This client, asking `budget` (a `kind = "rest"` budget: Bybit's requests per window per
    /// IP, shared by the cluster) before every request attempt.
    pub fn with_budget(mut self, budget: crate::cluster::budget::ConnectBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The clock this client signs with.
    pub fn clock(&self) -> &ServerClock {
        &self.inner.clock
    }

    /// Whether signed endpoints can be called.
    pub fn has_credentials(&self) -> bool {
        self.inner.credentials.is_some()
    }

    /// One GET, retried per the policy; returns Bybit's `result` object.
    pub async fn get(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
        signed: bool,
    ) -> Result<Value, RestError> {
        self.get_with(endpoint, params, signed, self.inner.policy.attempts)
            .await
    }

    async fn get_with(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
        signed: bool,
        attempts: u32,
    ) -> Result<Value, RestError> {
        if signed && self.inner.credentials.is_none() {
            return Err(RestError::NoCredentials { endpoint });
        }
        let attempts = attempts.max(1);
        let query = query_string(params);
        let mut last = String::new();
        let mut resynced = false;
        for attempt in 1..=attempts {
            let mut reset_in = None;
            match self.attempt(endpoint, &query, signed).await {
                Attempt::Done(result) => return Ok(result),
                Attempt::Fail(e) => return Err(e),
                Attempt::ClockSkew(msg) if !resynced => {
                    // The timestamp was refused: measure the clock again and retry at once.
                    resynced = true;
                    tracing::warn!(
                        endpoint,
                        "Bybit refused our timestamp; syncing server time."
                    );
                    let _ = self.sync_clock_with(1).await;
                    last = msg;
                    continue;
                }
                Attempt::ClockSkew(msg) => {
                    return Err(RestError::Refused {
                        endpoint,
                        ret_code: 10002,
                        ret_msg: msg,
                    });
                }
                Attempt::Retry(msg) => last = msg,
                Attempt::RateLimited(msg, hint) => {
                    last = msg;
                    reset_in = hint;
                }
            }
            if attempt < attempts {
                // Bybit's own reset time when it gave one (kept within the policy's bounds),
                // else exponential backoff.
                let p = &self.inner.policy;
                let delay = reset_in.map_or_else(
                    || self.delay(attempt),
                    |d| d.clamp(p.base_delay, p.max_delay),
                );
                tracing::debug!(endpoint, attempt, ?delay, last, "Bybit REST retry.");
                tokio::select! {
                    () = self.inner.stop.cancelled() => return Err(RestError::Cancelled { endpoint }),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
        Err(RestError::GaveUp {
            endpoint,
            attempts,
            last,
        })
    }

    fn delay(&self, attempt: u32) -> Duration {
        let p = &self.inner.policy;
        let exp = p
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(p.max_delay);
        // Equal jitter: half fixed, half random, so retries of many callers spread out.
        let half = exp / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    async fn attempt(&self, endpoint: &'static str, query: &str, signed: bool) -> Attempt {
        let inner = &self.inner;
        if let Some(budget) = &self.budget {
            tokio::select! {
                () = inner.stop.cancelled() => {
                    return Attempt::Fail(RestError::Cancelled { endpoint });
                }
                () = budget.acquire() => {}
            }
        }
        let url = if query.is_empty() {
            format!("{}{endpoint}", inner.base)
        } else {
            format!("{}{endpoint}?{query}", inner.base)
        };
        let mut req = inner.http.get(&url);
        if signed && let Some(creds) = &inner.credentials {
            let ts = inner.clock.now_ms();
            let recv = inner.policy.recv_window_ms;
            let signature = sign(
                creds.api_secret.expose_secret(),
                ts,
                &creds.api_key,
                recv,
                query,
            );
            req = req
                .header("X-BAPI-API-KEY", &creds.api_key)
                .header("X-BAPI-TIMESTAMP", ts.to_string())
                .header("X-BAPI-RECV-WINDOW", recv.to_string())
                .header("X-BAPI-SIGN", signature);
        }
        let count = |code: String| {
            metrics::counter!(telemetry::REST_REQUESTS, "endpoint" => endpoint, "ret_code" => code)
                .increment(1);
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                count("transport".into());
                return Attempt::Retry(format!("transport: {e}"));
            }
        };
        let status = resp.status();
        let reset_in = resp
            .headers()
            .get("x-bapi-limit-reset-timestamp")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(|reset| Duration::from_millis(reset.saturating_sub(inner.clock.now_ms())));
        if !status.is_success() {
            count(format!("http_{}", status.as_u16()));
            let msg = format!("HTTP {status}");
            return if status.as_u16() == 429 {
                Attempt::RateLimited(msg, reset_in)
            } else if status.is_server_error() {
                Attempt::Retry(msg)
            } else {
                Attempt::Fail(RestError::BadAnswer {
                    endpoint,
                    reason: msg,
                })
            };
        }
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => {
                count("transport".into());
                return Attempt::Retry(format!("reading the answer: {e}"));
            }
        };
        let Some(code) = body.get("retCode").and_then(Value::as_i64) else {
            count("bad_answer".into());
            return Attempt::Fail(RestError::BadAnswer {
                endpoint,
                reason: "answer without retCode".into(),
            });
        };
        count(code.to_string());
        let msg = body
            .get("retMsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match code {
            0 => Attempt::Done(body.get("result").cloned().unwrap_or(Value::Null)),
            10006 => Attempt::RateLimited(format!("retCode {code} ({msg})"), reset_in),
            // Server timeout, internal error: try again later.
            10000 | 10016 => Attempt::Retry(format!("retCode {code} ({msg})")),
            10002 => Attempt::ClockSkew(msg),
            _ => Attempt::Fail(RestError::Refused {
                endpoint,
                ret_code: code,
                ret_msg: msg,
            }),
        }
    }
}
