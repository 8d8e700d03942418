//! The cursor writer: the RabbitMQ publisher offers every private event the broker confirmed
//! (`try_send`, never waiting); this task advances the per-topic cursors in memory (never
//! back) and writes the changed ones to `catchup_cursors` every `[catchup] cursor_flush`, and
//! once more when its input ends (a clean stop: after the publisher's last confirm).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::DatabaseConnection;
use serde_json::Value;
use tokio::sync::mpsc;

use super::items::{Family, item_id};
use crate::{
    event::Event,
    store::cursors::{self, Cursor},
};

/// Confirmed progress per topic, shared by the writer and the catch-up.
pub type Cursors = Arc<Mutex<BTreeMap<String, Cursor>>>;

/// Confirmed events waiting for the writer, at most.
pub const CHANNEL_CAPACITY: usize = 8192;

/// Reads every stored cursor (none when the table is empty or unreadable: logged).
pub async fn load(db: &DatabaseConnection) -> Cursors {
    let map = match cursors::load(db).await {
        Ok(map) => map,
        Err(error) => {
            tracing::error!(%error, "Cannot read the catch-up cursors; catching up from the start of this run.");
            BTreeMap::new()
        }
    };
    for (topic, c) in &map {
        tracing::info!(topic, exchange_ts = c.ts, "Catch-up cursor loaded.");
    }
    Arc::new(Mutex::new(map))
}

/// Advances `cursors` with the items of a confirmed event; returns the topic when it moved.
pub fn advance(cursors: &Cursors, event: &Event) -> Option<String> {
    let family = Family::of(&event.topic).filter(|f| f.has_cursor())?;
    let items: Vec<Value> = serde_json::from_slice(event.data()).ok()?;
    let mut map = cursors.lock().unwrap_or_else(|e| e.into_inner());
    let cursor = map.entry(event.topic.to_string()).or_default();
    let mut moved = false;
    for item in &items {
        if let Some(id) = item_id(family, item) {
            moved |= cursor.advance(id.ts, &id.id);
        }
    }
    moved.then(|| event.topic.to_string())
}

/// Runs until `rx` closes, then writes what is left.
pub async fn run_writer(
    db: DatabaseConnection,
    cursors: Cursors,
    mut rx: mpsc::Receiver<Arc<Event>>,
    every: Duration,
) {
    let mut dirty = BTreeSet::new();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    if let Some(topic) = advance(&cursors, &ev) {
                        dirty.insert(topic);
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(&db, &cursors, &mut dirty).await,
        }
    }
    flush(&db, &cursors, &mut dirty).await;
}

async fn flush(db: &DatabaseConnection, cursors: &Cursors, dirty: &mut BTreeSet<String>) {
    if dirty.is_empty() {
        return;
    }
    let todo: Vec<(String, Cursor)> = {
        let map = cursors.lock().unwrap_or_else(|e| e.into_inner());
        dirty
            .iter()
            .filter_map(|t| Some((t.clone(), map.get(t)?.clone())))
            .collect()
    };
    for (topic, cursor) in todo {
        match cursors::save(db, &topic, &cursor).await {
            Ok(()) => {
                dirty.remove(&topic);
            }
            Err(error) => {
                // Kept dirty: written at the next flush.
                tracing::warn!(%error, topic, "Cannot write the catch-up cursor; retrying.");
            }
        }
    }
}
