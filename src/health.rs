//! The health board: each component writes its own state here, `/health` and `/ready` read it.
//!
//! Writers are the Bybit connections (one row per connection), the publish sink (broker) and the
//! database sink. Reads take a consistent copy; nothing here is on the per-frame path except
//! [`HealthBoard::heartbeat`], which is a single atomic-free mutex write per pong.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// State of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Not configured (no broker URL): neither healthy nor a fault.
    Disabled,
    /// Starting, not yet known.
    Connecting,
    Up,
    Down,
}

/// One Bybit connection as the health endpoints show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionHealth {
    /// `linear`, `spot`, …, `private`.
    pub endpoint: String,
    /// Shard number within the endpoint.
    pub shard: usize,
    pub state: ComponentState,
    /// Topics acknowledged on this connection.
    pub active_topics: usize,
    /// Time of the last pong.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Why it is down, when it is.
    pub last_error: Option<String>,
    /// Connect attempts (WebSocket connects, each taking a connect token) since start.
    pub connect_attempts: u64,
}

#[derive(Debug)]
struct Inner {
    connections: BTreeMap<(String, usize), ConnectionHealth>,
    broker: ComponentState,
    database: ComponentState,
}

/// Shared component states.
#[derive(Debug)]
pub struct HealthBoard {
    inner: Mutex<Inner>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                connections: BTreeMap::new(),
                broker: ComponentState::Disabled,
                database: ComponentState::Connecting,
            }),
        }
    }
}

/// A copy of the board at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    pub connections: Vec<ConnectionHealth>,
    pub broker: ComponentState,
    pub database: ComponentState,
    /// The most recent pong on any connection.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

impl HealthSnapshot {
    /// True when every connection the gateway holds is up (and there is at least one).
    pub fn websocket_connected(&self) -> bool {
        !self.connections.is_empty()
            && self
                .connections
                .iter()
                .all(|c| c.state == ComponentState::Up)
    }
}

impl HealthBoard {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces a connection's row.
    pub fn set_connection(&self, row: ConnectionHealth) {
        self.lock()
            .connections
            .insert((row.endpoint.clone(), row.shard), row);
    }

    /// Updates a connection's row in place; creates it first if missing.
    pub fn update_connection(
        &self,
        endpoint: &str,
        shard: usize,
        f: impl FnOnce(&mut ConnectionHealth),
    ) {
        let mut inner = self.lock();
        let row = inner
            .connections
            .entry((endpoint.to_owned(), shard))
            .or_insert_with(|| ConnectionHealth {
                endpoint: endpoint.to_owned(),
                shard,
                state: ComponentState::Connecting,
                active_topics: 0,
                last_heartbeat_at: None,
                last_error: None,
                connect_attempts: 0,
            });
        f(row);
    }

    /// A connection that no longer exists (shard retired).
    pub fn remove_connection(&self, endpoint: &str, shard: usize) {
        self.lock()
            .connections
            .remove(&(endpoint.to_owned(), shard));
    }

    /// Records a pong.
    pub fn heartbeat(&self, endpoint: &str, shard: usize, at: DateTime<Utc>) {
        self.update_connection(endpoint, shard, |row| row.last_heartbeat_at = Some(at));
    }

    /// Broker state, written by the publish sink.
    pub fn set_broker(&self, state: ComponentState) {
        self.lock().broker = state;
    }

    /// Database state, written by the persistence sink and the store.
    pub fn set_database(&self, state: ComponentState) {
        self.lock().database = state;
    }

    /// A consistent copy.
    pub fn snapshot(&self) -> HealthSnapshot {
        let inner = self.lock();
        let connections: Vec<_> = inner.connections.values().cloned().collect();
        let last_heartbeat_at = connections.iter().filter_map(|c| c.last_heartbeat_at).max();
        HealthSnapshot {
            connections,
            broker: inner.broker,
            database: inner.database,
            last_heartbeat_at,
        }
    }
}
