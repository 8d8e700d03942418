//! The cluster-wide budget of new Bybit WebSocket connections (spec section 11, "shared
//! limits"): the cluster as a whole opens at most `budget` connections per `window` (default
//! 300 per 5 minutes, under Bybit's 500 per 5 minutes per IP).
//!
//! Every grant is a row of `connect_grants`. A grant is one transaction under a
//! transaction-scoped advisory lock (so instances take turns and never both see "one left"):
//! delete the grants older than the window, count the rest, insert a row if the count is under
//! the budget. Times are the database's (`clock_timestamp()`), so instance clocks do not
//! matter. When the budget is spent, the answer is how long until the oldest grant leaves the
//! window. Grants are kept a minute past the window (for inspection), then deleted.
//!
//! PostgreSQL unreachable (or slower than [`BudgetConfig::db_timeout`]): the instance falls
//! back to a local share of the budget (`fallback_share` per window, counted in memory), says
//! so once at WARN, and goes back to the shared count (INFO) when the database answers again.
//! Grants made locally are not written back.
//!
//! The source takes an `Option<ConnectBudget>` beside its per-process token bucket: `None`
//! (cluster off) changes nothing.
//!
//! The same handle counts any weighted budget: `kind` names it (one row per grant with its
//! `weight`, `budget` is then the weight allowed per window), so Bybit's REST weight can be
//! shared the same way ([`ConnectBudget::acquire_weight`] with `kind = "rest"`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, counter};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use tokio::time::Instant;

use crate::telemetry::{CONNECT_BUDGET_GRANTS, CONNECT_BUDGET_WAITS};

/// Key of the advisory lock around a grant ("wsgw" "conn" in ASCII; the migrator's is
/// "wsgw" "migr").
const GRANT_LOCK_KEY: i64 = 0x7773_6777_636f_6e6e;

/// Shortest wait before asking again when the budget is spent (rounding of the oldest grant).
const MIN_WAIT: Duration = Duration::from_millis(50);

/// The budget's settings (the lead wires them from `[cluster]` `connect_budget` and
/// `connect_window`).
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// Which budget (`connect`, default; `rest` for REST weight): rows of other kinds do not
    /// count.
    pub kind: String,
    /// New connections per window, cluster-wide (default 300).
    pub budget: u32,
    /// The sliding window (default 5 minutes).
    pub window: Duration,
    /// This instance's share per window while PostgreSQL is unreachable (default 300 / 3: the
    /// budget split over three instances; set it to `budget / live instances`).
    pub fallback_share: u32,
    /// A grant that takes longer counts as "PostgreSQL unreachable" (default 2 s).
    pub db_timeout: Duration,
    /// Longest sleep between two asks while waiting (default 5 s; the budget may be freed
    /// sooner by nothing, but a shorter recheck keeps waiters fair).
    pub max_wait: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            kind: "connect".to_owned(),
            budget: 300,
            window: Duration::from_secs(300),
            fallback_share: 100,
            db_timeout: Duration::from_secs(2),
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Why the shared count could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("the connect budget needs PostgreSQL")]
    NotPostgres,
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the connect budget query failed")]
    Db(#[from] DbErr),
}

/// A handle on the shared budget; cheap to clone (one per instance, shared by every
/// connection of its source).
#[derive(Debug, Clone)]
pub struct ConnectBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    instance_id: String,
    config: BudgetConfig,
    /// Local grants while PostgreSQL is unreachable (time and weight, oldest first).
    local: Mutex<VecDeque<(Instant, u32)>>,
    /// Set while on the local share (logged once per outage).
    degraded: AtomicBool,
    shared_grants: Counter,
    local_grants: Counter,
    waits: Counter,
}

impl ConnectBudget {
    /// The budget of instance `instance_id` on `db` (PostgreSQL with the `connect_grants`
    /// migration applied).
    pub fn new(
        db: DatabaseConnection,
        instance_id: impl Into<String>,
        config: BudgetConfig,
    ) -> Self {
        let shared_grants = counter!(CONNECT_BUDGET_GRANTS, "source" => "postgres");
        let local_grants = counter!(CONNECT_BUDGET_GRANTS, "source" => "local");
        let waits = counter!(CONNECT_BUDGET_WAITS);
        shared_grants.increment(0);
        local_grants.increment(0);
        waits.increment(0);
        Self {
            inner: Arc::new(Inner {
                db,
                instance_id: instance_id.into(),
                config,
                local: Mutex::new(VecDeque::new()),
                degraded: AtomicBool::new(false),
                shared_grants,
                local_grants,
                waits,
            }),
        }
    }

    /// Waits until a connection attempt is granted (cancel-safe: a grant is only written when
    /// the call returns it).
    pub async fn acquire(&self) {
        self.acquire_weight(1).await;
    }

    /// Waits until `weight` is granted (a weight above the whole budget is granted alone, in an
    /// otherwise empty window).
    pub async fn acquire_weight(&self, weight: u32) {
        loop {
            match self.try_grant_weight(weight).await {
                Ok(()) => return,
                Err(wait) => {
                    self.inner.waits.increment(1);
                    tracing::debug!(
                        wait_ms = wait.as_millis() as u64,
                        budget = self.inner.config.budget,
                        "The cluster's Bybit connection budget is spent; waiting."
                    );
                    tokio::time::sleep(wait.clamp(MIN_WAIT, self.inner.config.max_wait)).await;
                }
            }
        }
    }

    /// One ask: granted now, or how long until the budget may have room.
    pub async fn try_grant(&self) -> Result<(), Duration> {
        self.try_grant_weight(1).await
    }

    /// One ask for `weight`: granted now, or how long until the budget may have room.
    pub async fn try_grant_weight(&self, weight: u32) -> Result<(), Duration> {
        let weight = weight.max(1);
        let timeout = self.inner.config.db_timeout;
        let asked = match tokio::time::timeout(timeout, self.grant_shared(weight)).await {
            Ok(r) => r,
            Err(_) => Err(BudgetError::Timeout(timeout)),
        };
        match asked {
            Ok(answer) => {
                if self.inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        "PostgreSQL answers again: Bybit connections are counted in the \
                         cluster-wide budget again."
                    );
                }
                if answer.is_ok() {
                    self.inner.shared_grants.increment(1);
                }
                answer
            }
            Err(error) => {
                if !self.inner.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        share = self.inner.config.fallback_share,
                        window_s = self.inner.config.window.as_secs(),
                        "PostgreSQL is unreachable: the cluster-wide Bybit connection budget \
                         cannot be counted; this instance keeps to its local share until it \
                         answers again."
                    );
                }
                let r = self.grant_local(weight);
                if r.is_ok() {
                    self.inner.local_grants.increment(1);
                }
                r
            }
        }
    }

    /// The shared count: `Ok(Ok(()))` granted (a row written), `Ok(Err(wait))` spent.
    async fn grant_shared(&self, weight: u32) -> Result<Result<(), Duration>, BudgetError> {
        let db = &self.inner.db;
        if db.get_database_backend() != DbBackend::Postgres {
            return Err(BudgetError::NotPostgres);
        }
        let window_ms = i64::try_from(self.inner.config.window.as_millis()).unwrap_or(i64::MAX);
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({GRANT_LOCK_KEY})"))
            .await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM connect_grants \
             WHERE kind = $2 \
               AND granted_at < clock_timestamp() - $1 * interval '1 millisecond' \
               - interval '1 minute'",
            [window_ms.into(), self.inner.config.kind.clone().into()],
        ))
        .await?;
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT coalesce(sum(weight), 0)::bigint AS n, \
                 (EXTRACT(EPOCH FROM (min(granted_at) + $1 * interval '1 millisecond' \
                   - clock_timestamp())) * 1000)::bigint AS wait_ms \
                 FROM connect_grants \
                 WHERE kind = $2 \
                   AND granted_at >= clock_timestamp() - $1 * interval '1 millisecond'",
                [window_ms.into(), self.inner.config.kind.clone().into()],
            ))
            .await?;
        let (n, wait_ms): (i64, Option<i64>) = match row {
            Some(row) => (row.try_get("", "n")?, row.try_get("", "wait_ms")?),
            None => (0, None),
        };
        let budget = i64::from(self.inner.config.budget);
        if n == 0 || n + i64::from(weight) <= budget {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO connect_grants (kind, instance_id, weight, granted_at) \
                 VALUES ($1, $2, $3, clock_timestamp())",
                [
                    self.inner.config.kind.clone().into(),
                    self.inner.instance_id.clone().into(),
                    i32::try_from(weight).unwrap_or(i32::MAX).into(),
                ],
            ))
            .await?;
            txn.commit().await?;
            Ok(Ok(()))
        } else {
            txn.commit().await?;
            let wait = Duration::from_millis(u64::try_from(wait_ms.unwrap_or(0)).unwrap_or(0));
            Ok(Err(wait))
        }
    }

    /// The local share: at most `fallback_share` weight per window, counted in memory.
    fn grant_local(&self, weight: u32) -> Result<(), Duration> {
        let window = self.inner.config.window;
        let share = u64::from(self.inner.config.fallback_share.max(1));
        let now = Instant::now();
        let mut local = self.inner.local.lock().unwrap_or_else(|e| e.into_inner());
        while local
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= window)
        {
            local.pop_front();
        }
        let spent: u64 = local.iter().map(|(_, w)| u64::from(*w)).sum();
        if spent == 0 || spent + u64::from(weight) <= share {
            local.push_back((now, weight));
            Ok(())
        } else {
            let oldest = local.front().map_or(now, |(t, _)| *t);
            Err((oldest + window).saturating_duration_since(now))
        }
    }
}
