//! Shared subscription status: in a cluster only a topic's owner talks to Bybit about it, so
//! only the owner knows its status. The owner writes it to every active `subscriptions` row of
//! the topic, whichever instance created the row, so `GET /api/v1/subscriptions` answers the
//! same on every instance. The write is fenced like the cursor's: it lands only while the lease
//! is this instance's at the epoch it published under. The same task writes the owned
//! `publicTrade` topics' last trades to their lease rows (see `cluster::marks`).

use std::{collections::HashMap, time::Duration};

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use super::{Ownership, Unit, marks::Mark, store};

/// How often the owned topics' statuses are written (rows created elsewhere meanwhile start
/// at `pending` and are corrected by the next write).
const EVERY: Duration = Duration::from_millis(500);

/// Writes the statuses of the topics this instance owns, and their last trades, until
/// `shutdown`.
pub(crate) async fn share(
    db: DatabaseConnection,
    ownership: Ownership,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // The marks noted at the previous tick (written now: one tick late), and those written.
    let mut noted: Vec<(Unit, u64, Mark)> = Vec::new();
    let mut written: HashMap<Unit, (u64, Mark)> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let id = ownership.instance_id();
        let owned = ownership.owned_statuses();
        let mut result = match owned.is_empty() {
            true => Ok(()),
            false => store::write_statuses(&db, id, &owned).await.map(|changed| {
                if changed > 0 {
                    tracing::debug!(changed, "Cluster: subscription statuses written.");
                }
            }),
        };
        let due: Vec<(Unit, u64, Mark)> =
            std::mem::replace(&mut noted, ownership.owned_trade_marks())
                .into_iter()
                .filter(|(unit, epoch, mark)| {
                    written
                        .get(unit)
                        .is_none_or(|(e, m)| e != epoch || m != mark)
                })
                .collect();
        // Units no longer held are forgotten (a later tenure writes its marks again).
        let held: std::collections::HashSet<&Unit> = noted.iter().map(|(u, _, _)| u).collect();
        written.retain(|u, _| held.contains(u));
        if result.is_ok() && !due.is_empty() {
            result = store::write_trade_marks(&db, id, &due).await;
            if result.is_ok() {
                written.extend(due.into_iter().map(|(u, e, m)| (u, (e, m))));
            }
        }
        match result {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "Cluster: cannot write subscription statuses or trade marks; retrying.");
            }
            Err(_) => {}
        }
    }
}
