//! What the relay relays: the topics `/ws` clients of this instance hold and another instance
//! owns ([`relay_set`], kept current by [`follow`]), and the filter an envelope passes
//! ([`Wanted`], by the (endpoint, topic) it came from: one routing key may carry several
//! topics).

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::Ownership,
    event::{Endpoint, Event},
    subscriptions::{Requester, SubscriptionHandle, TopicKey},
};

/// The topics to relay now: those a `/ws` client of this instance holds in `registry` and that
/// `owns` says another instance publishes.
pub fn relay_set(
    registry: &SubscriptionHandle,
    owns: impl Fn(&TopicKey) -> bool,
) -> BTreeSet<TopicKey> {
    registry
        .snapshot()
        .into_iter()
        .filter(|t| {
            t.holders
                .iter()
                .any(|h| matches!(h, Requester::WsClient(_)))
        })
        .filter(|t| !owns(&t.key))
        .map(|t| t.key)
        .collect()
}

/// Keeps `out` at [`relay_set`] of `registry` and `ownership` (recomputed whenever the desired
/// set or the owned set changes) until `shutdown`; the relay's input.
pub async fn follow(
    registry: SubscriptionHandle,
    ownership: Ownership,
    out: watch::Sender<BTreeSet<TopicKey>>,
    shutdown: CancellationToken,
) {
    // Holders, not just the desired set: a `/ws` client may take a topic that is desired already.
    let mut desired = registry.holder_changes();
    let mut owned = ownership.changes();
    loop {
        desired.borrow_and_update();
        owned.borrow_and_update();
        let set = relay_set(&registry, |k| ownership.owns(k));
        out.send_if_modified(|cur| {
            let changed = *cur != set;
            if changed {
                *cur = set;
            }
            changed
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = desired.changed() => if r.is_err() { break },
            r = owned.changed() => if r.is_err() { break },
        }
    }
}

/// The relayed topics, as the filter reads them: endpoint → topics.
#[derive(Debug, Default)]
pub(super) struct Wanted(HashMap<Endpoint, HashSet<String>>);

impl Wanted {
    pub(super) fn of(topics: &BTreeSet<TopicKey>) -> Self {
        let mut map: HashMap<Endpoint, HashSet<String>> = HashMap::new();
        for t in topics {
            map.entry(t.endpoint).or_default().insert(t.topic.clone());
        }
        Self(map)
    }

    pub(super) fn contains(&self, endpoint: Endpoint, topic: &str) -> bool {
        self.0.get(&endpoint).is_some_and(|s| s.contains(topic))
    }
}

/// The endpoint an envelope came from, from its routing key: `<class>.private` for the
/// private endpoint (and private classes), `<class>.<category>[.<symbol>]` for the public
/// ones, whose category the envelope names.
pub(super) fn endpoint_of(routing_key: &str, event: &Event) -> Option<Endpoint> {
    let private = routing_key
        .split_once('.')
        .is_some_and(|(_, rest)| rest == "private");
    if private || event.class.is_private() {
        Some(Endpoint::Private)
    } else {
        event.category.map(Endpoint::Public)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::pipeline::{classify::classify, decode::decode, enrich::Enricher};
    use crate::{event::RawFrame, subscriptions::TopicKey};

    fn event_of(endpoint: Endpoint, text: &str) -> Event {
        let frame = RawFrame::parse(endpoint, 1, text.trim_end().to_owned()).expect("a data frame");
        Enricher::default().enrich(classify(decode(frame)))
    }

    #[test]
    fn the_relay_set_is_what_ws_clients_hold_and_another_instance_owns() {
        use crate::subscriptions::SubscriptionRegistry;
        let registry = SubscriptionRegistry::new_handle();
        let lin = Endpoint::Public(crate::event::Category::Linear);
        let (a, b, c) = (
            TopicKey::new(lin, "publicTrade.A"),
            TopicKey::new(lin, "publicTrade.B"),
            TopicKey::new(lin, "publicTrade.C"),
        );
        registry.acquire(&a, Requester::WsClient(1));
        registry.acquire(&b, Requester::WsClient(2));
        registry.acquire(&c, Requester::Service("svc".into()));
        let set = relay_set(&registry, |k| k == &b);
        assert_eq!(
            set,
            BTreeSet::from([a.clone()]),
            "b is ours, c no /ws client holds"
        );
        assert!(
            relay_set(&registry, |_| true).is_empty(),
            "a solo instance relays nothing"
        );
        registry.release(&a, Requester::WsClient(1));
        assert!(relay_set(&registry, |_| false).contains(&b));
        assert!(!relay_set(&registry, |_| false).contains(&a));
    }

    #[test]
    fn a_topic_keys_routing_key_is_its_events_and_the_envelope_reads_back() {
        use crate::event::Category::*;
        let cases: [(Endpoint, &str); 8] = [
            (
                Endpoint::Public(Linear),
                include_str!("../../../tests/fixtures/bybit/linear_publicTrade.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../../tests/fixtures/bybit/linear_orderbook_50_delta.json"),
            ),
            (
                Endpoint::Public(Spot),
                include_str!("../../../tests/fixtures/bybit/spot_orderbook_1_snapshot.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../../tests/fixtures/bybit/linear_tickers_snapshot.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../../tests/fixtures/bybit/kline.json"),
            ),
            (
                Endpoint::Public(Option),
                include_str!("../../../tests/fixtures/bybit/option_publicTrade.json"),
            ),
            (
                Endpoint::Private,
                include_str!("../../../tests/fixtures/bybit/order_linear.json"),
            ),
            (
                Endpoint::Private,
                include_str!("../../../tests/fixtures/bybit/execution.json"),
            ),
        ];
        for (endpoint, text) in cases {
            let ev = event_of(endpoint, text);
            let key = TopicKey::new(endpoint, ev.topic.as_str());
            assert_eq!(key.routing_key(), ev.routing_key(), "{}", ev.topic);
            let back = Event::from_envelope(Endpoint::Private, ev.json.clone()).expect("envelope");
            assert_eq!(
                endpoint_of(&ev.routing_key(), &back),
                Some(endpoint),
                "{}",
                ev.topic
            );
            assert_eq!(back.topic, ev.topic);
            assert_eq!(back.key(), ev.key());
            assert_eq!(back.data(), ev.data());
            assert_eq!((back.id, back.seq, back.class), (ev.id, ev.seq, ev.class));
            assert_eq!(back.trace_id, ev.trace_id);
        }
        assert!(
            Event::from_envelope(Endpoint::Private, Bytes::from_static(b"{\"x\":1}")).is_none()
        );
        assert!(Event::from_envelope(Endpoint::Private, Bytes::from_static(b"\xff")).is_none());
    }
}
