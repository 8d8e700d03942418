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
pub type Cursors = Arc<Mutex<CursorState>>;

/// The cursors in memory, and the catch-ups not finished yet.
#[derive(Debug, Default)]
pub struct CursorState {
    /// Advanced by broker confirms only, never back.
    pub confirmed: BTreeMap<String, Cursor>,
    /// Per topic, a catch-up not finished yet (connection id, the time it fetches from): what
    /// is persisted stays at that time until it succeeds, so a crash during a gap (REST down)
    /// fetches the gap again at the next start instead of skipping it.
    holds: BTreeMap<String, (u64, i64)>,
    /// Per held topic whose catch-up has published its recovered events, the keys of those not
    /// yet confirmed: the hold ends with the last confirm, so live confirms cannot carry the
    /// persisted cursor past recovered events the broker does not have yet.
    waiting: BTreeMap<String, BTreeSet<String>>,
}

impl CursorState {
    /// The start of a catch-up of `topic` for connection `conn`: the confirmed cursor (or
    /// `default_from` when there is none), or an unfinished catch-up's start when older.
    /// Holds the persisted cursor there until [`CursorState::release`].
    pub fn begin(&mut self, topic: &str, conn: u64, default_from: i64) -> Cursor {
        let mut start = self.confirmed.get(topic).cloned().unwrap_or(Cursor {
            ts: default_from,
            ids: BTreeSet::new(),
        });
        if let Some((_, held)) = self.holds.get(topic)
            && *held < start.ts
        {
            start = Cursor {
                ts: *held,
                ids: BTreeSet::new(),
            };
        }
        self.holds.insert(topic.to_owned(), (conn, start.ts));
        self.waiting.remove(topic);
        start
    }

    /// The catch-up of `topic` for `conn` published the recovered events `keys`: the hold ends
    /// once the broker confirmed all of them (at once when there are none).
    pub fn release_when_confirmed(&mut self, topic: &str, conn: u64, keys: BTreeSet<String>) {
        if keys.is_empty() {
            self.release(topic, conn);
        } else if self.holds.get(topic).is_some_and(|(c, _)| *c == conn) {
            self.waiting.insert(topic.to_owned(), keys);
        }
    }

    /// A recovered event of `topic` with `key` was confirmed.
    fn confirmed_recovered(&mut self, topic: &str, key: &str) {
        if let Some(keys) = self.waiting.get_mut(topic) {
            keys.remove(key);
            if keys.is_empty() {
                self.waiting.remove(topic);
                self.holds.remove(topic);
            }
        }
    }

    /// The catch-up of `topic` for `conn` succeeded.
    pub fn release(&mut self, topic: &str, conn: u64) {
        if self.holds.get(topic).is_some_and(|(c, _)| *c == conn) {
            self.holds.remove(topic);
            self.waiting.remove(topic);
        }
    }

    /// What may be written for `topic` now: the confirmed cursor, kept at an unfinished
    /// catch-up's start.
    pub fn persistable(&self, topic: &str) -> Option<Cursor> {
        let c = self.confirmed.get(topic)?;
        match self.holds.get(topic) {
            Some((_, held)) if c.ts > *held => Some(Cursor {
                ts: *held,
                ids: BTreeSet::new(),
            }),
            _ => Some(c.clone()),
        }
    }
}

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
    Arc::new(Mutex::new(CursorState {
        confirmed: map,
        ..CursorState::default()
    }))
}

/// Advances `cursors` with the items of a confirmed event; returns the topic when it moved.
pub fn advance(cursors: &Cursors, event: &Event) -> Option<String> {
    let family = Family::of(&event.topic).filter(|f| f.has_cursor())?;
    let items: Vec<Value> = serde_json::from_slice(event.data()).ok()?;
    let mut state = cursors.lock().unwrap_or_else(|e| e.into_inner());
    if event.recovered() {
        state.confirmed_recovered(&event.topic, event.key());
    }
    let cursor = state.confirmed.entry(event.topic.to_string()).or_default();
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
    ownership: crate::cluster::Ownership,
) {
    let mut written: BTreeMap<String, Cursor> = {
        let state = cursors.lock().unwrap_or_else(|e| e.into_inner());
        state.confirmed.clone()
    };
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    advance(&cursors, &ev);
                }
                None => break,
            },
            _ = tick.tick() => flush(&db, &cursors, &mut written, &ownership).await,
        }
    }
    flush(&db, &cursors, &mut written, &ownership).await;
}

/// Writes every cursor whose persistable value changed since it was last written.
///
/// In a cluster only the holder of the private lease writes, fenced by its epoch in the
/// statement: a fenced instance never moves the shared cursor past what the new owner has.
async fn flush(
    db: &DatabaseConnection,
    cursors: &Cursors,
    written: &mut BTreeMap<String, Cursor>,
    ownership: &crate::cluster::Ownership,
) {
    let fence = if ownership.is_cluster() {
        match ownership.owned().get(&crate::cluster::Unit::Private) {
            Some(epoch) => Some(*epoch),
            None => return,
        }
    } else {
        None
    };
    let todo: Vec<(String, Cursor)> = {
        let state = cursors.lock().unwrap_or_else(|e| e.into_inner());
        state
            .confirmed
            .keys()
            .filter_map(|t| Some((t.clone(), state.persistable(t)?)))
            .filter(|(t, c)| written.get(t) != Some(c))
            .collect()
    };
    for (topic, cursor) in todo {
        let saved = match fence {
            None => cursors::save(db, &topic, &cursor).await.map(|()| true),
            Some(epoch) => {
                cursors::save_fenced(db, &topic, &cursor, ownership.instance_id(), epoch).await
            }
        };
        match saved {
            Ok(true) => {
                written.insert(topic, cursor);
            }
            Ok(false) => {
                tracing::debug!(topic, "Catch-up cursor not written: fenced, or older.");
            }
            Err(error) => {
                // Written at the next flush.
                tracing::warn!(%error, topic, "Cannot write the catch-up cursor; retrying.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_catch_up_keeps_the_persisted_cursor_at_its_start() {
        let mut state = CursorState::default();
        // No cursor yet: the catch-up starts at the default.
        assert_eq!(state.begin("execution", 1, 100).ts, 100);
        state
            .confirmed
            .entry("execution".into())
            .or_default()
            .advance(150, "x");
        assert_eq!(state.persistable("execution").unwrap().ts, 100, "held");
        // A newer connection starts no later than the unfinished one.
        assert_eq!(state.begin("execution", 2, 100).ts, 100);
        state.release("execution", 1);
        assert_eq!(state.persistable("execution").unwrap().ts, 100, "not ours");
        state.release("execution", 2);
        let c = state.persistable("execution").unwrap();
        assert_eq!((c.ts, c.ids.len()), (150, 1));
        // With a cursor, a catch-up starts there (ids included).
        let start = state.begin("execution", 3, 100);
        assert_eq!((start.ts, start.ids.len()), (150, 1));
    }

    #[test]
    fn a_hold_ends_only_when_every_recovered_event_is_confirmed() {
        let mut state = CursorState::default();
        state.begin("execution", 1, 100);
        let keys = ["execution:a", "execution:b"].map(String::from).into();
        state.release_when_confirmed("execution", 1, keys);
        state
            .confirmed
            .entry("execution".into())
            .or_default()
            .advance(300, "live");
        state.confirmed_recovered("execution", "execution:a");
        assert_eq!(
            state.persistable("execution").unwrap().ts,
            100,
            "b unconfirmed"
        );
        state.confirmed_recovered("execution", "execution:b");
        assert_eq!(state.persistable("execution").unwrap().ts, 300);
        // Nothing recovered: released at once.
        state.begin("order", 2, 50);
        state.release_when_confirmed("order", 2, BTreeSet::new());
        assert!(state.holds.is_empty() && state.waiting.is_empty());
    }
}
