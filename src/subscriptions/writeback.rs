//! Write-back to the `subscriptions` rows: the status Bybit gave each topic, and the time of its
//! newest event (`last_event_at`). Both run as tasks until shutdown.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{Subscriptions, TopicKey};
use crate::{event::Endpoint, event::Event, store::subscriptions as q};

/// How often a status write that failed is retried (as a full resync).
const RESYNC_EVERY: Duration = Duration::from_secs(5);

impl Subscriptions {
    /// Whether this instance writes the topics' statuses from its own registry
    /// ([`Subscriptions::follow_status`]): alone yes; in cluster mode the status is shared and
    /// each topic's owner writes it (`cluster::status`).
    pub(crate) fn writes_status(&self) -> bool {
        !self.caps.shared_status
    }

    /// Follows the registry's status changes into the rows until `shutdown`; a failed write or a
    /// lagging follower resyncs every desired topic. Started only when
    /// [`Subscriptions::writes_status`] (not in cluster mode: each topic's owner writes it).
    pub(crate) async fn follow_status(self, shutdown: CancellationToken) {
        let mut rx = self.registry.status_changes();
        let mut dirty = !self.resync().await;
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick(), if dirty => dirty = !self.resync().await,
                change = rx.recv() => match change {
                    Ok(c) => {
                        let res = q::set_status(
                            &self.db, c.key.endpoint, &c.key.topic, c.status.as_str(), c.status.message(),
                        ).await;
                        if let Err(error) = res {
                            tracing::warn!(%error, topic = %c.key.topic, "Cannot write subscription status; will retry.");
                            dirty = true;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "Status follower lagged; resyncing.");
                        dirty = !self.resync().await;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Writes every desired topic's status to its active rows; `true` when all writes succeeded.
    async fn resync(&self) -> bool {
        for view in self.registry.snapshot() {
            let (key, status) = (&view.key, &view.status);
            let res = q::set_status(
                &self.db,
                key.endpoint,
                &key.topic,
                status.as_str(),
                status.message(),
            )
            .await;
            if let Err(error) = res {
                tracing::warn!(%error, "Cannot write subscription status; will retry.");
                return false;
            }
        }
        true
    }

    /// Moves `last_event_at` of the rows forward, every `every`, from the events seen on
    /// `events`, until `shutdown`.
    pub(crate) async fn track_last_event(
        self,
        mut events: broadcast::Receiver<Arc<Event>>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        // endpoint → topic → newest receipt time; looked up by &str, so no allocation per event.
        let mut seen: HashMap<Endpoint, HashMap<String, DateTime<Utc>>> = HashMap::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.flush(&mut seen).await,
                event = events.recv() => match event {
                    Ok(event) => note(&mut seen, &event),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Topics held by services (not `/ws` clients or the pipeline file): only their rows exist.
    /// In a cluster, every topic seen: the rows may have been created on another instance.
    fn service_topics(
        &self,
        seen: &HashMap<Endpoint, HashMap<String, DateTime<Utc>>>,
    ) -> Vec<TopicKey> {
        if self.caps.shared_status {
            return seen
                .iter()
                .flat_map(|(e, topics)| topics.keys().map(|t| TopicKey::new(*e, t.clone())))
                .collect();
        }
        self.registry
            .snapshot()
            .into_iter()
            .filter(|v| v.holders.iter().any(|h| h.is_service()))
            .map(|v| v.key)
            .collect()
    }

    async fn flush(&self, seen: &mut HashMap<Endpoint, HashMap<String, DateTime<Utc>>>) {
        if seen.is_empty() {
            return;
        }
        for key in self.service_topics(seen) {
            let Some(at) = seen.get(&key.endpoint).and_then(|t| t.get(&key.topic)) else {
                continue;
            };
            if let Err(error) = q::touch_last_event(&self.db, key.endpoint, &key.topic, *at).await {
                tracing::debug!(%error, topic = %key.topic, "Cannot write last_event_at.");
                // Keep the map: the next flush retries.
                return;
            }
        }
        seen.clear();
    }
}

fn note(seen: &mut HashMap<Endpoint, HashMap<String, DateTime<Utc>>>, event: &Arc<Event>) {
    let topics = seen.entry(event.endpoint).or_default();
    match topics.get_mut(event.topic.as_str()) {
        Some(at) if *at < event.received_at => *at = event.received_at,
        Some(_) => {}
        None => {
            topics.insert(event.topic.to_string(), event.received_at);
        }
    }
}
