//! The broker topology of spec section 4, declared after every (re)connect:
//! exchange `<prefix>.events` (topic, durable); class queues `<prefix>.<class>` bound with
//! `<class>.#`; per-service queues `<prefix>.<class>.<service>` bound with exactly the routing
//! keys of [`QueueBindings`]. Every queue is durable with `x-max-length=100000`,
//! `x-message-ttl=86400000` (24 h) and `x-overflow=drop-head`.

use std::collections::BTreeSet;

use amqprs::{
    FieldTable, FieldValue,
    channel::{
        Channel, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
        QueueUnbindArguments,
    },
};

use super::PublishError;
use crate::{
    event::EventClass,
    subscriptions::{Binding, QueueBindings, class_pattern},
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

/// The queue arguments of every gateway queue.
pub fn queue_arguments() -> FieldTable {
    let mut args = FieldTable::new();
    let entries = [
        ("x-max-length", FieldValue::l(100_000)),
        ("x-message-ttl", FieldValue::l(86_400_000)),
        ("x-overflow", FieldValue::from("drop-head")),
    ];
    for (k, v) in entries {
        if let Ok(k) = k.try_into() {
            args.insert(k, v);
        }
    }
    args
}

async fn declare_queue(channel: &Channel, name: &str) -> Result<(), PublishError> {
    channel
        .queue_declare(
            QueueDeclareArguments::durable_client_named(name)
                .arguments(queue_arguments())
                .finish(),
        )
        .await
        .map_err(PublishError::Declare)?;
    Ok(())
}

/// Declares the exchange and the class queues with their bindings.
pub async fn declare(channel: &Channel, prefix: &str) -> Result<(), PublishError> {
    let exchange = exchange_name(prefix);
    if exchange.len() > MAX_SHORT_STR {
        return Err(PublishError::NameTooLong(exchange));
    }
    channel
        .exchange_declare(
            ExchangeDeclareArguments::new(&exchange, "topic")
                .durable(true)
                .finish(),
        )
        .await
        .map_err(PublishError::Declare)?;
    for class in EventClass::ALL {
        let queue = class_queue(prefix, class);
        declare_queue(channel, &queue).await?;
        channel
            .queue_bind(QueueBindArguments::new(
                &queue,
                &exchange,
                &class_pattern(class),
            ))
            .await
            .map_err(PublishError::Declare)?;
    }
    Ok(())
}

/// Brings the per-service bindings on the broker from `applied` to the desired set, then marks
/// that version applied. After a reconnect `applied` is empty, so everything is re-declared.
pub async fn reconcile(
    channel: &Channel,
    prefix: &str,
    bindings: &QueueBindings,
    version: u64,
    applied: &mut BTreeSet<Binding>,
) -> Result<(), PublishError> {
    let exchange = exchange_name(prefix);
    let desired = bindings.snapshot();
    for b in desired.difference(applied) {
        let queue = service_queue(prefix, b.class, &b.service);
        if queue.len() > MAX_SHORT_STR || b.routing_key.len() > MAX_SHORT_STR {
            tracing::warn!(queue, routing_key = %b.routing_key, "Binding name too long for AMQP; skipped.");
            continue;
        }
        declare_queue(channel, &queue).await?;
        channel
            .queue_bind(QueueBindArguments::new(&queue, &exchange, &b.routing_key))
            .await
            .map_err(PublishError::Declare)?;
    }
    for b in applied.difference(&desired) {
        let queue = service_queue(prefix, b.class, &b.service);
        if queue.len() > MAX_SHORT_STR || b.routing_key.len() > MAX_SHORT_STR {
            continue;
        }
        channel
            .queue_unbind(QueueUnbindArguments::new(&queue, &exchange, &b.routing_key))
            .await
            .map_err(PublishError::Declare)?;
    }
    *applied = desired;
    bindings.mark_applied(version);
    Ok(())
}
