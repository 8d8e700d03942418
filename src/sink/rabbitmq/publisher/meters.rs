//! The publisher's metric handles, resolved once at start ([`Meters`]): published and confirmed
//! per class, confirm and receive-to-confirm latency, confirm latency by queue type, and market
//! events the broker refused.

use metrics::{Counter, Histogram};

use crate::{
    event::EventClass,
    pipeline_file::{PublishConfig, QueueType},
    telemetry::{
        EVENTS_CONFIRMED, EVENTS_PUBLISHED, PUBLISH_CONFIRM_BY_QUEUE_TYPE, PUBLISH_CONFIRM_LATENCY,
        RECEIVE_TO_CONFIRM_LATENCY, STAGE_DROPPED, STAGE_SENT,
    },
};

/// Metric handles resolved once.
#[derive(Debug)]
pub(super) struct Meters {
    pub(super) published: Vec<Counter>,
    pub(super) confirmed: Vec<Counter>,
    pub(super) confirm_latency: Histogram,
    pub(super) receive_latency: Histogram,
    pub(super) sent: Counter,
    /// Confirm latency per class, by the queue type of the class queue.
    pub(super) confirm_by_queue_type: Vec<Histogram>,
    /// Market events the broker NACKed (dropped, not retried).
    pub(super) refused: Counter,
}

impl Meters {
    pub(super) fn new(config: &PublishConfig) -> Self {
        let by_class = |name: &'static str| {
            EventClass::ALL
                .iter()
                .map(|c| metrics::counter!(name, "class" => c.as_str()))
                .collect()
        };
        Self {
            published: by_class(EVENTS_PUBLISHED),
            confirmed: by_class(EVENTS_CONFIRMED),
            confirm_latency: metrics::histogram!(PUBLISH_CONFIRM_LATENCY),
            receive_latency: metrics::histogram!(RECEIVE_TO_CONFIRM_LATENCY),
            sent: metrics::counter!(STAGE_SENT, "stage" => "publish"),
            confirm_by_queue_type: EventClass::ALL
                .iter()
                .map(|c| {
                    let qt = config.class(*c).queue_type;
                    metrics::histogram!(PUBLISH_CONFIRM_BY_QUEUE_TYPE, "queue_type" => qt.as_str())
                })
                .collect(),
            refused: metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "refused"),
        }
    }
}

/// Registers the per-queue-type confirm histograms of the types in use (so both show at zero).
pub(super) fn register_queue_types() {
    for qt in [QueueType::Classic, QueueType::Quorum] {
        let _ = metrics::histogram!(PUBLISH_CONFIRM_BY_QUEUE_TYPE, "queue_type" => qt.as_str());
    }
}
