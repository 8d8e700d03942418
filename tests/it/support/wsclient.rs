//! A small `/ws` client for tests (async-tungstenite), and a builder of [`Event`]s to inject into
//! the app's broadcast when no Bybit is involved.

use std::{sync::Arc, time::Duration};

use async_tungstenite::{
    WebSocketStream,
    tokio::{ConnectStream, connect_async},
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use futures::StreamExt;
use serde_json::{Value, json};
use ws_gateway::event::{Category, Endpoint, Event, EventClass};

use super::TestApp;

/// A connected `/ws` client.
pub struct WsClient {
    pub stream: WebSocketStream<ConnectStream>,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsClient")
    }
}

/// What `/ws` answered to an upgrade attempt.
#[derive(Debug)]
pub enum Connect {
    Open(Box<WsClient>),
    Refused(u16),
}

/// `ws://<addr>/ws` with the app's key in the `X-API-Key` header.
pub async fn connect(app: &TestApp) -> WsClient {
    match connect_with(app, Some(&app.api_key), false).await {
        Connect::Open(c) => *c,
        Connect::Refused(status) => panic!("/ws refused the right key with {status}"),
    }
}

/// Connects with `key` (none = no key), in the header or as `?api_key=`.
pub async fn connect_with(app: &TestApp, key: Option<&str>, in_query: bool) -> Connect {
    let mut url = format!("ws://{}/ws", app.addr);
    if let (Some(key), true) = (key, in_query) {
        url.push_str(&format!("?api_key={key}"));
    }
    let mut request = url.into_client_request().expect("valid ws URL");
    if let (Some(key), false) = (key, in_query) {
        request
            .headers_mut()
            .insert("X-API-Key", HeaderValue::from_str(key).unwrap());
    }
    match connect_async(request).await {
        Ok((stream, _)) => Connect::Open(Box::new(WsClient { stream })),
        Err(async_tungstenite::tungstenite::Error::Http(resp)) => {
            Connect::Refused(resp.status().as_u16())
        }
        Err(e) => panic!("connecting to /ws: {e}"),
    }
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The socket ended without a close frame.
    Dropped,
}

impl WsClient {
    /// Sends a JSON text message.
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("send to /ws");
    }

    /// Sends `v` and returns the next JSON message (the reply).
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.next_json().await.expect("a reply")
    }

    /// The next text message as JSON (pings and pongs skipped); `None` when the socket closed
    /// or nothing came within 10 s.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(&t).expect("JSON text")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads (and discards data) until the server closes; returns how. Waits at most `deadline`.
    pub async fn closed_within(&mut self, deadline: Duration) -> Option<Closed> {
        let read = async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Close(frame))) => {
                        return Closed::Code(frame.map_or(1005, |f| u16::from(f.code)));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Closed::Dropped,
                }
            }
        };
        tokio::time::timeout(deadline, read).await.ok()
    }
}

/// The 1013 code ("try again later") a slow client is closed with.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Builds a public trades event as the pipeline would, with `data` as its payload.
pub fn trade_event(category: Category, symbol: &str, seq: u64, data: Value) -> Arc<Event> {
    event(
        Endpoint::Public(category),
        EventClass::Trades,
        &format!("publicTrade.{symbol}"),
        Some(symbol),
        seq,
        data,
    )
}

/// Builds an event with a section 5 envelope around `data`.
pub fn event(
    endpoint: Endpoint,
    class: EventClass,
    topic: &str,
    symbol: Option<&str>,
    seq: u64,
    data: Value,
) -> Arc<Event> {
    let id = uuid::Uuid::now_v7();
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let received_at = chrono::Utc::now();
    let category = endpoint.category();
    let head = json!({
        "id": id, "trace_id": trace_id, "class": class, "topic": topic,
        "category": category, "symbol": symbol, "type": "snapshot",
        "exchange_ts": received_at.timestamp_millis(),
        "received_at": received_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "seq": seq, "key": format!("{}:{topic}:{seq}", category.map_or("", |c| c.as_str())),
        "recovered": false,
    })
    .to_string();
    let data = data.to_string();
    let prefix = format!("{},\"data\":", &head[..head.len() - 1]);
    let json = format!("{prefix}{data}}}");
    Arc::new(Event {
        id,
        trace_id: trace_id.as_str().try_into().expect("32 hex"),
        class,
        topic: topic.into(),
        endpoint,
        category,
        symbol: symbol.map(Into::into),
        kind: Some("snapshot".into()),
        exchange_ts: Some(received_at.timestamp_millis()),
        received_at,
        received_mono: std::time::Instant::now(),
        seq,
        key: ws_gateway::event::EventKey::Text(
            format!("{}:{topic}:{seq}", category.map_or("", |c| c.as_str())).into(),
        ),
        recovered: false,
        data: prefix.len()..prefix.len() + data.len(),
        json: json.into(),
    })
}
