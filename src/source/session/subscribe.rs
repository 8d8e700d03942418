//! The subscription side of a session: reconciling toward the desired topics, matching acks,
//! and resubscribing one order book after a gap.

use std::collections::BTreeSet;

use tokio::time::{Duration, Instant};

use super::Session;
use crate::{
    event::{Category, Endpoint},
    health::ComponentState,
    source::reconcile::Request,
    subscriptions::{TopicKey, TopicStatus},
    telemetry,
    wire::{self, Ack},
};

impl Session<'_> {
    pub(super) async fn send_requests(&mut self, requests: Vec<Request>) {
        for r in requests {
            tracing::debug!(endpoint = self.label(), req_id = %r.req_id, op = r.op.as_str(),
                topics = r.topics.len(), "Sending a Bybit request.");
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
        let want: BTreeSet<String> = self
            .ctx
            .topics
            .borrow()
            .iter()
            .filter(|t| {
                let key = TopicKey::new(self.ctx.endpoint, (*t).clone());
                !matches!(self.ctx.registry.status(&key), Some(TopicStatus::Failed(_)))
                    || failed_retry_due(
                        self.ctx.failed_at.get(*t).copied(),
                        now,
                        self.ctx.config.failed_retry,
                    )
            })
            .cloned()
            .collect();
        let per = if self.ctx.endpoint == Endpoint::Public(Category::Spot) {
            self.ctx.config.spot_args_per_request
        } else {
            self.ctx.config.args_per_request
        };
        let requests = self.ledger.plan(&want, per, Instant::now());
        self.send_requests(requests).await;
    }

    pub(super) fn status(&self, topic: &str, status: TopicStatus) {
        self.ctx
            .registry
            .set_status(&TopicKey::new(self.ctx.endpoint, topic), status);
    }

    pub(super) async fn ack(&mut self, ack: &Ack) {
        let Some(out) = self.ledger.on_ack(ack) else {
            tracing::debug!(endpoint = self.label(), req_id = ?ack.req_id, "Ack for no request of ours.");
            return;
        };
        self.healthy = true;
        for t in &out.activated {
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
            self.ctx.failed_at.insert(t.clone(), Instant::now());
            self.status(t, TopicStatus::Failed(msg.clone()));
        }
        for t in &out.unsubscribed {
            if !self.books.is_resyncing(t) {
                self.books.forget(t);
                self.last_seen.remove(t);
            }
        }
        let active = self.ledger.confirmed().len();
        self.ctx
            .health
            .update_connection(self.label(), self.ctx.shard, |r| r.active_topics = active);
        // Retried topics go out again, and a topic released while its subscribe was in
        // flight is unsubscribed now that it is confirmed.
        self.reconcile().await;
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

/// Whether a `failed` topic may be subscribed again: it failed at least `every` ago (or its
/// failure time is unknown, e.g. it failed on an earlier shard). Reconciles run on connect,
/// on a topic change (a re-post) and after acks, so a rejected topic is retried at most once
/// per `every`, never in a loop.
pub(crate) fn failed_retry_due(failed_at: Option<Instant>, now: Instant, every: Duration) -> bool {
    failed_at.is_none_or(|at| now.saturating_duration_since(at) >= every)
}

#[cfg(test)]
mod failed_retry_tests {
    use super::*;

    #[test]
    fn a_failed_topic_is_retried_only_after_the_long_backoff() {
        let every = crate::pipeline_file::SourceConfig::default().failed_retry;
        assert_eq!(
            every,
            Duration::from_secs(300),
            "default [source] failed_retry"
        );
        let at = Instant::now();
        assert!(!failed_retry_due(Some(at), at, every));
        assert!(!failed_retry_due(
            Some(at),
            at + Duration::from_secs(299),
            every
        ));
        assert!(failed_retry_due(Some(at), at + every, every));
        assert!(failed_retry_due(None, at, every));
        let file =
            crate::pipeline_file::PipelineFile::parse("[source]\nfailed_retry = \"2m\"\n").unwrap();
        assert_eq!(file.source.failed_retry, Duration::from_secs(120));
    }
}
