//! The source stage: Bybit v5 WebSocket connections, reconciled toward the desired
//! subscription set, emitting a [`Stream`](futures::Stream) of [`RawFrame`]s.
//!
//! (Skeleton: the connection manager lands with the source issue.)

pub mod subscriptions;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{
    config::BybitSettings, event::RawFrame, health::HealthBoard, pipeline_file::SourceConfig,
    shutdown::Supervisor,
};
use subscriptions::SubscriptionHandle;

/// Everything the source needs.
#[derive(Debug, Clone)]
pub struct SourceParams {
    /// Endpoints and credentials.
    pub bybit: BybitSettings,
    /// Heartbeat, backoff, chunking.
    pub config: SourceConfig,
    /// The desired topics.
    pub registry: SubscriptionHandle,
    /// Where connection states are shown.
    pub health: Arc<HealthBoard>,
    /// Capacity of the output channel (the decode stage's buffer).
    pub capacity: usize,
}

/// Starts the connection manager; the returned stream ends after `stop` is cancelled and every
/// connection has closed.
pub fn spawn(
    params: SourceParams,
    supervisor: &Supervisor,
    stop: CancellationToken,
) -> ReceiverStream<RawFrame> {
    let (tx, rx) = mpsc::channel(params.capacity.max(1));
    supervisor.spawn_critical("source", async move {
        stop.cancelled().await;
        drop(tx);
        Ok::<(), std::convert::Infallible>(())
    });
    ReceiverStream::new(rx)
}
