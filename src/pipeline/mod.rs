//! The pipeline: decode → classify → enrich, from raw frames to the stream of events that the
//! topology (`src/topology.rs`) hands to the sinks.
//!
//! Only this module knows the order of the stages. Stateless stages are plain fns on one item
//! ([`decode::decode`], [`classify::classify`]); stateful ones ([`enrich::Enricher`]) own their
//! state. `PipelineExt` joins them so the pipeline reads as one expression, with a bounded
//! buffer (`crate::buffer`: capacity and when-full policy from the pipeline file) between
//! stages. Each stage counts `STAGE_RECEIVED`/`STAGE_SENT`. The pipeline starts no sink.

pub mod classify;
pub mod decode;
pub mod enrich;
mod ext;
pub mod key;

use futures::Stream;

pub(crate) use ext::PipelineExt;

use crate::{
    event::{Event, RawFrame},
    pipeline_file::StagesConfig,
    shutdown::Supervisor,
    telemetry::PipelineStats,
};

/// The stages over `frames`: returns the stream of enriched events; it ends when `frames` end
/// and every stage buffer has drained. The buffers' pumps run as tasks of `supervisor`.
pub(crate) fn spawn<S>(
    frames: S,
    stages: &StagesConfig,
    stats: PipelineStats,
    supervisor: &Supervisor,
) -> impl Stream<Item = Event> + Send + 'static
where
    S: Stream<Item = RawFrame> + Send + 'static,
{
    frames
        .decode()
        .buffer(stages.classify, "classify", supervisor)
        .classify()
        .buffer(stages.enrich, "enrich", supervisor)
        .enrich(enrich::Enricher::default(), stats)
}
