//! One `/ws` connection: reads client messages, answers them, writes the events the
//! dispatcher queued for it, pings, and closes on eviction (1013), a message over
//! `max_message_bytes` (1009), idleness or shutdown (1001).
//!
//! The connection owns its topic set; whatever way it ends, [`Session::leave`] releases every
//! topic it held (requester [`Requester::WsClient`]).

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use poem::web::websocket::{CloseCode, Message, WebSocketStream};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    hub::{Hub, Subscriber},
    protocol::{self, ActionCommand, Command, OpCommand},
    seed,
};
use crate::{
    event::{Event, EventClass},
    subscriptions::{self, Requester, TopicKey},
};

/// How long a closing handshake may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Why the loop ended.
enum Ending {
    /// The client closed or the socket failed: nothing more to send.
    Gone,
    /// We close with this code and reason.
    Close(CloseCode, &'static str),
}

/// What the next step of the loop is.
enum Step {
    Send(Message),
    /// Several messages in order (the seed-shaped trades of one event).
    SendAll(Vec<Message>),
    Nothing,
    End(Ending),
}

/// The per-connection state.
struct Session {
    hub: Arc<Hub>,
    sub: Subscriber,
    requester: Requester,
    topics: BTreeSet<TopicKey>,
    /// The topics last asked for in the `action` dialect: their trades go out in the seed's
    /// shape ([`seed`]), one message per trade. Always a subset of `topics`.
    seed_topics: BTreeSet<TopicKey>,
}

/// Runs one connection until it ends; always releases its topics.
pub(super) async fn run(hub: Arc<Hub>, mut socket: WebSocketStream, shutdown: CancellationToken) {
    let id = hub.next_id();
    let (tx, mut outbound) = mpsc::channel::<Arc<Event>>(hub.config.outbound_queue.max(1));
    let evict = CancellationToken::new();
    let mut session = Session {
        sub: Subscriber {
            id,
            tx,
            evict: evict.clone(),
        },
        requester: Requester::WsClient(id),
        topics: BTreeSet::new(),
        seed_topics: BTreeSet::new(),
        hub: hub.clone(),
    };
    hub.connected();
    tracing::info!(connection_id = id, "A /ws client connected.");

    let idle = hub.config.idle_timeout;
    let mut deadline = Instant::now() + idle;
    let mut ping = tokio::time::interval_at(
        Instant::now() + hub.config.ping_interval,
        hub.config.ping_interval.max(Duration::from_millis(10)),
    );
    let ending = loop {
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled() => Step::End(Ending::Close(CloseCode::Away, "server shutting down")),
            () = evict.cancelled() => Step::End(Ending::Close(CloseCode::Again, "outbound queue full")),
            () = tokio::time::sleep_until(deadline) => Step::End(Ending::Close(CloseCode::Normal, "idle timeout")),
            msg = socket.next() => match msg {
                Some(Ok(msg)) => {
                    deadline = Instant::now() + idle;
                    session.on_message(msg)
                }
                // tungstenite's capacity error (`max_message_bytes`): close with 1009.
                Some(Err(e)) if e.to_string().contains("Space limit exceeded") => {
                    Step::End(Ending::Close(CloseCode::Size, "message too big"))
                }
                Some(Err(_)) | None => Step::End(Ending::Gone),
            },
            Some(event) = outbound.recv() => session.render(&event),
            _ = ping.tick() => Step::Send(Message::Ping(Vec::new())),
        };
        let msgs = match step {
            Step::Send(msg) => vec![msg],
            Step::SendAll(msgs) => msgs,
            Step::Nothing => continue,
            Step::End(ending) => break ending,
        };
        let mut failed = None;
        for msg in msgs {
            let is_data = !matches!(msg, Message::Ping(_));
            // The write is raced against eviction, shutdown and idleness so a client that
            // stopped reading (full TCP buffers) cannot hold its task forever.
            let sent = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(Ending::Close(CloseCode::Away, "server shutting down")),
                () = evict.cancelled() => Err(Ending::Close(CloseCode::Again, "outbound queue full")),
                () = tokio::time::sleep_until(deadline) => Err(Ending::Close(CloseCode::Normal, "idle timeout")),
                r = socket.send(msg) => r.map_err(|_| Ending::Gone),
            };
            match sent {
                Ok(()) if is_data => hub.count_sent(),
                Ok(()) => {}
                Err(ending) => {
                    failed = Some(ending);
                    break;
                }
            }
        }
        if let Some(ending) = failed {
            break ending;
        }
    };

    // Release first: the registry and the index must not wait for a slow closing handshake.
    drop(session);
    drop(outbound);
    match ending {
        Ending::Gone => tracing::info!(connection_id = id, "A /ws client disconnected."),
        Ending::Close(code, reason) => {
            tracing::info!(
                connection_id = id,
                code = u16::from(code),
                reason,
                "Closing a /ws client."
            );
            let close = Message::Close(Some((code, reason.to_owned())));
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                socket.send(close).await?;
                socket.close().await
            })
            .await;
        }
    }
}

impl Session {
    /// What one queued event becomes for this client: the section 5 envelope, or, for a trade
    /// topic it asked for in the `action` dialect, one seed-shaped message per trade.
    fn render(&self, event: &Event) -> Step {
        let seed = event.class == EventClass::Trades
            && self
                .seed_topics
                .iter()
                .any(|k| k.endpoint == event.endpoint && k.topic == event.topic.as_str());
        if seed {
            let symbol = event.symbol.as_deref().unwrap_or_default();
            if let Some(msgs) = seed::trade_messages(event.data(), symbol, protocol::now_ms()) {
                return Step::SendAll(msgs.into_iter().map(Message::Text).collect());
            }
        }
        Step::Send(Message::Text(
            String::from_utf8_lossy(&event.json).into_owned(),
        ))
    }

    fn on_message(&mut self, msg: Message) -> Step {
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.hub.count_received();
                    return Step::Send(Message::Text(protocol::op_error(
                        None,
                        None,
                        "messages must be UTF-8 JSON",
                    )));
                }
            },
            Message::Close(_) => return Step::End(Ending::Gone),
            Message::Ping(_) | Message::Pong(_) => return Step::Nothing,
        };
        self.hub.count_received();
        let reply = match protocol::parse(&text) {
            Command::Invalid(reply) => reply,
            Command::Op { op, req_id } => self.on_op(op, req_id.as_ref()),
            Command::Action(action) => self.on_action(action),
        };
        Step::Send(Message::Text(reply))
    }

    fn on_op(&mut self, op: OpCommand, req_id: Option<&serde_json::Value>) -> String {
        match op {
            OpCommand::Ping => protocol::op_pong(req_id),
            OpCommand::Subscribe { topics, category } => {
                let private = self.hub.private_available;
                let keys: Result<Vec<TopicKey>, _> = topics
                    .iter()
                    .map(|t| subscriptions::parse_topic(t, category, private))
                    .collect();
                let keys = keys.map_err(|e| e.to_string());
                let asked = keys.clone().unwrap_or_default();
                match keys.and_then(|k| self.subscribe(k, "topics")) {
                    Ok(_) => {
                        // Asked in the `op` dialect now: envelopes from here on.
                        for key in &asked {
                            self.seed_topics.remove(key);
                        }
                        protocol::op_success("subscribe", req_id, &topics)
                    }
                    Err(message) => protocol::op_error(Some("subscribe"), req_id, &message),
                }
            }
            OpCommand::Unsubscribe { topics, category } => {
                let keys: Vec<TopicKey> = self
                    .topics
                    .iter()
                    .filter(|k| topics.contains(&k.topic))
                    .filter(|k| category.is_none_or(|c| k.endpoint.category() == Some(c)))
                    .cloned()
                    .collect();
                self.unsubscribe(&keys);
                protocol::op_success("unsubscribe", req_id, &topics)
            }
        }
    }

    fn on_action(&mut self, action: ActionCommand) -> String {
        match action {
            ActionCommand::Ping => protocol::action_pong(),
            ActionCommand::Subscribe(symbols) => {
                let keys: Result<Vec<TopicKey>, _> = symbols
                    .iter()
                    .map(|s| subscriptions::trade_key(s))
                    .collect();
                let keys = match keys {
                    Ok(keys) => keys,
                    Err(e) => return protocol::action_error(&format!("Cannot subscribe: {e}")),
                };
                match self.subscribe(keys.clone(), "symbols") {
                    Ok(_) => {
                        self.seed_topics.extend(keys);
                        protocol::action_success("subscribe", &symbols, &self.symbols())
                    }
                    Err(message) => protocol::action_error(&format!("Cannot subscribe: {message}")),
                }
            }
            ActionCommand::Unsubscribe(symbols) => {
                let keys: Vec<TopicKey> = symbols
                    .iter()
                    .filter_map(|s| subscriptions::trade_key(s).ok())
                    .filter(|k| self.topics.contains(k))
                    .collect();
                self.unsubscribe(&keys);
                protocol::action_success("unsubscribe", &symbols, &self.symbols())
            }
        }
    }

    /// All or nothing: either every key is held afterwards or nothing changed.
    fn subscribe(&mut self, keys: Vec<TopicKey>, noun: &str) -> Result<usize, String> {
        let new: BTreeSet<TopicKey> = keys
            .into_iter()
            .filter(|k| !self.topics.contains(k))
            .collect();
        let max = self.hub.config.max_topics_per_client;
        if self.topics.len() + new.len() > max {
            return Err(format!("would exceed maximum of {max} {noun}"));
        }
        for key in &new {
            self.hub.add(key, &self.sub, &self.requester);
        }
        let added = new.len();
        self.topics.extend(new);
        Ok(added)
    }

    fn unsubscribe(&mut self, keys: &[TopicKey]) {
        for key in keys {
            self.seed_topics.remove(key);
            if self.topics.remove(key) {
                self.hub.remove(key, self.sub.id, &self.requester);
            }
        }
    }

    /// Symbols of the trade topics on linear (what the `action` dialect calls subscriptions).
    fn symbols(&self) -> Vec<String> {
        self.topics
            .iter()
            .filter_map(subscriptions::trade_symbol)
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Session {
    /// However the connection ends (even by a panic or an aborted task), its topics are released.
    fn drop(&mut self) {
        self.hub.leave(&self.topics, self.sub.id);
        self.hub.disconnected();
    }
}
