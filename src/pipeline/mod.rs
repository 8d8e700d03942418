//! The pipeline: decode → classify → enrich → tee → publish and fan-out.
//!
//! (Skeleton: the stages land with the pipeline issue.)

use std::sync::Arc;

use futures::{Stream, StreamExt};
use secrecy::SecretString;
use tokio::sync::{broadcast, mpsc};

use crate::{
    event::{Event, EventClass, RawFrame},
    health::HealthBoard,
    pipeline_file::{PublishConfig, StagesConfig},
    shutdown::Supervisor,
    sink::bindings::QueueBindings,
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
}

/// Runs the pipeline over `frames` until they end and every sink has flushed.
pub fn spawn<S>(frames: S, params: PipelineParams, supervisor: &Supervisor)
where
    S: Stream<Item = RawFrame> + Send + 'static,
{
    let _ = params;
    supervisor.spawn("pipeline", async move {
        frames.for_each(|_| async {}).await;
    });
}
