//! What a lease covers, and how units and topics are named in the cluster tables.
//!
//! [`Unit`] is one public topic or the whole private stream; [`Unit::name`] / [`Unit::parse`]
//! are its text in `cluster_leases.unit`, and [`key_name`] / [`parse_key`] a topic's text in
//! `cluster_desired.unit`. [`UnitCache`] keeps each topic's unit for the publisher, so deciding
//! an event allocates nothing. Used by [`super::Ownership`], the controller, the store and the API.

use std::collections::HashMap;

use crate::{
    event::{Category, Endpoint, SharedStr},
    subscriptions::TopicKey,
};

/// What one upstream lease covers: one public topic, or the whole private stream (one unit, so
/// one instance authenticates and catches up).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// A public topic on its category's endpoint.
    Topic(TopicKey),
    /// Every private topic.
    Private,
}

impl Unit {
    /// The unit `key` belongs to.
    pub fn of(key: &TopicKey) -> Self {
        match key.endpoint {
            Endpoint::Private => Self::Private,
            Endpoint::Public(_) => Self::Topic(key.clone()),
        }
    }

    /// The name of the unit in `cluster_leases.unit`: `private`, or `<category>|<topic>`.
    pub fn name(&self) -> String {
        match self {
            Self::Private => "private".to_owned(),
            Self::Topic(k) => key_name(k),
        }
    }

    /// Reads [`Unit::name`] back; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        if name == "private" {
            return Some(Self::Private);
        }
        match parse_key(name)? {
            k if k.endpoint == Endpoint::Private => None,
            k => Some(Self::Topic(k)),
        }
    }
}

/// Each topic's unit, kept by the publisher so that deciding an event allocates nothing (a
/// topic's text is shared, so a lookup clones a reference count). Bounded: cleared past
/// [`UnitCache::MAX`] topics.
#[derive(Debug, Default)]
pub struct UnitCache(HashMap<(Endpoint, SharedStr), Unit>);

impl UnitCache {
    /// Topics kept at most.
    pub const MAX: usize = 65_536;

    /// The unit of `topic` on `endpoint`.
    pub fn get(&mut self, endpoint: Endpoint, topic: &SharedStr) -> &Unit {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0
            .entry((endpoint, topic.clone()))
            .or_insert_with(|| Unit::of(&TopicKey::new(endpoint, topic.as_str())))
    }
}

/// A topic key as stored in `cluster_desired.unit`: `<category or private>|<topic>`.
pub fn key_name(key: &TopicKey) -> String {
    format!("{}|{}", key.endpoint.label(), key.topic)
}

/// Reads [`key_name`] back.
pub fn parse_key(name: &str) -> Option<TopicKey> {
    let (endpoint, topic) = name.split_once('|')?;
    let endpoint = match endpoint {
        "private" => Endpoint::Private,
        c => Endpoint::Public(c.parse::<Category>().ok()?),
    };
    (!topic.is_empty()).then(|| TopicKey::new(endpoint, topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let k = TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT");
        assert_eq!(Unit::parse(&Unit::of(&k).name()), Some(Unit::of(&k)));
        assert_eq!(Unit::parse("private"), Some(Unit::Private));
        assert_eq!(Unit::parse("moon|x"), None);
        let p = TopicKey::new(Endpoint::Private, "order");
        assert_eq!(parse_key(&key_name(&p)), Some(p));
    }
}
