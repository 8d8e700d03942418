//! The RabbitMQ publish sink (spec section 4): topology, publisher confirms, reconnects, the
//! private-event spool.
//!
//! - `outbox`: what waits for the broker (bounded market buffer, private memory + spool).
//! - [`spool`]: the on-disk, append-only spool of private events.
//! - [`topology`]: exchange, class queues, per-service queues and their bindings.
//! - `confirms`: the confirm callback and the in-flight window.
//! - `publisher`: the connection loop that ties them together; `properties`: each message's
//!   AMQP properties and headers.
//!
//! The topology hands events to `RabbitInput`, which puts them in the outbox (never waiting on the
//! broker, except under `when_full = "block"`); the `publish` task sends from the outbox with at
//! most `confirm_window` unconfirmed messages. An event counts as published only once the broker
//! confirms it. Delivery is at-least-once: messages in flight when a connection drops (or after a
//! NACK) are sent again, so those few may arrive twice.

mod confirms;
mod loss;
mod nodes;
mod outbox;
mod properties;
mod publisher;
mod refused;
pub mod spool;
mod standby;
pub mod topology;
mod url_args;

use std::sync::Arc;

use metrics::Counter;
use secrecy::SecretString;

pub use properties::properties;
pub use url_args::connection_args;

/// The nodes of a (comma-separated) `AMQP_URL` for the `/ws` relay of another instance's topics
/// (`cluster::relay`), in the order the publisher tries them.
pub fn relay_nodes(
    amqp_url: &SecretString,
) -> Result<Vec<crate::cluster::relay::RelayNode>, PublishError> {
    use secrecy::ExposeSecret;
    amqp_url
        .expose_secret()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            Ok(crate::cluster::relay::RelayNode {
                args: connection_args(u)?,
                label: nodes::node_label(u),
            })
        })
        .collect()
}

use crate::{
    event::Event,
    health::HealthBoard,
    pipeline_file::{BufferConfig, PublishConfig},
    shutdown::{ConfigFault, Supervisor},
    sink::EventSink,
    subscriptions::QueueBindings,
    telemetry::{PipelineStats, STAGE_RECEIVED},
};

/// Why publishing failed (each leads to a reconnect with backoff).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `AMQP_URL` does not parse as a URL.
    #[error("invalid AMQP URL")]
    Url(#[source] url::ParseError),
    /// `AMQP_URL` is not `amqp://` (TLS is not built in).
    #[error("unsupported AMQP URL scheme {0:?}")]
    Scheme(String),
    /// The TCP/AMQP connection could not be opened.
    #[error("cannot connect to the broker")]
    Connect(#[source] amqprs::error::Error),
    /// Opening the channel or enabling confirms failed.
    #[error("cannot open the publish channel")]
    Channel(#[source] amqprs::error::Error),
    /// Declaring the exchange, a queue or a binding failed.
    #[error("cannot declare the topology")]
    Declare(#[source] amqprs::error::Error),
    /// `basic.publish` failed (the connection is gone).
    #[error("publish failed")]
    Publish(#[source] amqprs::error::Error),
    /// The connection dropped.
    #[error("the broker connection was lost")]
    ConnectionLost,
    /// The connection attempt took too long.
    #[error("timed out connecting to the broker")]
    ConnectTimeout,
    /// The input ended and the broker did not confirm everything within half the shutdown
    /// timeout (what is left is spooled).
    #[error("the broker did not confirm in time for the stop")]
    StopDeadline,
    /// A name past AMQP's 255-byte limit.
    #[error("name too long for AMQP: {0}")]
    NameTooLong(String),
    /// A queue exists with another type or other arguments (`PRECONDITION_FAILED`): an
    /// operator must act; the process stops with exit code 2.
    #[error("{0}")]
    Mismatch(Box<topology::Mismatch>),
}

/// What the sink needs.
#[derive(Debug, Clone)]
pub(crate) struct RabbitParams {
    /// `amqp://…` (secret: it holds the password).
    pub url: SecretString,
    /// Prefix of exchange and queue names.
    pub prefix: String,
    /// Confirms, reconnect, spool.
    pub config: PublishConfig,
    /// The market-data buffer (`stages.publish`).
    pub buffer: BufferConfig,
    /// Per-service bindings to reconcile.
    pub bindings: QueueBindings,
    /// Broker state for `/health`.
    pub health: Arc<HealthBoard>,
    /// In-process counters.
    pub stats: PipelineStats,
    /// Confirmed private events go here (`try_send`: never waits; the catch-up cursor).
    pub confirmed: Option<tokio::sync::mpsc::Sender<Arc<Event>>>,
    /// Raised on a topology mismatch: stops the process with exit code 2.
    pub fault: ConfigFault,
    /// Whether this instance may publish an event now, and under which epoch (cluster mode).
    pub ownership: crate::cluster::Ownership,
}

/// The sink's input: events go into the outbox. Dropping it closes the outbox; the sink's
/// tasks end once every event is confirmed (or, with the broker away at the end, private
/// events are spooled).
#[derive(Debug)]
pub(crate) struct RabbitInput {
    outbox: Arc<outbox::Outbox>,
    received: Counter,
}

impl EventSink for RabbitInput {
    async fn send(&mut self, event: &Arc<Event>) {
        self.received.increment(1);
        self.outbox.push(event.clone()).await;
    }
}

impl Drop for RabbitInput {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// Starts the sink and returns its input.
pub(crate) fn spawn(params: RabbitParams, supervisor: &Supervisor) -> RabbitInput {
    let spool = match spool::Spool::open_bounded(
        &params.config.spool_dir,
        &params.prefix,
        params.config.spool_max_bytes,
    ) {
        Ok(s) => {
            if s.pending() > 0 {
                tracing::info!(
                    records = s.pending(),
                    "Replaying private events spooled by an earlier run."
                );
            }
            Some(s)
        }
        Err(error) => {
            tracing::error!(%error, dir = %params.config.spool_dir.display(), "Cannot open the spool; private events stay in memory.");
            None
        }
    };
    let outbox = Arc::new(
        outbox::Outbox::new(
            params.buffer,
            params.config.private_memory_buffer,
            spool,
            params.stats.clone(),
        )
        .stop_on(supervisor.shutdown.clone()),
    );
    supervisor.spawn("spool-sync", sync_spool(outbox.clone()));
    let publisher = publisher::Publisher::new(params, outbox.clone()).run();
    supervisor.spawn("publish", run_dedicated(publisher));
    RabbitInput {
        outbox,
        received: metrics::counter!(STAGE_RECEIVED, "stage" => "publish"),
    }
}

/// Group commit of the spool: every [`spool::SYNC_INTERVAL`], `fsync`s what was spooled since
/// the last round, on a blocking thread and outside the outbox lock, so neither the input nor
/// the publisher waits on the disk. Ends once the input has ended (from then on the publisher
/// syncs the spool itself before it stops).
async fn sync_spool(outbox: Arc<outbox::Outbox>) {
    let mut tick = tokio::time::interval(spool::SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        outbox.loss().flush(false);
        let closed = outbox.is_closed();
        if let Some(handle) = outbox.spool_sync_handle() {
            match tokio::task::spawn_blocking(move || handle.sync()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "Cannot fsync the spool."),
                Err(error) => tracing::error!(%error, "The spool's fsync did not finish."),
            }
        }
        if closed {
            return;
        }
    }
}

/// Runs the publisher on its own OS thread with a current-thread runtime, so producer tasks
/// on the shared runtime never delay a publish or a confirm (amqprs's connection tasks are
/// spawned on that runtime too). Falls back to the caller's runtime if the thread cannot
/// start. The returned future ends when the publisher does.
async fn run_dedicated<F>(publisher: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    type Panic = Box<dyn std::any::Any + Send>;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), Panic>>();
    let slot = Arc::new(std::sync::Mutex::new(Some(Box::pin(publisher))));
    let on_thread = slot.clone();
    let started = std::thread::Builder::new()
        .name("ws-gateway-publish".into())
        .spawn(move || {
            let fut = on_thread.lock().ok().and_then(|mut s| s.take());
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    if let Some(fut) = fut {
                        // A panic on this thread is handed back to the supervised task, which
                        // re-raises it so the supervisor names it and stops the process.
                        let outcome =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                rt.block_on(fut)
                            }));
                        let _ = done_tx.send(outcome);
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "Cannot build the publisher runtime.");
                    if let (Some(fut), Ok(mut s)) = (fut, on_thread.lock()) {
                        *s = Some(fut);
                    }
                }
            }
            let _ = done_tx.send(Ok(()));
        });
    if let Err(error) = started {
        tracing::error!(%error, "Cannot start the publisher thread; publishing on the shared runtime.");
    }
    match done_rx.await {
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) if slot.lock().map(|s| s.is_none()).unwrap_or(true) => {
            panic!("the publisher thread ended without reporting")
        }
        _ => {}
    }
    let left = slot.lock().ok().and_then(|mut s| s.take());
    if let Some(fut) = left {
        fut.await;
    }
}

#[cfg(test)]
mod supervision_tests {
    use tokio_util::sync::CancellationToken;

    use crate::shutdown::Supervisor;

    /// The publisher runs on its own thread; a panic there must still reach the supervisor,
    /// named `publish`, and stop the process (today the task just ended quietly).
    #[tokio::test]
    async fn a_panic_on_the_publisher_thread_stops_the_process() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn(
            "publish",
            super::run_dedicated(async { panic!("test-only publisher panic") }),
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), sup.shutdown.cancelled())
            .await
            .expect("a publisher panic stops the process");
        sup.tracker.close();
        sup.tracker.wait().await;
        assert_eq!(sup.failures(), vec!["publish".to_owned()]);
    }
}
