//! The pipeline: decode → classify → enrich → tee → publish and fan-out.
//!
//! Only this module knows the order of the stages. Stateless stages are plain fns on one item
//! ([`decode::decode`], [`classify::classify`]); stateful ones ([`enrich::Enricher`], the
//! [`tee::PersistTee`], the publish sink) own their state. [`PipelineExt`] joins them so the
//! pipeline reads as one expression, with a bounded [`buffer`] (capacity and when-full policy
//! from the pipeline file) between stages. Each stage counts `STAGE_RECEIVED`/`STAGE_SENT`.

pub mod buffer;
pub mod classify;
pub mod decode;
pub mod enrich;
mod ext;
pub mod stats;
pub mod tee;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use secrecy::SecretString;
use tokio::sync::{broadcast, mpsc};

pub use ext::PipelineExt;
pub use stats::PipelineStats;

use crate::{
    event::{Event, EventClass, RawFrame},
    health::{ComponentState, HealthBoard},
    pipeline_file::{PublishConfig, StagesConfig},
    shutdown::Supervisor,
    sink::{bindings::QueueBindings, rabbitmq},
};

/// Everything the pipeline needs besides its input.
#[derive(Debug, Clone)]
pub struct PipelineParams {
    /// Buffers between stages.
    pub stages: StagesConfig,
    /// Broker publishing.
    pub publish: PublishConfig,
    /// Classes the tee hands to persistence.
    pub persist_classes: Vec<EventClass>,
    /// Prefix of exchange and queue names.
    pub service_name: String,
    /// The broker; `None` turns the publish stage off.
    pub amqp_url: Option<SecretString>,
    /// Per-service queue bindings to reconcile.
    pub bindings: QueueBindings,
    /// In-process fan-out point (`/ws`, `last_event_at`).
    pub broadcast: broadcast::Sender<Arc<Event>>,
    /// The persistence channel (the tee's output).
    pub persist: mpsc::Sender<Event>,
    /// Where broker state is shown.
    pub health: Arc<HealthBoard>,
    /// Counters of this pipeline instance (tests and the load program read them).
    pub stats: PipelineStats,
}

/// Runs the pipeline over `frames` until they end and every sink has flushed.
pub fn spawn<S>(frames: S, params: PipelineParams, supervisor: &Supervisor)
where
    S: Stream<Item = RawFrame> + Send + 'static,
{
    let (tee, persist_buffer) =
        tee::PersistTee::new(&params.persist_classes, params.stages.tee.capacity);
    supervisor.spawn("persist-tee", tee::forward(persist_buffer, params.persist));
    let stats = params.stats.clone();
    let events = frames
        .decode()
        .buffer(params.stages.classify, "classify", supervisor)
        .classify()
        .buffer(params.stages.enrich, "enrich", supervisor)
        .enrich(enrich::Enricher::default(), stats.clone())
        .tee(tee)
        .fan_out(params.broadcast);
    match params.amqp_url {
        Some(url) => rabbitmq::spawn(
            events,
            rabbitmq::RabbitParams {
                url,
                prefix: params.service_name,
                config: params.publish,
                buffer: params.stages.publish,
                bindings: params.bindings,
                health: params.health,
                stats,
            },
            supervisor,
        ),
        None => {
            tracing::info!("No AMQP_URL set; the publish stage is off, events reach /ws only.");
            params.health.set_broker(ComponentState::Disabled);
            supervisor.spawn("pipeline", events.for_each(|_| async {}));
        }
    }
}
