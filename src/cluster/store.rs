//! The control plane's statements (PostgreSQL only; tables of migration
//! `m20261127_000004_create_cluster`). Time is the database's (`now()`), never a local clock.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait, Value,
};

use super::{Unit, key_name, marks::Mark, parse_key};
use crate::subscriptions::{TopicKey, TopicStatus};

/// The `LISTEN`/`NOTIFY` channel every change is announced on.
pub const CHANNEL: &str = "ws_gateway_cluster";

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn secs(d: std::time::Duration) -> Value {
    d.as_secs_f64().into()
}

/// One row of `cluster_instances`.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: String,
    pub api_addr: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seen within the lease ttl.
    pub live: bool,
}

/// One row of `cluster_leases`.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub unit: Unit,
    pub owner: Option<String>,
    pub epoch: u64,
    /// Not expired.
    pub live: bool,
    pub handover_to: Option<String>,
    pub handover_ready: bool,
}

/// What the controller decides from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub instances: Vec<InstanceRow>,
    /// Every topic wanted by a live instance or an active API subscription.
    pub desired: BTreeSet<TopicKey>,
    pub leases: Vec<LeaseRow>,
}

/// Registers (or re-registers) this instance, started now.
pub async fn register(db: &impl ConnectionTrait, id: &str, api_addr: &str) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "INSERT INTO cluster_instances (id, api_addr, started_at, last_seen) \
         VALUES ($1, $2, now(), now()) ON CONFLICT (id) DO UPDATE \
         SET api_addr = EXCLUDED.api_addr, started_at = now(), last_seen = now()",
        vec![id.into(), api_addr.into()],
    ))
    .await?;
    notify(db).await
}

/// Heartbeat (unless `leaving`) and renewal of every unexpired lease of `id`, in one
/// statement; returns the leases held (unit, epoch).
pub async fn renew(
    db: &impl ConnectionTrait,
    id: &str,
    ttl: std::time::Duration,
    leaving: bool,
) -> Result<Vec<(Unit, u64)>, DbErr> {
    let sql = if leaving {
        "UPDATE cluster_leases SET expires_at = now() + make_interval(secs => $2) \
         WHERE owner = $1 AND expires_at > now() RETURNING unit, epoch"
    } else {
        "WITH hb AS (UPDATE cluster_instances SET last_seen = now() WHERE id = $1) \
         UPDATE cluster_leases SET expires_at = now() + make_interval(secs => $2) \
         WHERE owner = $1 AND expires_at > now() RETURNING unit, epoch"
    };
    let rows = db
        .query_all_raw(stmt(sql, vec![id.into(), secs(ttl)]))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let unit: String = r.try_get("", "unit")?;
        let epoch: i64 = r.try_get("", "epoch")?;
        if let Some(u) = Unit::parse(&unit) {
            out.push((u, u64::try_from(epoch).unwrap_or(0)));
        }
    }
    Ok(out)
}

/// The instances, the cluster's desired set and the leases.
pub async fn snapshot(
    db: &impl ConnectionTrait,
    ttl: std::time::Duration,
) -> Result<Snapshot, DbErr> {
    let mut snap = Snapshot::default();
    for r in db
        .query_all_raw(stmt(
            "SELECT id, api_addr, started_at, last_seen, \
             last_seen > now() - make_interval(secs => $1) AS live FROM cluster_instances",
            vec![secs(ttl)],
        ))
        .await?
    {
        snap.instances.push(InstanceRow {
            id: r.try_get("", "id")?,
            api_addr: r.try_get("", "api_addr")?,
            started_at: r.try_get("", "started_at")?,
            last_seen: r.try_get("", "last_seen")?,
            live: r.try_get("", "live")?,
        });
    }
    for r in db
        .query_all_raw(stmt(
            "SELECT d.unit AS unit FROM cluster_desired d JOIN cluster_instances i \
             ON i.id = d.instance_id WHERE i.last_seen > now() - make_interval(secs => $1) \
             UNION SELECT endpoint || '|' || topic FROM subscriptions WHERE is_active",
            vec![secs(ttl)],
        ))
        .await?
    {
        let name: String = r.try_get("", "unit")?;
        if let Some(k) = parse_key(&name) {
            snap.desired.insert(k);
        }
    }
    for r in db
        .query_all_raw(stmt(
            "SELECT unit, owner, epoch, expires_at > now() AS live, handover_to, handover_ready \
             FROM cluster_leases",
            vec![],
        ))
        .await?
    {
        let unit: String = r.try_get("", "unit")?;
        let Some(unit) = Unit::parse(&unit) else {
            continue;
        };
        let epoch: i64 = r.try_get("", "epoch")?;
        snap.leases.push(LeaseRow {
            unit,
            owner: r.try_get("", "owner")?,
            epoch: u64::try_from(epoch).unwrap_or(0),
            live: r.try_get("", "live")?,
            handover_to: r.try_get("", "handover_to")?,
            handover_ready: r.try_get("", "handover_ready")?,
        });
    }
    Ok(snap)
}

/// A lease taken by [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The new epoch.
    pub epoch: u64,
    /// The last public trade the previous owner wrote (a lease taken from a dead owner; a
    /// released lease has none).
    pub trade_mark: Option<super::marks::Mark>,
}

/// Takes `unit` if it is free or expired, with the next epoch.
pub async fn claim(
    db: &impl ConnectionTrait,
    unit: &Unit,
    id: &str,
    ttl: std::time::Duration,
) -> Result<Option<Claimed>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "INSERT INTO cluster_leases (unit, owner, epoch, expires_at) \
             VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
             ON CONFLICT (unit) DO UPDATE SET owner = EXCLUDED.owner, \
             epoch = cluster_leases.epoch + 1, expires_at = EXCLUDED.expires_at, \
             handover_to = NULL, handover_ready = FALSE \
             WHERE cluster_leases.owner IS NULL OR cluster_leases.expires_at <= now() \
             RETURNING epoch, trade_mark_id, trade_mark_time",
            vec![unit.name().into(), id.into(), secs(ttl)],
        ))
        .await?;
    match row {
        Some(r) => {
            let epoch: i64 = r.try_get("", "epoch")?;
            let mark_id: Option<String> = r.try_get("", "trade_mark_id")?;
            let mark_time: Option<i64> = r.try_get("", "trade_mark_time")?;
            notify(db).await?;
            Ok(Some(Claimed {
                epoch: u64::try_from(epoch).unwrap_or(0),
                trade_mark: mark_id.map(|id| super::marks::Mark {
                    id,
                    time: mark_time.and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
                }),
            }))
        }
        None => Ok(None),
    }
}

/// Asks the live owner of `unit` to hand it to `id` (planned move); `ready` once `id` is
/// subscribed upstream.
pub async fn request_handover(
    db: &impl ConnectionTrait,
    unit: &Unit,
    id: &str,
    ready: bool,
) -> Result<bool, DbErr> {
    let r = db
        .execute_raw(stmt(
            "UPDATE cluster_leases SET handover_to = $2, handover_ready = $3 \
             WHERE unit = $1 AND owner IS DISTINCT FROM $2 \
             AND (handover_to IS DISTINCT FROM $2 OR handover_ready <> $3)",
            vec![unit.name().into(), id.into(), ready.into()],
        ))
        .await?;
    if r.rows_affected() > 0 {
        notify(db).await?;
    }
    Ok(r.rows_affected() > 0)
}

/// Withdraws `id`'s request for `unit` (if it is still the one asking) and returns the
/// lease's live owner as of after that (`None` if expired or free): once this ran, no transfer
/// to `id` can happen, so an owner `id` means the transfer happened before. One statement, so
/// the owner read is the row's latest version (an `UPDATE` waits for a concurrent transfer and
/// sees its result).
pub async fn withdraw_handover(
    db: &impl ConnectionTrait,
    unit: &Unit,
    id: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "UPDATE cluster_leases SET \
             handover_ready = handover_ready AND handover_to IS DISTINCT FROM $2, \
             handover_to = CASE WHEN handover_to = $2 THEN NULL ELSE handover_to END \
             WHERE unit = $1 RETURNING CASE WHEN expires_at > now() THEN owner END AS owner",
            vec![unit.name().into(), id.into()],
        ))
        .await?;
    match row {
        Some(r) => r.try_get("", "owner"),
        None => Ok(None),
    }
}

/// The owner `id` hands `unit` to the instance that asked and is ready, with the next epoch.
pub async fn transfer(
    db: &impl ConnectionTrait,
    unit: &Unit,
    id: &str,
    to: &str,
    ttl: std::time::Duration,
) -> Result<bool, DbErr> {
    let r = db
        .execute_raw(stmt(
            "UPDATE cluster_leases SET owner = handover_to, epoch = epoch + 1, \
             expires_at = now() + make_interval(secs => $4), handover_to = NULL, \
             handover_ready = FALSE \
             WHERE unit = $1 AND owner = $2 AND handover_to = $3 AND handover_ready",
            vec![unit.name().into(), id.into(), to.into(), secs(ttl)],
        ))
        .await?;
    if r.rows_affected() > 0 {
        notify(db).await?;
    }
    Ok(r.rows_affected() > 0)
}

/// Gives `unit` up (no one wants it any more); the next claim bumps the epoch.
pub async fn release(db: &impl ConnectionTrait, unit: &Unit, id: &str) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "UPDATE cluster_leases SET owner = NULL, expires_at = now(), handover_to = NULL, \
         handover_ready = FALSE, trade_mark_id = NULL, trade_mark_time = NULL \
         WHERE unit = $1 AND owner = $2",
        vec![unit.name().into(), id.into()],
    ))
    .await?;
    notify(db).await
}

/// Mirrors the topics this instance wants (its `/ws` and pipeline-file topics).
pub async fn mirror_desired(
    db: &sea_orm::DatabaseConnection,
    id: &str,
    keys: &BTreeSet<TopicKey>,
) -> Result<(), DbErr> {
    let txn: DatabaseTransaction = db.begin().await?;
    txn.execute_raw(stmt(
        "DELETE FROM cluster_desired WHERE instance_id = $1",
        vec![id.into()],
    ))
    .await?;
    let names: Vec<String> = keys.iter().map(key_name).collect();
    for chunk in names.chunks(500) {
        let mut sql = "INSERT INTO cluster_desired (instance_id, unit) VALUES ".to_owned();
        let mut values: Vec<Value> = vec![id.into()];
        for (i, name) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($1, ${})", i + 2));
            values.push(name.clone().into());
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        txn.execute_raw(stmt(&sql, values)).await?;
    }
    txn.commit().await?;
    notify(db).await
}

/// Leaves the cluster (SIGTERM): no longer live, wants nothing.
pub async fn leave(db: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        "DELETE FROM cluster_desired WHERE instance_id = $1",
        vec![id.into()],
    ))
    .await?;
    db.execute_raw(stmt(
        "UPDATE cluster_instances SET last_seen = to_timestamp(0) WHERE id = $1",
        vec![id.into()],
    ))
    .await?;
    notify(db).await
}

/// Announces a change to every instance (`LISTEN ws_gateway_cluster`).
pub async fn notify(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    db.execute_unprepared(&format!("NOTIFY {CHANNEL}"))
        .await
        .map(|_| ())
}

/// The owner `id` writes the statuses of its topics (with the epochs it holds them at) to
/// every active `subscriptions` row of each topic, whoever created the row; only under a live
/// lease of `id` at that epoch. One statement; rows already right are not touched. Returns the
/// rows changed.
pub async fn write_statuses(
    db: &impl ConnectionTrait,
    id: &str,
    owned: &[(TopicKey, u64, TopicStatus)],
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
        .execute_raw(stmt(
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

/// The owner `id` writes the last trades of its `publicTrade` topics to their lease rows, only
/// under a live lease of `id` at that epoch; a time-only mark (empty id) only where the lease
/// has no mark.
pub async fn write_trade_marks(
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
    db.execute_raw(stmt(
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
