//! The persistence sink: consumes the tee channel and writes rows in batches.
//! (Skeleton: lands with the persistence issue.)

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;

use crate::{
    event::Event, health::HealthBoard, pipeline_file::PersistenceConfig, shutdown::Supervisor,
};

/// Starts the sink; it ends when the channel closes and every row is written (or the stop
/// times out).
pub fn spawn(
    mut events: mpsc::Receiver<Event>,
    db: DatabaseConnection,
    config: PersistenceConfig,
    health: Arc<HealthBoard>,
    supervisor: &Supervisor,
) {
    let _ = (db, config, health);
    supervisor.spawn("persistence", async move {
        while events.recv().await.is_some() {}
    });
}
