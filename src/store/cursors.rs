//! Queries on `catchup_cursors`: per private topic, the exchange time of the newest item the
//! broker confirmed and the identities of the items at that time. A write never moves a
//! cursor back (the upsert only applies when the stored time is not newer).

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{
    ConnectionTrait, FromQueryResult,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Query},
};

/// One topic's cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Exchange time (ms) of the newest confirmed item.
    pub ts: i64,
    /// Identities of the confirmed items at `ts`.
    pub ids: BTreeSet<String>,
}

impl Cursor {
    /// Takes an item confirmed at `ts`: a newer time replaces the ids, the same time adds to
    /// them, an older time changes nothing. Returns whether the cursor changed.
    pub fn advance(&mut self, ts: i64, id: &str) -> bool {
        if ts > self.ts {
            self.ts = ts;
            self.ids.clear();
            self.ids.insert(id.to_owned());
            true
        } else if ts == self.ts {
            self.ids.insert(id.to_owned())
        } else {
            false
        }
    }

    /// Whether an item at `ts` with identity `id` is at or behind this cursor (published).
    pub fn covers(&self, ts: i64, id: &str) -> bool {
        ts < self.ts || (ts == self.ts && self.ids.contains(id))
    }
}

const TABLE: &str = "catchup_cursors";

#[derive(Debug, FromQueryResult)]
struct Row {
    topic: String,
    exchange_ts: i64,
    ids: String,
}

/// Every stored cursor, by topic.
pub async fn load(db: &impl ConnectionTrait) -> Result<BTreeMap<String, Cursor>, sea_orm::DbErr> {
    let stmt = Query::select()
        .columns([
            Alias::new("topic"),
            Alias::new("exchange_ts"),
            Alias::new("ids"),
        ])
        .from(Alias::new(TABLE))
        .to_owned();
    let rows = Row::find_by_statement(db.get_database_backend().build(&stmt))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let ids: Vec<String> = serde_json::from_str(&r.ids).unwrap_or_default();
            (
                r.topic,
                Cursor {
                    ts: r.exchange_ts,
                    ids: ids.into_iter().collect(),
                },
            )
        })
        .collect())
}

/// Cluster mode: writes `cursor` for `topic` only while `owner` holds the private lease at
/// `epoch` (checked in the statement itself, by the database clock), and unless the stored one
/// is newer. Returns whether the row was written (false: fenced, or the stored one is newer).
pub async fn save_fenced(
    db: &impl ConnectionTrait,
    topic: &str,
    cursor: &Cursor,
    owner: &str,
    epoch: u64,
) -> Result<bool, sea_orm::DbErr> {
    let ids = serde_json::to_string(&cursor.ids).unwrap_or_else(|_| "[]".to_owned());
    let stmt = sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "INSERT INTO catchup_cursors (topic, exchange_ts, ids, updated_at) \
         SELECT $1, $2, $3, now() WHERE EXISTS (SELECT 1 FROM cluster_leases \
         WHERE unit = 'private' AND owner = $4 AND epoch = $5 AND expires_at > now()) \
         ON CONFLICT (topic) DO UPDATE SET exchange_ts = EXCLUDED.exchange_ts, \
         ids = EXCLUDED.ids, updated_at = EXCLUDED.updated_at \
         WHERE catchup_cursors.exchange_ts <= EXCLUDED.exchange_ts",
        [
            topic.into(),
            cursor.ts.into(),
            ids.into(),
            owner.into(),
            i64::try_from(epoch).unwrap_or(i64::MAX).into(),
        ],
    );
    Ok(db.execute_raw(stmt).await?.rows_affected() > 0)
}

/// Writes `cursor` for `topic` unless the stored one is newer.
pub async fn save(
    db: &impl ConnectionTrait,
    topic: &str,
    cursor: &Cursor,
) -> Result<(), sea_orm::DbErr> {
    let ids = serde_json::to_string(&cursor.ids).unwrap_or_else(|_| "[]".to_owned());
    let (c_topic, c_ts, c_ids, c_at) = (
        Alias::new("topic"),
        Alias::new("exchange_ts"),
        Alias::new("ids"),
        Alias::new("updated_at"),
    );
    let stmt = Query::insert()
        .into_table(Alias::new(TABLE))
        .columns([c_topic.clone(), c_ts.clone(), c_ids.clone(), c_at.clone()])
        .values_panic([
            topic.into(),
            cursor.ts.into(),
            ids.into(),
            chrono::Utc::now().into(),
        ])
        .on_conflict(
            OnConflict::column(c_topic)
                .update_columns([c_ts.clone(), c_ids, c_at])
                .action_and_where(Expr::col((Alias::new(TABLE), c_ts)).lte(Expr::val(cursor.ts)))
                .to_owned(),
        )
        .to_owned();
    db.execute(&stmt).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_never_moves_back_and_gathers_ids_at_its_time() {
        let mut c = Cursor::default();
        assert!(c.advance(10, "a"));
        assert!(c.advance(10, "b"));
        assert!(!c.advance(10, "b"));
        assert!(!c.advance(9, "z"));
        assert_eq!((c.ts, c.ids.len()), (10, 2));
        assert!(c.covers(9, "x") && c.covers(10, "a") && !c.covers(10, "c") && !c.covers(11, "a"));
        assert!(c.advance(11, "c"));
        assert_eq!(c.ids.iter().collect::<Vec<_>>(), ["c"]);
    }
}
