//! Declaring the topology on the broker: a [`Declarer`] declares the exchange, the queues and
//! their bindings over a channel of its own, reading the broker's reason when a declare is
//! refused (a [`Mismatch`] an operator must fix, or a classic queue whose node is down:
//! [`Declared::NodeDown`]); [`reconcile`] brings the per-service bindings to the desired set.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return,
    callbacks::ChannelCallback,
    channel::{
        Channel, ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments,
        QueueUnbindArguments,
    },
    connection::Connection,
};
use async_trait::async_trait;

use super::{
    MAX_SHORT_STR, QueueKind, class_queue, describe, exchange_name, queue_arguments_for,
    service_queue, stream_name,
};
use crate::{
    event::EventClass,
    pipeline_file::PublishConfig,
    sink::rabbitmq::PublishError,
    subscriptions::{Binding, QueueBindings, class_pattern},
};

/// Why a declare was refused in a way an operator must fix: the queue exists with another type
/// or other arguments (`PRECONDITION_FAILED`).
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// The queue's name.
    pub queue: String,
    /// What the gateway asked for (type and arguments).
    pub wanted: String,
    /// The broker's reply text (names the argument, the existing and the received value).
    pub reply: String,
    /// The class, for the pipeline-file hint.
    pub class: EventClass,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RabbitMQ queue {q:?} already exists with another type or other arguments than the \
             pipeline file asks for ({reply}); wanted: {wanted}. Either delete the queue \
             (`rabbitmqctl delete_queue {q}`; its messages are lost) so the gateway declares it \
             again, or set `queue_type` in `[classes.{class}]` of the pipeline file to the \
             existing queue's type.",
            q = self.queue,
            reply = self.reply,
            wanted = self.wanted,
            class = self.class,
        )
    }
}

/// How a queue declare ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Declared (or already there, equivalent).
    Ok,
    /// A classic queue whose home node is down (`404 home node … is down`): left as is, its
    /// bindings stay; what is routed to it is NACKed until the node is back.
    NodeDown,
}

/// The channel-close reason the broker sent last, kept by [`CloseReason`].
type CloseSlot = Arc<Mutex<Option<(u16, String)>>>;

/// A channel callback that keeps the reason of a broker-side channel close.
#[derive(Debug)]
struct CloseReason(CloseSlot);

#[async_trait]
impl ChannelCallback for CloseReason {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((close.reply_code(), close.reply_text().clone()));
        Ok(())
    }
    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _channel: &Channel, _ack: Ack) {}
    async fn publish_nack(&mut self, _channel: &Channel, _nack: Nack) {}
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _props: BasicProperties,
        _content: Vec<u8>,
    ) {
    }
}

/// Declares on a channel of its own (not the publish channel): a refused declare closes the
/// channel, so the declarer reads the broker's reason, opens a new one and goes on (a classic
/// queue on a node that is down is skipped) or stops with a [`Mismatch`].
pub struct Declarer {
    conn: Connection,
    channel: Option<Channel>,
    closed: CloseSlot,
    prefix: String,
    classes: PublishConfig,
}

impl std::fmt::Debug for Declarer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Declarer")
            .field("prefix", &self.prefix)
            .field("open", &self.channel.is_some())
            .finish_non_exhaustive()
    }
}

impl Declarer {
    /// A declarer on `conn` for the queues of `prefix`, typed per `classes`.
    pub fn new(conn: &Connection, prefix: &str, classes: &PublishConfig) -> Self {
        Self {
            conn: conn.clone(),
            channel: None,
            closed: CloseSlot::default(),
            prefix: prefix.to_owned(),
            classes: classes.clone(),
        }
    }

    /// The kind of the queues of `class`.
    pub fn kind(&self, class: EventClass) -> QueueKind {
        QueueKind::of(self.classes.class(class).queue_type)
    }

    async fn channel(&mut self) -> Result<&Channel, PublishError> {
        if self.channel.as_ref().is_none_or(|c| !c.is_open()) {
            *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let ch = self
                .conn
                .open_channel(None)
                .await
                .map_err(PublishError::Channel)?;
            ch.register_callback(CloseReason(self.closed.clone()))
                .await
                .map_err(PublishError::Channel)?;
            self.channel = Some(ch);
        }
        self.channel.as_ref().ok_or(PublishError::ConnectionLost)
    }

    /// The broker's reason for the last channel close (waits briefly: the close frame and the
    /// failed call race).
    async fn close_reason(&mut self) -> Option<(u16, String)> {
        for _ in 0..20 {
            if let Some(r) = self.closed.lock().unwrap_or_else(|e| e.into_inner()).take() {
                self.channel = None;
                return Some(r);
            }
            if !self.conn.is_open() {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        None
    }

    /// Declares queue `name` of `kind` for `class`.
    pub async fn queue(
        &mut self,
        name: &str,
        kind: QueueKind,
        class: EventClass,
    ) -> Result<Declared, PublishError> {
        let args = QueueDeclareArguments::durable_client_named(name)
            .arguments(queue_arguments_for(kind))
            .finish();
        let result = self.channel().await?.queue_declare(args).await;
        let Err(error) = result else {
            return Ok(Declared::Ok);
        };
        match self.close_reason().await {
            Some((406, reply)) => Err(PublishError::Mismatch(Box::new(Mismatch {
                queue: name.to_owned(),
                wanted: describe(kind),
                reply,
                class,
            }))),
            Some((404, reply)) if reply.contains("home node") => {
                tracing::warn!(
                    queue = name,
                    reply,
                    "Queue's home node is down; skipped (what is routed to it is refused until the node is back)."
                );
                Ok(Declared::NodeDown)
            }
            _ => Err(PublishError::Declare(error)),
        }
    }

    /// Binds `queue` to `exchange` with `key`.
    pub async fn bind(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), PublishError> {
        self.binding(queue, exchange, key, true).await
    }

    /// Removes a binding.
    pub async fn unbind(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), PublishError> {
        self.binding(queue, exchange, key, false).await
    }

    /// Adds (`bind`) or removes a binding; a refusal is logged with the broker's reason.
    async fn binding(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
        bind: bool,
    ) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        let r = if bind {
            channel
                .queue_bind(QueueBindArguments::new(queue, exchange, key))
                .await
        } else {
            channel
                .queue_unbind(QueueUnbindArguments::new(queue, exchange, key))
                .await
        };
        if let Err(error) = r {
            let reason = self.close_reason().await;
            let action = if bind { "bind" } else { "unbind" };
            tracing::warn!(queue, key, ?reason, "Cannot {action} the queue.");
            return Err(PublishError::Declare(error));
        }
        Ok(())
    }

    /// Closes the declare channel.
    pub async fn close(self) {
        if let Some(ch) = self.channel {
            let _ = ch.close().await;
        }
    }

    /// Declares the exchange, the class queues (typed per the pipeline file) and the class
    /// streams, with their bindings.
    pub async fn declare(&mut self) -> Result<(), PublishError> {
        let prefix = self.prefix.clone();
        let exchange = exchange_name(&prefix);
        if exchange.len() > MAX_SHORT_STR {
            return Err(PublishError::NameTooLong(exchange));
        }
        let r = self
            .channel()
            .await?
            .exchange_declare(
                ExchangeDeclareArguments::new(&exchange, "topic")
                    .durable(true)
                    .finish(),
            )
            .await;
        if let Err(error) = r {
            let reason = self.close_reason().await;
            tracing::warn!(exchange, ?reason, "Cannot declare the exchange.");
            return Err(PublishError::Declare(error));
        }
        for class in EventClass::ALL {
            let config = self.classes.class(class);
            let queue = class_queue(&prefix, class);
            if self.queue(&queue, self.kind(class), class).await? == Declared::Ok {
                self.bind(&queue, &exchange, &class_pattern(class)).await?;
            }
            if let Some(stream) = &config.stream {
                let name = stream_name(&prefix, class);
                if name.len() > MAX_SHORT_STR {
                    return Err(PublishError::NameTooLong(name));
                }
                self.queue(&name, QueueKind::stream(stream), class).await?;
                self.bind(&name, &exchange, &class_pattern(class)).await?;
            }
        }
        Ok(())
    }
}
/// Brings the per-service bindings on the broker from `applied` to the desired set, then marks
/// that version applied. After a reconnect `applied` is empty, so everything is re-declared.
/// Per-service queues take their class's queue type.
pub async fn reconcile(
    declarer: &mut Declarer,
    bindings: &QueueBindings,
    version: u64,
    applied: &mut BTreeSet<Binding>,
) -> Result<(), PublishError> {
    let prefix = declarer.prefix.clone();
    let exchange = exchange_name(&prefix);
    let desired = bindings.snapshot();
    for b in desired.difference(applied) {
        let queue = service_queue(&prefix, b.class, &b.service);
        if queue.len() > MAX_SHORT_STR || b.routing_key.len() > MAX_SHORT_STR {
            tracing::warn!(queue, routing_key = %b.routing_key, "Binding name too long for AMQP; skipped.");
            continue;
        }
        let kind = declarer.kind(b.class);
        if declarer.queue(&queue, kind, b.class).await? == Declared::Ok {
            declarer.bind(&queue, &exchange, &b.routing_key).await?;
        }
    }
    for b in applied.difference(&desired) {
        let queue = service_queue(&prefix, b.class, &b.service);
        if queue.len() > MAX_SHORT_STR || b.routing_key.len() > MAX_SHORT_STR {
            continue;
        }
        declarer.unbind(&queue, &exchange, &b.routing_key).await?;
    }
    *applied = desired;
    bindings.mark_applied(version);
    Ok(())
}
