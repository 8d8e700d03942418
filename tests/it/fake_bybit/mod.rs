//! An in-process fake Bybit v5 WebSocket server on `127.0.0.1:0`, speaking the real protocol on
//! `/v5/public/{spot,linear,inverse,option}` and `/v5/private`: per-endpoint ack and pong shapes,
//! the spot 10-args rule, invalid-topic and "already subscribed" errors, private auth with
//! [`FAKE_API_KEY`]/[`FAKE_API_SECRET`], replay of real frames, and fault controls (drop,
//! refuse, stop answering pings).
//!
//! ```ignore
//! let fake = FakeBybit::start().await;
//! // BYBIT_WS_URL = fake.base_url()
//! assert!(fake.wait_subscribed("/v5/public/linear", "publicTrade.BTCUSDT", secs(5)).await);
//! fake.push_topic("publicTrade.BTCUSDT", &fixture("linear_publicTrade.json"));
//! ```
#![allow(dead_code)]

mod protocol;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use async_tungstenite::tungstenite::{
    Message,
    handshake::server::{ErrorResponse, Request, Response},
    http::StatusCode,
};
use futures::StreamExt;
use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use protocol::{ConnState, Flavor, Rules};

/// The API key the fake accepts.
pub const FAKE_API_KEY: &str = "fake-bybit-api-key";
/// The secret the fake verifies signatures with.
pub const FAKE_API_SECRET: &str = "fake-bybit-api-secret";

/// Every path the fake serves.
pub const PATHS: [&str; 5] = [
    "/v5/public/spot",
    "/v5/public/linear",
    "/v5/public/inverse",
    "/v5/public/option",
    "/v5/private",
];

#[derive(Debug)]
enum Out {
    Text(String),
    Close,
    Abort,
}

#[derive(Debug)]
struct Conn {
    path: String,
    proto: ConnState,
    tx: mpsc::Sender<Out>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    conns: BTreeMap<u64, Conn>,
    requests: HashMap<String, Vec<Value>>,
    /// Per connection (in accept order): its path and every op it sent; kept after close.
    by_connection: BTreeMap<u64, (String, Vec<Value>)>,
    accepted: HashMap<String, usize>,
    closes: HashMap<String, usize>,
    refuse: bool,
    rules: Rules,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Handle to a running fake; clones share it. The server stops when the last handle is dropped
/// or on [`FakeBybit::shutdown`].
#[derive(Debug, Clone)]
pub struct FakeBybit {
    inner: Arc<Inner>,
}

impl FakeBybit {
    /// Binds `127.0.0.1:0` and starts serving (pings answered, no invalid topics).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake bybit");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().rules.answer_pings = true;
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Self {
            inner: Arc::new(Inner { addr, state, stop }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `ws://127.0.0.1:<port>`, for `BYBIT_WS_URL`.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.inner.addr)
    }

    /// Stops the server and closes every connection.
    pub fn shutdown(&self) {
        self.inner.stop.cancel();
    }

    /// Sends `frame` to every connection on `path` (e.g. `"/v5/public/linear"`).
    pub fn push(&self, path: &str, frame: &str) {
        for c in self.state().conns.values().filter(|c| c.path == path) {
            let _ = c.tx.try_send(Out::Text(frame.to_owned()));
        }
    }

    /// Sends `frame` to every connection subscribed to `topic`; returns how many.
    pub fn push_topic(&self, topic: &str, frame: &str) -> usize {
        let state = self.state();
        let mut n = 0;
        for c in state
            .conns
            .values()
            .filter(|c| c.proto.topics.contains(topic))
        {
            if c.tx.try_send(Out::Text(frame.to_owned())).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// A handle that sends frames to the connections on `path` open now, waiting (instead
    /// of dropping) when a connection's outgoing queue is full: backpressure for load runs.
    pub fn feed(&self, path: &str) -> Feed {
        Feed {
            senders: self
                .state()
                .conns
                .values()
                .filter(|c| c.path == path)
                .map(|c| c.tx.clone())
                .collect(),
        }
    }

    /// Pushes every line of a `.jsonl` recording to the connections subscribed to its topic;
    /// returns how many frames were delivered in total.
    pub fn replay(&self, jsonl: &str) -> usize {
        jsonl
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let topic = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("topic").and_then(Value::as_str).map(str::to_owned));
                topic.map_or(0, |t| self.push_topic(&t, line))
            })
            .sum()
    }

    /// Topics currently subscribed on `path` (union over its connections).
    pub fn subscribed(&self, path: &str) -> BTreeSet<String> {
        self.state()
            .conns
            .values()
            .filter(|c| c.path == path)
            .flat_map(|c| c.proto.topics.iter().cloned())
            .collect()
    }

    /// Every client op received on `path`, in order (auth, subscribe, ping, ...).
    pub fn requests(&self, path: &str) -> Vec<Value> {
        self.state().requests.get(path).cloned().unwrap_or_default()
    }

    /// The ops of each connection ever made on `path`, one list per connection, oldest first.
    pub fn requests_by_connection(&self, path: &str) -> Vec<Vec<Value>> {
        self.state()
            .by_connection
            .values()
            .filter(|(p, _)| p == path)
            .map(|(_, log)| log.clone())
            .collect()
    }

    /// Requests on `path` whose `op` is `op`.
    pub fn requests_of(&self, path: &str, op: &str) -> Vec<Value> {
        self.requests(path)
            .into_iter()
            .filter(|r| r.get("op").and_then(Value::as_str) == Some(op))
            .collect()
    }

    /// Open WebSocket connections on `path`.
    pub fn connection_count(&self, path: &str) -> usize {
        self.state()
            .conns
            .values()
            .filter(|c| c.path == path)
            .count()
    }

    /// WebSocket handshakes completed on `path` since start (connection attempts that got in).
    pub fn connections_accepted(&self, path: &str) -> usize {
        self.state().accepted.get(path).copied().unwrap_or(0)
    }

    /// Close frames received from clients on `path` (a clean client close sends one).
    pub fn close_frames(&self, path: &str) -> usize {
        self.state().closes.get(path).copied().unwrap_or(0)
    }

    /// Closes every connection on `path`: with a Close frame, or `abrupt`ly (socket dropped).
    pub fn drop_connections(&self, path: &str, abrupt: bool) {
        for c in self.state().conns.values().filter(|c| c.path == path) {
            let _ = c.tx.try_send(if abrupt { Out::Abort } else { Out::Close });
        }
    }

    /// While `refuse`, TCP connections are accepted and closed at once (no handshake).
    pub fn refuse_connections(&self, refuse: bool) {
        self.state().refuse = refuse;
    }

    /// Whether pings are answered (default yes).
    pub fn answer_pings(&self, yes: bool) {
        self.state().rules.answer_pings = yes;
    }

    /// Whether subscribe/unsubscribe ops are answered (default yes); unanswered ones change
    /// nothing, as if lost.
    pub fn answer_subscribes(&self, yes: bool) {
        self.state().rules.ignore_subscribes = !yes;
    }

    /// Topics rejected with `error:handler not found,topic:<t>` (besides unknown prefixes).
    pub fn set_invalid_topics(&self, topics: &[&str]) {
        self.state().rules.invalid = topics.iter().map(|t| (*t).to_owned()).collect();
    }

    /// Waits until `topic` is subscribed on `path`, at most `deadline`.
    pub async fn wait_subscribed(&self, path: &str, topic: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.subscribed(path).contains(topic) {
                return true;
            }
            if start.elapsed() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Sends frames to a fixed set of connections, waiting for room (see [`FakeBybit::feed`]).
#[derive(Debug, Clone)]
pub struct Feed {
    senders: Vec<mpsc::Sender<Out>>,
}

impl Feed {
    /// Connections this feed reaches.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Sends `frame` to each connection; returns how many are still open.
    pub async fn send(&self, frame: &str) -> usize {
        let mut n = 0;
        for tx in &self.senders {
            if tx.send(Out::Text(frame.to_owned())).await.is_ok() {
                n += 1;
            }
        }
        n
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>, stop: CancellationToken) {
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        if state.lock().unwrap_or_else(|e| e.into_inner()).refuse {
            drop(tcp);
            continue;
        }
        // As a real exchange does: without it, Nagle holds each small frame until the
        // client's delayed ACK, and frames arrive in ~25-40 ms bursts.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(tcp, state.clone(), stop.clone()));
    }
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>, stop: CancellationToken) {
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let p = req.uri().path().to_owned();
        if Flavor::of(&p).is_none() {
            let mut err = ErrorResponse::new(Some("not found".into()));
            *err.status_mut() = StatusCode::NOT_FOUND;
            return Err(err);
        }
        *seen.lock().unwrap() = p;
        Ok(resp)
    };
    let Ok(mut ws) = async_tungstenite::tokio::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let path = path.lock().unwrap().clone();
    let Some(flavor) = Flavor::of(&path) else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(8192);
    let id = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.next_id += 1;
        let id = s.next_id;
        *s.accepted.entry(path.clone()).or_default() += 1;
        let proto = ConnState {
            flavor,
            conn_id: format!("fake{id:08x}-{}", path.rsplit('/').next().unwrap_or("")),
            topics: BTreeSet::new(),
            authed: false,
        };
        s.conns.insert(
            id,
            Conn {
                path: path.clone(),
                proto,
                tx,
            },
        );
        s.by_connection.insert(id, (path.clone(), Vec::new()));
        id
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => { let _ = ws.close(None).await; break; }
            out = rx.recv() => match out {
                Some(Out::Text(t)) => if send_batch(&mut ws, t, &mut rx).await.is_err() { break },
                Some(Out::Close) | None => { let _ = ws.close(None).await; break; }
                Some(Out::Abort) => break,
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let reply = {
                        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                        let value = serde_json::from_str::<Value>(&text)
                            .unwrap_or_else(|_| Value::String(text.to_string()));
                        s.requests.entry(path.clone()).or_default().push(value.clone());
                        if let Some((_, log)) = s.by_connection.get_mut(&id) {
                            log.push(value.clone());
                        }
                        let State { conns, rules, .. } = &mut *s;
                        conns.get_mut(&id).and_then(|c| protocol::answer(&mut c.proto, rules, &value))
                    };
                    if let Some(reply) = reply
                        && ws.send(Message::text(reply)).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    *state.lock().unwrap_or_else(|e| e.into_inner()).closes.entry(path.clone()).or_default() += 1;
                    break;
                }
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .conns
        .remove(&id);
}

/// Writes `first` and whatever text frames are already queued behind it (at most 256) with one
/// flush, as a busy server does. A close or abort queued behind them is carried out here and
/// ends the connection (an `Err`).
async fn send_batch<S>(
    ws: &mut async_tungstenite::WebSocketStream<S>,
    first: String,
    rx: &mut mpsc::Receiver<Out>,
) -> Result<(), async_tungstenite::tungstenite::Error>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    use futures::SinkExt;
    ws.feed(Message::text(first)).await?;
    for _ in 0..256 {
        match rx.try_recv() {
            Ok(Out::Text(t)) => ws.feed(Message::text(t)).await?,
            Ok(other) => {
                ws.flush().await?;
                if matches!(other, Out::Close) {
                    let _ = ws.close(None).await;
                }
                return Err(async_tungstenite::tungstenite::Error::ConnectionClosed);
            }
            Err(_) => break,
        }
    }
    ws.flush().await
}
