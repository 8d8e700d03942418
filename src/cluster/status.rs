//! Shared subscription status: in a cluster only a topic's owner talks to Bybit about it, so
//! only the owner knows its status. The owner writes it to every active `subscriptions` row of
//! the topic, whichever instance created the row, so `GET /api/v1/subscriptions` answers the
//! same on every instance. The write is fenced like the cursor's: it lands only while the lease
//! is this instance's at the epoch it published under. The same task writes the owned
//! `publicTrade` topics' last trades to their lease rows (see `cluster::marks`).

use std::{collections::HashMap, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use super::{Ownership, Unit, marks::Mark};

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
            false => write(&db, id, &owned).await.map(|changed| {
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
            result = write_marks(&db, id, &due).await;
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

/// Writes the last trades of owned `publicTrade` topics to their lease rows (fenced by owner
/// and epoch).
async fn write_marks(
    db: &impl ConnectionTrait,
    id: &str,
    marks: &[(Unit, u64, Mark)],
) -> Result<(), DbErr> {
    let items: Vec<serde_json::Value> = marks
        .iter()
        .map(|(unit, epoch, mark)| {
            serde_json::json!({"unit": unit.name(), "epoch": epoch, "id": mark.id, "time": mark.time})
        })
        .collect();
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE cluster_leases l SET trade_mark_id = v.id, trade_mark_time = v.time \
         FROM jsonb_to_recordset($1::jsonb) AS v(unit text, epoch bigint, id text, time bigint) \
         WHERE l.unit = v.unit AND l.owner = $2 AND l.epoch = v.epoch AND l.expires_at > now() \
           AND (v.id <> '' OR l.trade_mark_id IS NULL)",
        vec![
            serde_json::Value::Array(items).to_string().into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One statement for every owned topic; rows already right are not touched. Returns the rows
/// changed.
async fn write(
    db: &impl ConnectionTrait,
    id: &str,
    owned: &[(
        crate::subscriptions::TopicKey,
        u64,
        crate::subscriptions::TopicStatus,
    )],
) -> Result<u64, DbErr> {
    let items: Vec<serde_json::Value> = owned
        .iter()
        .map(|(key, epoch, status)| {
            serde_json::json!({
                "unit": Unit::of(key).name(),
                "endpoint": key.endpoint.label(),
                "topic": key.topic,
                "status": status.as_str(),
                "message": status.message(),
                "epoch": epoch,
            })
        })
        .collect();
    let r = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE subscriptions s \
             SET status = v.status, status_message = v.message, updated_at = now() \
             FROM jsonb_to_recordset($1::jsonb) \
                  AS v(unit text, endpoint text, topic text, status text, message text, epoch bigint) \
             JOIN cluster_leases l ON l.unit = v.unit AND l.owner = $2 AND l.epoch = v.epoch \
                  AND l.expires_at > now() \
             WHERE s.is_active AND s.endpoint = v.endpoint AND s.topic = v.topic \
               AND (s.status IS DISTINCT FROM v.status \
                    OR s.status_message IS DISTINCT FROM v.message)",
            vec![
                serde_json::Value::Array(items).to_string().into(),
                id.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected())
}
