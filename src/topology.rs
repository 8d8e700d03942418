//! The topology: the source's frames through the pipeline, and the pipeline's events into
//! every sink. This is the one place sinks are attached (vector's topology builder): the
//! persistence tee, the `/ws` dispatcher feed and RabbitMQ each take every event the same way,
//! side by side (`sink::drive`); only a sink whose when-full policy is `block` ever makes the
//! pipeline wait. A new sink is its module under `sink/` plus one entry in [`spawn`]'s tuple.
//!
//! Stop order: the source's stream ends first, the stage buffers drain, then the sink inputs
//! are dropped and each sink flushes (the database rows, the broker's confirms).

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use tokio::sync::broadcast;

use crate::{
    event::{Event, EventClass, RawFrame},
    health::{ComponentState, HealthBoard},
    pipeline,
    pipeline_file::{PersistenceConfig, PublishConfig, StagesConfig},
    shutdown::Supervisor,
    sink::{self, dispatch::Dispatch, postgres, rabbitmq},
    subscriptions::QueueBindings,
    telemetry::PipelineStats,
};

/// Everything the topology needs besides the frames.
#[derive(Debug, Clone)]
pub struct TopologyParams {
    /// Buffers between stages, and the tee's (`tee`) and the broker's (`publish`) buffers.
    pub stages: StagesConfig,
    /// Broker publishing.
    pub publish: PublishConfig,
    /// Prefix of exchange and queue names.
    pub service_name: String,
    /// The broker; `None` turns the RabbitMQ sink off.
    pub amqp_url: Option<SecretString>,
    /// Per-service queue bindings to reconcile.
    pub bindings: QueueBindings,
    /// Classes the tee hands to persistence.
    pub persist_classes: Vec<EventClass>,
    /// The database; `None` turns the persistence sink off.
    pub database: Option<DatabaseConnection>,
    /// How the persistence sink batches and bounds its rows.
    pub persistence: PersistenceConfig,
    /// The in-process fan-out point (`/ws`, `last_event_at`).
    pub broadcast: broadcast::Sender<Arc<Event>>,
    /// Where broker and database state are shown.
    pub health: Arc<HealthBoard>,
    /// Counters of this instance (tests and the load program read them).
    pub stats: PipelineStats,
    /// Private events the broker confirmed are offered here (the catch-up cursor).
    pub confirmed: Option<tokio::sync::mpsc::Sender<Arc<Event>>>,
    /// Cluster ownership: the publisher publishes only what this instance owns, with its
    /// epoch (`Ownership::solo` alone: everything, no headers).
    pub ownership: crate::cluster::Ownership,
}

/// Runs the pipeline over `frames` and attaches every sink; the tasks end when the frames have
/// ended and every sink has flushed.
pub fn spawn<S>(frames: S, params: TopologyParams, supervisor: &Supervisor)
where
    S: futures::Stream<Item = RawFrame> + Send + 'static,
{
    let events = pipeline::spawn(frames, &params.stages, params.stats.clone(), supervisor);

    let rows_file = params
        .publish
        .spool_dir
        .join(format!("{}.rows", params.service_name));
    let persistence = params.database.map(|db| {
        postgres::attach(
            &params.persist_classes,
            params.stages.tee.capacity,
            db,
            params.persistence,
            rows_file,
            params.health.clone(),
            supervisor,
        )
    });
    let dispatch = Dispatch::new(params.broadcast);
    let rabbitmq = match params.amqp_url {
        Some(url) => Some(rabbitmq::spawn(
            rabbitmq::RabbitParams {
                url,
                prefix: params.service_name,
                config: params.publish,
                buffer: params.stages.publish,
                bindings: params.bindings,
                health: params.health.clone(),
                stats: params.stats,
                confirmed: params.confirmed,
                fault: supervisor.config_fault(),
                ownership: params.ownership,
            },
            supervisor,
        )),
        None => {
            tracing::info!("No AMQP_URL set; the publish stage is off, events reach /ws only.");
            params.health.set_broker(ComponentState::Disabled);
            None
        }
    };

    supervisor.spawn(
        "sinks",
        sink::drive(events, (persistence, dispatch, rabbitmq)),
    );
}
