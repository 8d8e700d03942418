//! Public trade marks handed from a dead owner to the next one. The owner of a `publicTrade`
//! topic notes the last trade it emitted ([`Ownership::note_trade`]); `cluster::status` writes
//! the marks to the topic's lease row, one tick late (so trades still inside the pipeline at a
//! crash are fetched again rather than missed). An instance that claims the expired lease
//! inherits the mark ([`Ownership::inherit_trade`]) and its source recovers the trades since
//! then over REST, as after its own reconnect (section 10); one trade per recovered event, so a
//! consumer that drops repeats by `key` never drops a trade the dead owner did not publish.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{Held, Ownership, Unit};
use crate::{event::Endpoint, subscriptions::TopicKey};

/// An inherited mark not asked for within this long is stale (the topic was not subscribed
/// after the claim; a later tenure must not recover from it).
const INHERITED_FOR: Duration = Duration::from_secs(30);

/// A time-only mark starts this long before its tenure (clock skew between this host and
/// Bybit's trade times costs repeats, never trades).
const TENURE_MARGIN: Duration = Duration::from_secs(2);

/// The topic prefix of public trades.
const TRADE_PREFIX: &str = "publicTrade.";

/// A trade: Bybit's id and its time (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Bybit's trade id (`i`).
    pub id: String,
    /// Trade time (`T`, ms).
    pub time: u64,
}

/// The marks of one instance.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// Last trade emitted per topic on this instance's connections.
    seen: HashMap<Endpoint, HashMap<String, Mark>>,
    /// Marks inherited with claimed leases (and when), until the source asks for them.
    inherited: HashMap<TopicKey, (Instant, Mark)>,
}

impl Ownership {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.inner
            .marks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Source: the last trade emitted on `topic` (cluster mode only; no allocation once the
    /// topic is known).
    pub fn note_trade(&self, endpoint: Endpoint, topic: &str, id: &str, time: u64) {
        if !self.inner.cluster {
            return;
        }
        let mut m = self.marks();
        let topics = m.seen.entry(endpoint).or_default();
        match topics.get_mut(topic) {
            Some(mark) => {
                mark.id.clear();
                mark.id.push_str(id);
                mark.time = time;
            }
            None => {
                let mark = Mark {
                    id: id.to_owned(),
                    time,
                };
                topics.insert(topic.to_owned(), mark);
            }
        }
    }

    /// Source: `topic` is no longer subscribed here (a later tenure starts without a mark).
    pub fn forget_trade(&self, endpoint: Endpoint, topic: &str) {
        if !self.inner.cluster {
            return;
        }
        if let Some(topics) = self.marks().seen.get_mut(&endpoint) {
            topics.remove(topic);
        }
    }

    /// Source: the mark a claimed lease of `key` brought, once (a topic this instance took over
    /// from a dead owner).
    pub fn take_inherited_trade(&self, key: &TopicKey) -> Option<Mark> {
        if !self.inner.cluster {
            return None;
        }
        let (at, mark) = self.marks().inherited.remove(key)?;
        (at.elapsed() < INHERITED_FOR).then_some(mark)
    }

    /// Controller: the lease of `unit` was claimed after its owner died, with `mark` its last
    /// written trade.
    pub(crate) fn inherit_trade(&self, unit: &Unit, mark: Mark) {
        if let Unit::Topic(key) = unit {
            let mut m = self.marks();
            m.inherited
                .retain(|_, (at, _)| at.elapsed() < INHERITED_FOR);
            m.inherited.insert(key.clone(), (Instant::now(), mark));
        }
    }

    /// The last trade of every `publicTrade` topic of the units held now, with the lease's
    /// epoch: what `cluster::status` writes. A topic with no trade seen yet in this tenure gets
    /// a time-only mark (empty id): [`TENURE_MARGIN`] before its tenure began, written only
    /// where the lease has no mark at all.
    pub(crate) fn owned_trade_marks(&self) -> Vec<(Unit, u64, Mark)> {
        let held: Vec<(Unit, Held)> = {
            let s = self.read();
            if s.deadline.is_none_or(|d| Instant::now() >= d) {
                return Vec::new();
            }
            s.held
                .iter()
                .filter(|(u, _)| matches!(u, Unit::Topic(k) if k.topic.starts_with(TRADE_PREFIX)))
                .map(|(u, h)| (u.clone(), *h))
                .collect()
        };
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        let m = self.marks();
        held.into_iter()
            .map(|(unit, h)| {
                let seen = match &unit {
                    Unit::Topic(k) => m.seen.get(&k.endpoint).and_then(|t| t.get(&k.topic)),
                    Unit::Private => None,
                };
                let mark = seen.cloned().unwrap_or_else(|| {
                    let ago = h.since.elapsed() + TENURE_MARGIN;
                    let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
                    Mark {
                        id: String::new(),
                        time: now_ms.saturating_sub(ago),
                    }
                });
                (unit, h.epoch, mark)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Category;

    #[test]
    fn owned_trade_topics_have_a_mark_a_trade_or_the_tenure_start() {
        let o = Ownership::member("a");
        let linear = Endpoint::Public(Category::Linear);
        let trades = TopicKey::new(linear, "publicTrade.X");
        let tickers = TopicKey::new(linear, "tickers.X");
        let now = Instant::now();
        o.renewed(
            now,
            now + Duration::from_secs(60),
            [(Unit::of(&trades), 4), (Unit::of(&tickers), 5)].into(),
        );
        let wall = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
        // No trade yet: a time-only mark about TENURE_MARGIN before the tenure began.
        let marks = o.owned_trade_marks();
        assert_eq!(marks.len(), 1, "only publicTrade topics: {marks:?}");
        let (unit, epoch, mark) = &marks[0];
        assert_eq!((unit, *epoch), (&Unit::of(&trades), 4));
        assert!(mark.id.is_empty());
        assert!(
            mark.time <= wall - 1_900 && mark.time + 5_000 > wall,
            "{mark:?}"
        );
        o.note_trade(linear, "publicTrade.X", "17", 123);
        assert_eq!(
            o.owned_trade_marks()[0].2,
            Mark {
                id: "17".into(),
                time: 123
            }
        );
        o.forget_trade(linear, "publicTrade.X");
        assert!(o.owned_trade_marks()[0].2.id.is_empty());
    }

    #[test]
    fn an_inherited_mark_is_taken_once_and_only_in_a_cluster() {
        let key = TopicKey::new(Endpoint::Public(Category::Spot), "publicTrade.Y");
        let mark = Mark {
            id: "9".into(),
            time: 1,
        };
        let o = Ownership::member("a");
        o.inherit_trade(&Unit::of(&key), mark.clone());
        o.inherit_trade(&Unit::Private, mark.clone());
        assert_eq!(o.take_inherited_trade(&key), Some(mark.clone()));
        assert_eq!(o.take_inherited_trade(&key), None);
        let solo = Ownership::solo("s");
        solo.note_trade(key.endpoint, &key.topic, "1", 1);
        assert!(solo.owned_trade_marks().is_empty());
        assert_eq!(solo.take_inherited_trade(&key), None);
    }
}
