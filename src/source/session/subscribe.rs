//! The subscription side of a session: reconciling toward the desired topics, matching acks,
//! and resubscribing one order book after a gap.

use std::collections::BTreeSet;

use tokio::time::{Duration, Instant};

use super::Session;
use crate::{
    event::{Category, Endpoint},
    health::ComponentState,
    source::{link::FailedTopic, reconcile::Request},
    subscriptions::{TopicKey, TopicStatus},
    telemetry,
    wire::{self, Ack},
};

impl Session<'_> {
    pub(super) async fn send_requests(&mut self, requests: Vec<Request>) {
        for r in requests {
            tracing::debug!(endpoint = self.label(), req_id = %r.req_id, op = r.op.as_str(),
                topics = ?r.topics, "Sending a Bybit request.");
            self.send(wire::topics_request(&r.req_id, r.op.as_str(), &r.topics))
                .await;
        }
    }

    pub(super) async fn up(&mut self) {
        self.ctx.set_state(ComponentState::Up, None);
        tracing::info!(
            endpoint = self.label(),
            shard = self.ctx.shard,
            connection_id = self.id,
            "Connected to Bybit."
        );
        self.reconcile().await;
    }

    /// Subscribes what is wanted and not confirmed, unsubscribes what no one wants.
    pub(super) async fn reconcile(&mut self) {
        if (self.ctx.endpoint == Endpoint::Private && !self.authed)
            || self.retry_at.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        self.retry_at = None;
        let now = Instant::now();
        let (first, cap) = (
            self.ctx.config.failed_retry,
            self.ctx.config.failed_retry_max,
        );
        let topics: Vec<String> = self.ctx.topics.borrow().iter().cloned().collect();
        let mut want = BTreeSet::new();
        for t in topics {
            let key = TopicKey::new(self.ctx.endpoint, t.clone());
            if matches!(self.ctx.registry.status(&key), Some(TopicStatus::Failed(_))) {
                let failed = self.ctx.failed_at.get(&t).copied();
                if !failed_retry_due(failed, now, first, cap) {
                    continue;
                }
                // Tried again: pending until Bybit answers (the ack decides).
                if !self.ledger.confirmed().contains(&t) {
                    tracing::info!(endpoint = self.label(), topic = %t,
                        failures = failed.map_or(0, |f| f.failures),
                        "Subscribing a failed topic again.");
                    self.ctx.registry.set_status(&key, TopicStatus::Pending);
                }
            }
            want.insert(t);
        }
        // Forget failures of topics this shard no longer has, once their backoff is over
        // (a release and re-post inside it must not reset the backoff).
        self.ctx
            .failed_at
            .retain(|t, f| !f.due(now, first, cap) || self.ctx.topics.borrow().contains(t));
        let per = if self.ctx.endpoint == Endpoint::Public(Category::Spot) {
            self.ctx.config.spot_args_per_request
        } else {
            self.ctx.config.args_per_request
        };
        let requests = self.ledger.plan(&want, per, Instant::now());
        self.send_requests(requests).await;
    }

    pub(super) fn status(&self, topic: &str, status: TopicStatus) {
        let key = TopicKey::new(self.ctx.endpoint, topic);
        self.ctx.ownership.note_status(&key, &status);
        self.ctx.registry.set_status(&key, status);
    }

    pub(super) async fn ack(&mut self, ack: &Ack) {
        let Some(out) = self.ledger.on_ack(ack) else {
            tracing::debug!(endpoint = self.label(), req_id = ?ack.req_id, "Ack for no request of ours.");
            return;
        };
        self.healthy = true;
        for t in &out.activated {
            self.ctx.failed_at.remove(t);
            self.trade_acked(t);
            if !self.books.is_resyncing(t) {
                self.status(t, TopicStatus::Active);
            }
        }
        if !out.activated.is_empty() {
            self.sub_backoff.reset();
        }
        for (t, msg) in &out.failed {
            metrics::counter!(telemetry::SUBSCRIBE_FAILURES, "endpoint" => self.label())
                .increment(1);
            tracing::warn!(endpoint = self.label(), topic = %t, ret_msg = %msg, "Bybit rejected a subscription.");
            let failures = self.ctx.failed_at.get(t).map_or(0, |f| f.failures) + 1;
            let failed = FailedTopic {
                at: Instant::now(),
                failures,
            };
            let retry_in = failed.backoff(
                self.ctx.config.failed_retry,
                self.ctx.config.failed_retry_max,
            );
            tracing::info!(endpoint = self.label(), topic = %t, failures, ?retry_in,
                "A failed topic is tried again after a reconnect or a re-post once this has passed.");
            self.ctx.failed_at.insert(t.clone(), failed);
            self.status(t, TopicStatus::Failed(msg.clone()));
        }
        for t in &out.unsubscribed {
            if !self.books.is_resyncing(t) {
                let key = TopicKey::new(self.ctx.endpoint, t.as_str());
                self.ctx.ownership.note_upstream(&key, false);
                self.ctx.ownership.forget_trade(self.ctx.endpoint, t);
                self.books.forget(t);
                self.last_seen.remove(t);
            }
            self.ctx.trade_marks.forget(t);
        }
        let active = self.ledger.confirmed().len();
        self.ctx
            .health
            .update_connection(self.label(), self.ctx.shard, |r| r.active_topics = active);
        // Retried topics go out again, and a topic released while its subscribe was in
        // flight is unsubscribed now that it is confirmed.
        self.reconcile().await;
        self.maybe_start_catchup();
    }

    pub(super) async fn gap(&mut self, topic: &str, expected: u64, got: u64) {
        let category = self
            .ctx
            .endpoint
            .category()
            .map_or("private", Category::as_str);
        metrics::counter!(telemetry::ORDERBOOK_GAPS, "category" => category).increment(1);
        metrics::counter!(telemetry::ORDERBOOK_RESYNCS, "category" => category).increment(1);
        tracing::warn!(
            endpoint = self.label(),
            topic,
            expected,
            got,
            "Order-book gap; resubscribing the topic for a fresh snapshot."
        );
        self.status(topic, TopicStatus::Resyncing);
        let requests = self.ledger.resync(topic, Instant::now());
        self.send_requests(requests).await;
    }
}

/// Whether a `failed` topic may be subscribed again: its backoff (`first`, doubling with each
/// failure in a row, capped at `cap`) has passed since it last failed, or its failure is
/// unknown here (e.g. it failed on an earlier shard). Reconciles run on connect, on a topic
/// change (a re-post) and after acks, so a rejected topic is retried at most once per backoff,
/// never in a loop.
pub(crate) fn failed_retry_due(
    failed: Option<FailedTopic>,
    now: Instant,
    first: Duration,
    cap: Duration,
) -> bool {
    failed.is_none_or(|f| f.due(now, first, cap))
}

#[cfg(test)]
mod failed_retry_tests {
    use super::*;

    #[test]
    fn a_failed_topic_is_retried_only_after_the_long_backoff() {
        let config = crate::pipeline_file::SourceConfig::default();
        let (every, cap) = (config.failed_retry, config.failed_retry_max);
        assert_eq!(
            (every, cap),
            (Duration::from_secs(300), Duration::from_secs(3600)),
            "default [source] failed_retry, failed_retry_max"
        );
        let at = Instant::now();
        let once = Some(FailedTopic { at, failures: 1 });
        assert!(!failed_retry_due(once, at, every, cap));
        assert!(!failed_retry_due(
            once,
            at + Duration::from_secs(299),
            every,
            cap
        ));
        assert!(failed_retry_due(once, at + every, every, cap));
        assert!(failed_retry_due(None, at, every, cap));
        let file = crate::pipeline_file::PipelineFile::parse(
            "[source]\nfailed_retry = \"2m\"\nfailed_retry_max = \"30m\"\n",
        )
        .unwrap();
        assert_eq!(file.source.failed_retry, Duration::from_secs(120));
        assert_eq!(file.source.failed_retry_max, Duration::from_secs(1800));
    }

    #[test]
    fn the_failed_topic_backoff_doubles_per_failure_up_to_its_cap() {
        let (first, cap) = (Duration::from_secs(300), Duration::from_secs(3600));
        let at = Instant::now();
        let waits: Vec<u64> = (1..=8)
            .map(|failures| FailedTopic { at, failures }.backoff(first, cap).as_secs())
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600, 3600, 3600]);
        let many = FailedTopic {
            at,
            failures: u32::MAX,
        };
        assert_eq!(many.backoff(first, cap), cap);
    }
}
