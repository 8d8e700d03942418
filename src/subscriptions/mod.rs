//! The subscriptions wing: everything about who wants which Bybit topic, in one place.
//!
//! ```text
//! REST API ─┐                          ┌─→ registry (desired topics + version) ─→ source reconciles
//! /ws ──────┼─→ Subscriptions service ─┤
//! pipeline ─┘    (create / cancel /    └─→ queue bindings (per-service keys) ─→ RabbitMQ sink
//!  file           restore / hold)          ↑ status write-back: registry → database rows
//! ```
//!
//! - [`topic`]: the vocabulary, one rule each: a request ([`TopicSpec`]) → Bybit topic, a topic
//!   string → registry key ([`parse_topic`]), a topic → its event class ([`class_of`]), and the
//!   routing key of an event or a subscription ([`routing_key`]).
//! - [`registry`]: the desired set, ref-counted by [`Requester`], with the status Bybit gave.
//! - [`bindings`]: the per-service queue bindings the RabbitMQ sink reconciles toward.
//! - [`Subscriptions`]: the one service the REST API, `/ws` and the pipeline file call; it also
//!   writes status and `last_event_at` back to the `subscriptions` rows.
//!
//! A new channel type touches [`topic`] (and the classifier's category/symbol rules) only.

pub mod bindings;
pub mod registry;
mod requester;
mod service;
pub mod topic;
mod writeback;

pub use bindings::{Binding, QueueBindings};
pub use registry::{
    StatusChange, SubscriptionHandle, SubscriptionRegistry, TopicKey, TopicStatus, TopicView,
};
pub use requester::Requester;
pub use service::{Capabilities, CreateError, Subscriptions};
pub use topic::{
    ChannelType, KLINE_INTERVALS, MAX_TOPIC_LEN, ParseError, TopicError, TopicSpec, allowed_depths,
    class_of, class_pattern, parse_topic, routing_key, trade_key, trade_symbol,
};
