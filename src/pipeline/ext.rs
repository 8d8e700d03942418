//! [`PipelineExt`]: the stages as stream adapters, so the pipeline reads as one sentence
//! (`frames.decode(..).buffer(..).classify().buffer(..).enrich(..)`), after barter-data's
//! `BarterStreamExt`. Each adapter counts its stage's received/sent/dropped items with counter
//! handles resolved once, not per item.

use futures::{Stream, StreamExt, stream::BoxStream};
use metrics::Counter;

use crate::{
    buffer::{self, Droppable},
    event::{Event, RawFrame},
    pipeline::{
        classify::{self, Classified},
        decode::{self, Decoded},
        enrich::Enricher,
    },
    pipeline_file::BufferConfig,
    shutdown::Supervisor,
    telemetry::{PipelineStats, STAGE_RECEIVED, STAGE_SENT, UNKNOWN_TOPICS},
};

fn counters(stage: &'static str) -> (Counter, Counter) {
    (
        metrics::counter!(STAGE_RECEIVED, "stage" => stage),
        metrics::counter!(STAGE_SENT, "stage" => stage),
    )
}

/// The pipeline stages as methods on any stream.
pub(crate) trait PipelineExt: Stream + Sized + Send + 'static {
    /// Decodes frames: the source's one parse located their fields, so this cannot fail
    /// (malformed frames are counted and logged by the source, where they are dropped).
    fn decode(self) -> impl Stream<Item = Decoded> + Send + 'static
    where
        Self: Stream<Item = RawFrame>,
    {
        let (received, sent) = counters("decode");
        self.map(move |frame| {
            received.increment(1);
            let d = decode::decode(frame);
            sent.increment(1);
            d
        })
    }

    /// Classifies decoded frames; unknown topics become `other` and are counted.
    fn classify(self) -> impl Stream<Item = Classified> + Send + 'static
    where
        Self: Stream<Item = Decoded>,
    {
        let (received, sent) = counters("classify");
        self.map(move |d| {
            received.increment(1);
            let c = classify::classify(d);
            if c.class == crate::event::EventClass::Other {
                let endpoint = c.decoded.frame.endpoint;
                metrics::counter!(UNKNOWN_TOPICS, "endpoint" => endpoint.label()).increment(1);
                tracing::debug!(%endpoint, topic = %c.decoded.topic(), "Unknown topic; classified as other.");
            }
            sent.increment(1);
            c
        })
    }

    /// Builds events (id, trace id, seq, envelope).
    fn enrich(
        self,
        mut enricher: Enricher,
        stats: PipelineStats,
    ) -> impl Stream<Item = Event> + Send + 'static
    where
        Self: Stream<Item = Classified>,
    {
        let (received, sent) = counters("enrich");
        self.map(move |c| {
            received.increment(1);
            let ev = enricher.enrich(c);
            stats.add_events(1);
            sent.increment(1);
            ev
        })
    }

    /// A bounded buffer with the stage's when-full policy; its pump runs as a task.
    fn buffer<T>(
        self,
        config: BufferConfig,
        stage: &'static str,
        supervisor: &Supervisor,
    ) -> BoxStream<'static, T>
    where
        Self: Stream<Item = T>,
        T: Droppable + Send + 'static,
    {
        buffer::buffer(self, config, stage, supervisor)
    }
}

impl<S: Stream + Sized + Send + 'static> PipelineExt for S {}
