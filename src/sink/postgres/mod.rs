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
//! Bound: `[persistence] max_buffered_rows` rows (200,000 by default) wait in memory, in the
//! one bounded buffer (`Bounded`), plus one batch in flight. Past that the oldest rows go to
//! the local row file ([`rowfile`], `<spool_dir>/<prefix>.rows`, fsynced) instead of being
//! dropped; so does every row still in memory when the process stops while the database is
//! away. The file is written to the database at the next start (or as soon as the database
//! takes rows again) and then removed: no balance row is lost to a database outage.
//!
//! `attach` gives the topology this sink's input: the `tee::PersistTee`.

pub mod rowfile;
pub(crate) mod tee;
pub mod wallet;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, mpsc};

use crate::{
    backoff::Backoff,
    buffer::{Bounded, Droppable},
    event::{Endpoint, Event, EventClass},
    health::{ComponentState, HealthBoard},
    pipeline_file::{BufferConfig, PersistenceConfig, WhenFull},
    shutdown::Supervisor,
    store::{self, balances::NewBalance},
    telemetry,
};

use rowfile::RowFile;

/// Upper bound of rows per statement (keeps bind parameters under SQLite's limit).
const MAX_BATCH: usize = 1_000;
const TABLE: &str = "account_balances";
const STAGE: &str = "persistence";

/// A balance row with its frame's monotonic receive time (for the receipt → write histogram).
#[derive(Debug)]
struct Row(NewBalance, Instant);

impl Droppable for Row {
    fn must_keep(&self) -> bool {
        EventClass::Balances.must_keep(Endpoint::Private)
    }
}

#[derive(Debug)]
struct Shared {
    /// The rows; closed when the input channel closed (the writer drains and ends). The reader
    /// never waits on it: past the bound it evicts the oldest row.
    rows: Bounded<Row>,
    /// Wakes the writer once a batch is waiting, or on close.
    wake: Notify,
    /// Rows that did not fit in memory, or were unwritten at stop.
    file: Arc<RowFile>,
}

/// Starts the persistence sink behind a tee of `classes` (buffer and channel of `capacity`
/// each, `stages.tee.capacity`) and returns the tee: this sink's input. `rows_file` takes what
/// memory cannot hold and what is unwritten at stop.
pub(crate) fn attach(
    classes: &[EventClass],
    capacity: usize,
    db: DatabaseConnection,
    config: PersistenceConfig,
    rows_file: PathBuf,
    health: Arc<HealthBoard>,
    supervisor: &Supervisor,
) -> tee::PersistTee {
    let file = Arc::new(RowFile::new(rows_file));
    let (tee, buffer) = tee::PersistTee::new(classes, capacity, file.clone());
    let (tx, rx) = mpsc::channel(capacity.max(1));
    supervisor.spawn("persist-tee", tee::forward(buffer, tx));
    spawn(rx, db, config, file, health, supervisor);
    tee
}

/// Writes `rows` to the row file; logs (at ERROR) only if even that fails.
fn to_file(file: &RowFile, rows: &[NewBalance], why: &str) {
    if rows.is_empty() {
        return;
    }
    match file.append(rows) {
        Ok(n) => tracing::warn!(
            rows = n,
            file = %file.path().display(),
            why,
            "Balance rows written to the local row file; the database gets them later."
        ),
        Err(error) => {
            metrics::counter!(telemetry::STAGE_DROPPED, "stage" => STAGE, "reason" => "row_file")
                .increment(rows.len() as u64);
            tracing::error!(
                rows = rows.len(),
                file = %file.path().display(),
                %error,
                why,
                "Balance rows lost: the row file cannot be written."
            );
        }
    }
}

/// Starts the sink; it ends when the channel closes and every row is written (or the stop
/// times out). Rows that do not fit, or cannot be written at stop, go to `file`.
pub fn spawn(
    events: mpsc::Receiver<Event>,
    db: DatabaseConnection,
    config: PersistenceConfig,
    file: Arc<RowFile>,
    health: Arc<HealthBoard>,
    supervisor: &Supervisor,
) {
    let rows = BufferConfig {
        capacity: config.max_buffered_rows,
        when_full: WhenFull::DropOldest,
    };
    let shared = Arc::new(Shared {
        rows: Bounded::with_reason(rows, STAGE, "buffer_full"),
        wake: Notify::new(),
        file,
    });
    let batch = config.batch_size.clamp(1, MAX_BATCH);
    supervisor.spawn(
        "persistence-reader",
        read(events, shared.clone(), batch, config.max_buffered_rows),
    );
    supervisor.spawn(
        "persistence-writer",
        write(shared, db, config, batch, health),
    );
}

async fn read(mut events: mpsc::Receiver<Event>, shared: Arc<Shared>, batch: usize, bound: usize) {
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
        // Never waits on the database: past the bound the oldest rows go to the row file.
        let evicted: Vec<NewBalance> = rows
            .into_iter()
            .filter_map(|r| shared.rows.force_push(Row(r, event.received_mono)))
            .map(|Row(r, _)| r)
            .collect();
        if !evicted.is_empty() {
            tracing::debug!(bound, "Balance buffer full; oldest rows to the row file.");
            to_file(&shared.file, &evicted, "buffer_full");
        }
        if shared.rows.len() >= batch {
            shared.wake.notify_one();
        }
    }
    shared.rows.close();
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
        // Rows on disk (from a stop with the database away, or overflow) go first, once the
        // database takes writes.
        if shared.file.pending() && !failing {
            match replay(&shared.file, &db, batch).await {
                Ok(()) => {}
                Err(error) => {
                    shared.file.retry_later();
                    failing = true;
                    tracing::warn!(%error, "Balance rows on disk not written yet; retrying.");
                    health.set_database(ComponentState::Down);
                }
            }
        }
        let closed = shared.rows.is_closed();
        let (rows, received): (Vec<_>, Vec<_>) = shared
            .rows
            .pop_up_to(batch)
            .into_iter()
            .map(|Row(row, at)| (row, at))
            .unzip();
        if rows.is_empty() {
            if closed {
                if shared.file.pending() && !failing {
                    // Rows evicted to the row file after this pass's replay: write them too.
                    continue;
                }
                tracing::info!("Persistence sink drained and stopped.");
                return;
            }
            if failing {
                // Only the row file waits: retry it after the backoff.
                sleep_unless_closed(&shared, backoff.next_delay()).await;
                failing = false;
                continue;
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
                    if shared.rows.is_closed() {
                        // Stopping with the database away: every row to disk, for the next start.
                        let mut rest = rows;
                        rest.extend(
                            shared
                                .rows
                                .pop_up_to(usize::MAX)
                                .into_iter()
                                .map(|Row(r, _)| r),
                        );
                        tracing::warn!(%error, rows = rest.len(), "Database unreachable at stop.");
                        to_file(&shared.file, &rest, "stop");
                        return;
                    }
                    let waiting = shared.rows.len() + rows.len();
                    if !failing {
                        tracing::warn!(%error, waiting, "Balance write failed; retrying with backoff.");
                        failing = true;
                    } else {
                        tracing::debug!(%error, waiting, "Balance write retry failed.");
                    }
                    sleep_unless_closed(&shared, backoff.next_delay()).await;
                }
            }
        }
        // A partial batch waits for more rows or the flush interval (batches, not row-by-row).
        let waiting = shared.rows.len();
        if waiting > 0 && waiting < batch && !shared.rows.is_closed() {
            let _ = tokio::time::timeout(flush, shared.wake.notified()).await;
        }
    }
}

/// Sleeps `delay`, cut short when the input closes (a stop does not wait out a backoff).
async fn sleep_unless_closed(shared: &Shared, delay: Duration) {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return,
            () = shared.wake.notified() => {
                if shared.rows.is_closed() {
                    return;
                }
            }
        }
    }
}

/// Writes the row file's rows to the database, then removes the file.
async fn replay(
    file: &RowFile,
    db: &DatabaseConnection,
    batch: usize,
) -> Result<(), sea_orm::DbErr> {
    let rows = file
        .take()
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    for chunk in rows.chunks(batch) {
        store::balances::insert_many(db, chunk).await?;
        metrics::counter!(telemetry::DB_WRITES, "table" => TABLE).increment(chunk.len() as u64);
    }
    file.done()
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    if !rows.is_empty() {
        tracing::info!(
            rows = rows.len(),
            "Balance rows from the local row file written."
        );
    }
    Ok(())
}
