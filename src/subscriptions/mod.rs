//! The subscriptions wing: everything about who wants which Bybit topic, in one place.
//!
//! ```text
//! REST API ─┐                          ┌─→ registry (desired topics + version) ─→ source reconciles
//! /ws ──────┼─→ Subscriptions service ─┤
//! pipeline ─┘    (create / cancel /    └─→ queue bindings (per-service keys) ─→ RabbitMQ sink
//!  file           restore / hold)          ↑ status write-back: registry → database rows
//! ```
//!
//! - `topic`: the vocabulary, one rule each: a request ([`TopicSpec`]) → Bybit topic, a topic
//!   string → registry key (`parse_topic`), a topic → its event class (`class_of`), and the
//!   routing key of an event or a subscription (`routing_key`, also
//!   [`Event::routing_key`](crate::event::Event::routing_key)).
//! - `registry`: the desired set ([`SubscriptionRegistry`]), ref-counted by [`Requester`], with
//!   the status Bybit gave.
//! - `bindings`: the per-service queue bindings ([`QueueBindings`]) the RabbitMQ sink
//!   reconciles toward.
//! - [`Subscriptions`]: the one service the REST API, `/ws` and the pipeline file call; it also
//!   writes status and `last_event_at` back to the `subscriptions` rows (`writeback`).
//!
//! A new channel type touches `topic.rs` (and the classifier's category/symbol rules) only.

mod bindings;
mod registry;
mod requester;
mod service;
mod topic;
mod writeback;

pub use bindings::{Binding, QueueBindings};
pub use registry::{
    StatusChange, SubscriptionHandle, SubscriptionRegistry, TopicKey, TopicStatus, TopicView,
};
pub use requester::Requester;
pub(crate) use service::CreateError;
pub use service::{Capabilities, Subscriptions};
pub use topic::{ChannelType, TopicError, TopicSpec};
pub(crate) use topic::{class_of, class_pattern, parse_topic, trade_key, trade_symbol};
