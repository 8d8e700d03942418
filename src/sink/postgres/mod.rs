//! The persistence sink: consumes the tee channel, turns wallet events into `account_balances`
//! rows ([`wallet`]) and writes them in batches.
//!
//! Two tasks share one bounded row buffer, so a slow or unreachable database never stalls the
//! pipeline: the *reader* only parses and appends (it never awaits the database), the *writer*
//! takes up to `batch_size` rows whenever that many are waiting or `flush_interval` passed,
//! and retries a failed batch with full-jitter backoff (`retry_initial`..`retry_max`) until it
//! is written. Inserts are idempotent on `(event_id, coin)`, so a retry after an ambiguous
//! failure writes nothing twice.
//!
//! Bound: [`MAX_BUFFERED_ROWS`] rows wait in memory (plus one batch in flight). Only past
//! that would the oldest rows be dropped, counted and logged at ERROR; at one wallet event per
//! second with a handful of coins that is hours of outage.

pub mod wallet;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, mpsc};

use crate::{
    backoff::Backoff,
    event::{Event, EventClass},
    health::{ComponentState, HealthBoard},
    pipeline_file::PersistenceConfig,
    shutdown::Supervisor,
    store::{self, balances::NewBalance},
    telemetry,
};

/// Rows held in memory while the database is slow or away.
pub const MAX_BUFFERED_ROWS: usize = 200_000;
/// Upper bound of rows per statement (keeps bind parameters under SQLite's limit).
const MAX_BATCH: usize = 1_000;
const TABLE: &str = "account_balances";
const STAGE: &str = "persistence";

#[derive(Debug, Default)]
struct Buffer {
    /// Rows with their frame's monotonic receive time (for the receipt → write histogram).
    rows: VecDeque<(NewBalance, Instant)>,
    /// Set when the input channel closed: the writer drains and ends.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the writer on new rows or close.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the sink; it ends when the channel closes and every row is written (or the stop
/// times out).
pub fn spawn(
    events: mpsc::Receiver<Event>,
    db: DatabaseConnection,
    config: PersistenceConfig,
    health: Arc<HealthBoard>,
    supervisor: &Supervisor,
) {
    let shared = Arc::new(Shared::default());
    let batch = config.batch_size.clamp(1, MAX_BATCH);
    supervisor.spawn("persistence-reader", read(events, shared.clone(), batch));
    supervisor.spawn(
        "persistence-writer",
        write(shared, db, config, batch, health),
    );
}

async fn read(mut events: mpsc::Receiver<Event>, shared: Arc<Shared>, batch: usize) {
    while let Some(event) = events.recv().await {
        metrics::counter!(telemetry::STAGE_RECEIVED, "stage" => STAGE).increment(1);
        if event.class != EventClass::Balances {
            continue;
        }
        let rows = match wallet::rows(&event) {
            Ok(rows) => rows,
            Err(error) => {
                metrics::counter!(telemetry::STAGE_DROPPED, "stage" => STAGE, "reason" => "malformed")
                    .increment(1);
                tracing::debug!(trace_id = %event.trace_id, %error, "Wallet event skipped.");
                continue;
            }
        };
        let (len, dropped) = {
            let mut buf = shared.lock();
            buf.rows
                .extend(rows.into_iter().map(|r| (r, event.received_mono)));
            let over = buf.rows.len().saturating_sub(MAX_BUFFERED_ROWS);
            buf.rows.drain(..over);
            (buf.rows.len(), over)
        };
        if dropped > 0 {
            metrics::counter!(telemetry::STAGE_DROPPED, "stage" => STAGE, "reason" => "buffer_full")
                .increment(dropped as u64);
            tracing::error!(
                dropped,
                bound = MAX_BUFFERED_ROWS,
                "Balance buffer full while the database is away; oldest rows dropped."
            );
        }
        if len >= batch {
            shared.wake.notify_one();
        }
    }
    shared.lock().closed = true;
    shared.wake.notify_one();
}

async fn write(
    shared: Arc<Shared>,
    db: DatabaseConnection,
    config: PersistenceConfig,
    batch: usize,
    health: Arc<HealthBoard>,
) {
    let mut backoff = Backoff::new(config.retry_initial, config.retry_max);
    let flush = config.flush_interval.max(Duration::from_millis(1));
    let mut failing = false;
    loop {
        let (rows, received, closed) = {
            let mut buf = shared.lock();
            let n = buf.rows.len().min(batch);
            let (rows, received): (Vec<_>, Vec<_>) = buf.rows.drain(..n).unzip();
            (rows, received, buf.closed)
        };
        if rows.is_empty() {
            if closed {
                tracing::info!("Persistence sink drained and stopped.");
                return;
            }
            let _ = tokio::time::timeout(flush, shared.wake.notified()).await;
            continue;
        }
        // Retry this batch until it is written; the reader keeps filling the buffer meanwhile.
        loop {
            match store::balances::insert_many(&db, &rows).await {
                Ok(()) => {
                    metrics::counter!(telemetry::DB_WRITES, "table" => TABLE)
                        .increment(rows.len() as u64);
                    metrics::counter!(telemetry::STAGE_SENT, "stage" => STAGE)
                        .increment(rows.len() as u64);
                    let latency = metrics::histogram!(telemetry::DB_WRITE_LATENCY);
                    for at in &received {
                        latency.record(at.elapsed().as_secs_f64());
                    }
                    if failing {
                        tracing::info!(
                            "Database writes recovered; buffered balance rows flushing."
                        );
                        failing = false;
                    }
                    health.set_database(ComponentState::Up);
                    metrics::gauge!(telemetry::DB_UP).set(1.0);
                    backoff.reset();
                    break;
                }
                Err(error) => {
                    metrics::counter!(telemetry::DB_WRITE_FAILURES, "table" => TABLE).increment(1);
                    health.set_database(ComponentState::Down);
                    metrics::gauge!(telemetry::DB_UP).set(0.0);
                    let waiting = shared.lock().rows.len() + rows.len();
                    if !failing {
                        tracing::warn!(%error, waiting, "Balance write failed; retrying with backoff.");
                        failing = true;
                    } else if shared.lock().closed {
                        tracing::error!(%error, waiting, "Database still unreachable while stopping; rows wait.");
                    } else {
                        tracing::debug!(%error, waiting, "Balance write retry failed.");
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        // A partial batch waits for more rows or the flush interval (batches, not row-by-row).
        let waiting = shared.lock().rows.len();
        if waiting > 0 && waiting < batch && !shared.lock().closed {
            let _ = tokio::time::timeout(flush, shared.wake.notified()).await;
        }
    }
}
