//! The broker topology of spec section 4, declared after every (re)connect:
//! exchange `<prefix>.events` (topic, durable); class queues `<prefix>.<class>` bound with
//! `<class>.#`; per-service queues `<prefix>.<class>.<service>` bound with exactly the routing
//! keys of [`QueueBindings`](crate::subscriptions::QueueBindings). Every queue is durable with
//! `x-max-length=100000`, `x-message-ttl=86400000` (24 h) and `x-overflow=drop-head`, of the
//! type the pipeline file gives its class (`[classes.<class>] queue_type`, classic by default);
//! a class with a `stream` also gets `<prefix>.<class>.stream` bound like its class queue.
//! Declares go over a channel of their own ([`Declarer`]) so a refusal never closes the publish
//! channel.
//!
//! This module names the exchange and queues and gives each queue kind its arguments;
//! `declare.rs` declares them on the broker ([`Declarer`], [`reconcile`]).

mod declare;

use amqprs::{FieldTable, FieldValue};

pub use declare::{Declared, Declarer, Mismatch, reconcile};

use crate::{
    event::EventClass,
    pipeline_file::{QueueType, StreamConfig},
};

/// Longest AMQP short string (queue names, routing keys); amqprs panics past it.
pub const MAX_SHORT_STR: usize = 255;

/// `<prefix>.events`.
pub fn exchange_name(prefix: &str) -> String {
    format!("{prefix}.events")
}

/// `<prefix>.<class>`.
pub fn class_queue(prefix: &str, class: EventClass) -> String {
    format!("{prefix}.{class}")
}

/// `<prefix>.<class>.<service>`.
pub fn service_queue(prefix: &str, class: EventClass, service: &str) -> String {
    format!("{prefix}.{class}.{service}")
}

/// What a queue is on the broker: the class's `queue_type`, or the class's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// A classic queue (lives on one node).
    Classic,
    /// A quorum queue (replicated).
    Quorum,
    /// A stream (append-only log, read from any offset), with its retention.
    Stream {
        /// `x-max-age` in seconds.
        max_age_secs: Option<u64>,
        /// `x-max-length-bytes`.
        max_bytes: Option<u64>,
    },
}

impl QueueKind {
    /// The kind of a class's queues.
    pub fn of(queue_type: QueueType) -> Self {
        match queue_type {
            QueueType::Classic => Self::Classic,
            QueueType::Quorum => Self::Quorum,
        }
    }

    /// The kind of a class's stream.
    pub fn stream(config: &StreamConfig) -> Self {
        Self::Stream {
            max_age_secs: config.max_age.map(|d| d.as_secs().max(1)),
            max_bytes: config.max_bytes,
        }
    }

    /// `classic`, `quorum` or `stream`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
            Self::Stream { .. } => "stream",
        }
    }
}

/// The spec's queue limits and which queue types accept each (RabbitMQ 3.10+: quorum queues
/// take `x-max-length`, `x-message-ttl` (since 3.10) and `x-overflow=drop-head`; streams take
/// none of them, their retention is `x-max-age` / `x-max-length-bytes`).
const LIMITS: [(&str, Limit, bool, bool); 3] = [
    // (argument, value, classic, quorum)
    ("x-max-length", Limit::Long(100_000), true, true),
    ("x-message-ttl", Limit::Long(86_400_000), true, true),
    ("x-overflow", Limit::Str("drop-head"), true, true),
];

#[derive(Debug, Clone, Copy)]
enum Limit {
    Long(i32),
    Str(&'static str),
}

/// The queue arguments of a queue of this kind, as `(name, value)` (also used in messages).
pub fn queue_argument_list(kind: QueueKind) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match kind {
        QueueKind::Classic | QueueKind::Quorum => {
            if kind == QueueKind::Quorum {
                out.push(("x-queue-type", "quorum".to_owned()));
            }
            for (name, value, classic, quorum) in LIMITS {
                let allowed = if kind == QueueKind::Quorum {
                    quorum
                } else {
                    classic
                };
                if allowed {
                    out.push((
                        name,
                        match value {
                            Limit::Long(n) => n.to_string(),
                            Limit::Str(s) => s.to_owned(),
                        },
                    ));
                }
            }
        }
        QueueKind::Stream {
            max_age_secs,
            max_bytes,
        } => {
            out.push(("x-queue-type", "stream".to_owned()));
            if let Some(s) = max_age_secs {
                out.push(("x-max-age", format!("{s}s")));
            }
            if let Some(b) = max_bytes {
                out.push(("x-max-length-bytes", b.to_string()));
            }
        }
    }
    out
}

/// The queue arguments of a queue of this kind.
pub fn queue_arguments_for(kind: QueueKind) -> FieldTable {
    let mut args = FieldTable::new();
    for (name, value) in queue_argument_list(kind) {
        let v = match name {
            "x-max-length" | "x-message-ttl" => value.parse().map(FieldValue::l).ok(),
            "x-max-length-bytes" => value.parse::<i64>().map(FieldValue::l).ok(),
            _ => Some(FieldValue::from(value.as_str())),
        };
        if let (Ok(k), Some(v)) = (name.try_into(), v) {
            args.insert(k, v);
        }
    }
    args
}

/// The queue arguments of a classic gateway queue (the spec's limits).
pub fn queue_arguments() -> FieldTable {
    queue_arguments_for(QueueKind::Classic)
}

/// `<prefix>.<class>.stream`.
pub fn stream_name(prefix: &str, class: EventClass) -> String {
    format!("{prefix}.{class}.stream")
}
/// `quorum queue with x-max-length=100000, …` for messages.
fn describe(kind: QueueKind) -> String {
    let args: Vec<String> = queue_argument_list(kind)
        .into_iter()
        .filter(|(k, _)| *k != "x-queue-type")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{} queue with {}", kind.as_str(), args.join(", "))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_queue_type_gets_only_the_arguments_it_accepts() {
        let names = |k| {
            queue_argument_list(k)
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(QueueKind::Classic),
            ["x-max-length", "x-message-ttl", "x-overflow"]
        );
        assert_eq!(
            names(QueueKind::Quorum),
            [
                "x-queue-type",
                "x-max-length",
                "x-message-ttl",
                "x-overflow"
            ]
        );
        let stream = QueueKind::stream(&StreamConfig {
            max_age: Some(std::time::Duration::from_secs(86_400)),
            max_bytes: Some(10_000_000_000),
        });
        assert_eq!(
            queue_argument_list(stream),
            [
                ("x-queue-type", "stream".to_owned()),
                ("x-max-age", "86400s".to_owned()),
                ("x-max-length-bytes", "10000000000".to_owned()),
            ]
        );
        let has = |k: QueueKind, name: &str| {
            queue_arguments_for(k)
                .get(&name.try_into().unwrap())
                .is_some()
        };
        assert!(has(stream, "x-max-length-bytes") && has(stream, "x-max-age"));
        assert!(!has(stream, "x-max-length") && !has(stream, "x-overflow"));
        assert!(has(QueueKind::Quorum, "x-queue-type") && has(QueueKind::Quorum, "x-message-ttl"));
        assert!(!has(QueueKind::Classic, "x-queue-type"));
        assert!(describe(QueueKind::Quorum).starts_with("quorum queue with x-max-length=100000"));
    }
}
