//! The AMQP properties of a published event (spec section 4): JSON content type, message id,
//! correlation id (the trace id), timestamp, delivery mode, and the `trace_id`, `topic`,
//! `class` and `event_key` headers, plus `instance` and `epoch` in a cluster (section 11).

use amqprs::{BasicProperties, FieldTable, FieldValue};

use crate::event::Event;

/// AMQP properties of an event (spec section 4).
pub fn properties(event: &Event, persistent: bool) -> BasicProperties {
    properties_of(event, persistent, None)
}

/// [`properties`], plus in a cluster (`owner`) the headers `instance` and `epoch` (section 11).
pub fn properties_of(
    event: &Event,
    persistent: bool,
    owner: Option<(&str, u64)>,
) -> BasicProperties {
    let mut headers = FieldTable::new();
    for (k, v) in [
        ("trace_id", event.trace_id.as_str()),
        ("topic", event.topic.as_str()),
        ("class", event.class.as_str()),
        ("event_key", event.key()),
    ] {
        if let Ok(k) = k.try_into() {
            headers.insert(k, FieldValue::from(v));
        }
    }
    if let Some((instance, epoch)) = owner {
        if let Ok(k) = "instance".try_into() {
            headers.insert(k, FieldValue::from(instance));
        }
        if let Ok(k) = "epoch".try_into() {
            headers.insert(k, FieldValue::l(i64::try_from(epoch).unwrap_or(i64::MAX)));
        }
    }
    let mut uuid = uuid::Uuid::encode_buffer();
    let mut props = BasicProperties::default();
    // Set in place and returned as is: `finish()` would clone the whole header table.
    props
        .with_content_type("application/json")
        .with_message_id(event.id.hyphenated().encode_lower(&mut uuid))
        .with_correlation_id(&event.trace_id)
        .with_timestamp(u64::try_from(event.received_at.timestamp()).unwrap_or(0))
        .with_headers(headers)
        .with_delivery_mode(if persistent { 2 } else { 1 });
    props
}
