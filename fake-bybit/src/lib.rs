#![recursion_limit = "256"]
//! Dev-only (never published): an in-process fake Bybit v5 WebSocket server on `127.0.0.1:0`,
//! speaking the real protocol on `/v5/public/{spot,linear,inverse,option}` and `/v5/private`:
//! per-endpoint ack and pong shapes, the spot 10-args rule, invalid-topic and "already
//! subscribed" errors, private auth with [`FAKE_API_KEY`]/[`FAKE_API_SECRET`], replay of real
//! frames, and fault controls (drop, refuse, stop answering pings, go offline and online).
//!
//! A second listener serves Bybit's v5 REST ([`FakeBybit::rest_url`]): server time, recent
//! trades and the signed account endpoints, with signature/timestamp checks, cursors, the 7-day
//! window rule, a clock offset ([`FakeBybit::set_clock_offset`]) and failures
//! ([`FakeBybit::fail_rest`]). The account ([`FakeBybit::account`]) and trade tapes
//! ([`FakeBybit::trades`]) feed the WebSocket and REST from one producer.
//!
//! ```text
//! let fake = FakeBybit::start().await;
//! // BYBIT_WS_URL = fake.base_url()
//! assert!(fake.wait_subscribed("/v5/public/linear", "publicTrade.BTCUSDT", secs(5)).await);
//! fake.push_topic("publicTrade.BTCUSDT", &fixture("linear_publicTrade.json"));
//! ```
//!
//! The recorded frames it is tested with stay in the gateway's `tests/fixtures/bybit/`
//! ([`fixture`], [`FIXTURES`]); the ack and pong shapes it answers with are copied from there.

mod account;
mod protocol;
mod rest;
mod server;

pub use account::{Account, TRADES_KEPT, Trades, Trading};
pub use rest::{RestFailure, RestRequest, rest_signature};

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

use protocol::{ConnState, Rules};

/// The API key the fake accepts.
pub const FAKE_API_KEY: &str = "fake-bybit-api-key";
/// The secret the fake verifies signatures with.
pub const FAKE_API_SECRET: &str = "fake-bybit-api-secret";

/// The directory of the recorded Bybit frames (`tests/fixtures/bybit/` of the workspace).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/bybit");

/// Reads a fixture from [`FIXTURES`] (trailing newline removed); panics naming the file.
pub fn fixture(name: &str) -> String {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
        .trim_end()
        .to_owned()
}

/// The spot public path.
pub const SPOT: &str = "/v5/public/spot";
/// The linear public path.
pub const LINEAR: &str = "/v5/public/linear";
/// The inverse public path.
pub const INVERSE: &str = "/v5/public/inverse";
/// The option public path.
pub const OPTION: &str = "/v5/public/option";
/// The private path.
pub const PRIVATE: &str = "/v5/private";

/// Every path the fake serves.
pub const PATHS: [&str; 5] = [SPOT, LINEAR, INVERSE, OPTION, PRIVATE];

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
    /// TCP connections accepted by the listener (refused ones included).
    attempts: usize,
    /// TCP connections closed at once because of [`FakeBybit::refuse_connections`].
    refused: usize,
    /// Peer address of each connection (by id, kept after close).
    peers: BTreeMap<u64, SocketAddr>,
    /// Every change of a connection's subscribed topics, in order (kept after close).
    topic_log: Vec<TopicChange>,
    rules: Rules,
    rest: rest::RestState,
    account: account::AccountState,
    tapes: account::Tapes,
    /// Private frames pushed (for their ids).
    frame_seq: u64,
}

#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    rest_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
    /// Stops the current accept loop (and closes its listener), for [`FakeBybit::go_offline`].
    listening: Mutex<Option<CancellationToken>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One change of one connection's subscribed topics: `held` after a subscribe ack, not
/// `held` after an unsubscribe or when the connection closed ([`FakeBybit::topic_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicChange {
    pub at: Instant,
    /// The connection's id (accept order, as in [`FakeBybit::connections`]).
    pub conn: u64,
    pub path: String,
    pub topic: String,
    pub held: bool,
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
        let rest_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake bybit rest");
        let rest_addr = rest_listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let listening = stop.child_token();
        tokio::spawn(server::accept_loop(
            listener,
            state.clone(),
            listening.clone(),
            stop.clone(),
        ));
        tokio::spawn(rest::accept_loop(
            rest_listener,
            state.clone(),
            stop.clone(),
        ));
        Self {
            inner: Arc::new(Inner {
                addr,
                rest_addr,
                state,
                stop,
                listening: Mutex::new(Some(listening)),
            }),
        }
    }

    /// An exchange outage: every open connection is dropped (no Close frame) and the listening
    /// socket is closed, so new connections are refused (TCP RST) until [`FakeBybit::go_online`].
    pub fn go_offline(&self) {
        let listening = self
            .inner
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(token) = listening {
            token.cancel();
        }
        for c in self.state().conns.values() {
            let _ = c.tx.try_send(Out::Abort);
        }
    }

    /// Listens again on the same address after [`FakeBybit::go_offline`] (no-op when online).
    /// Panics if the port cannot be bound again.
    pub fn go_online(&self) {
        let mut listening = self
            .inner
            .listening
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if listening.is_some() {
            return;
        }
        // SO_REUSEADDR: the dropped connections leave this port in TIME_WAIT. The old accept
        // task closes its listener as soon as it runs: a few short retries cover that.
        let mut tries = 0;
        let listener = loop {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            match socket
                .bind(self.inner.addr)
                .and_then(|()| socket.listen(1024))
            {
                Ok(listener) => break listener,
                Err(_) if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("bind the fake's port {} again: {e}", self.inner.addr),
            }
        };
        let token = self.inner.stop.child_token();
        tokio::spawn(server::accept_loop(
            listener,
            self.inner.state.clone(),
            token.clone(),
            self.inner.stop.clone(),
        ));
        *listening = Some(token);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `ws://127.0.0.1:<port>`, for `BYBIT_WS_URL`.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.inner.addr)
    }

    /// `http://127.0.0.1:<port>` of the REST listener, for `BYBIT_REST_URL`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.inner.rest_addr)
    }

    /// The trading account behind the private WebSocket and the private REST endpoints.
    pub fn account(&self) -> Account {
        Account {
            state: self.inner.state.clone(),
        }
    }

    /// The public trade tape of `symbol` in `category` (`"linear"`, `"spot"`, ...).
    pub fn trades(&self, category: &str, symbol: &str) -> Trades {
        Trades {
            state: self.inner.state.clone(),
            category: category.to_owned(),
            symbol: symbol.to_owned(),
        }
    }

    /// Puts the fake's clock `offset` ahead of the machine's: server time, WebSocket `auth`
    /// `expires` checks and REST timestamp checks all use it.
    pub fn set_clock_offset(&self, offset: Duration) {
        self.set_clock_offset_ms(i64::try_from(offset.as_millis()).unwrap_or(i64::MAX));
    }

    /// As [`FakeBybit::set_clock_offset`], in ms; negative puts the fake behind.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.state().rules.clock_offset_ms = offset_ms;
    }

    /// The fake's current server time in ms.
    pub fn server_time_ms(&self) -> u64 {
        self.state().rules.now_ms()
    }

    /// Answers every REST request with `failure` for the next `count` requests (`None`: until
    /// [`FakeBybit::clear_rest_failure`]).
    pub fn fail_rest(&self, failure: RestFailure, count: Option<usize>) {
        self.state().rest.failure = Some((failure, count));
    }

    /// Ends a failure set with [`FakeBybit::fail_rest`].
    pub fn clear_rest_failure(&self) {
        self.state().rest.failure = None;
    }

    /// Every REST request answered so far, in order.
    pub fn rest_requests(&self) -> Vec<RestRequest> {
        self.state().rest.log.clone()
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

    /// How many open connections on `path` hold each topic (a topic subscribed on two
    /// connections counts 2).
    pub fn holders(&self, path: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.state().conns.values().filter(|c| c.path == path) {
            for t in &c.proto.topics {
                *out.entry(t.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// The open connections: id, path, the client's address, subscribed topics.
    pub fn connections(&self) -> Vec<(u64, String, Option<SocketAddr>, BTreeSet<String>)> {
        let state = self.state();
        state
            .conns
            .iter()
            .map(|(id, c)| {
                (
                    *id,
                    c.path.clone(),
                    state.peers.get(id).copied(),
                    c.proto.topics.clone(),
                )
            })
            .collect()
    }

    /// The client address of every connection ever accepted, by id.
    pub fn peers(&self) -> BTreeMap<u64, SocketAddr> {
        self.state().peers.clone()
    }

    /// Every change of a connection's subscribed topics since start, oldest first.
    pub fn topic_log(&self) -> Vec<TopicChange> {
        self.state().topic_log.clone()
    }

    /// TCP connections the WebSocket listener accepted since start (refused ones included).
    pub fn connection_attempts(&self) -> usize {
        self.state().attempts
    }

    /// TCP connections closed at once while [`FakeBybit::refuse_connections`] was on.
    pub fn connections_refused(&self) -> usize {
        self.state().refused
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

    /// Whether the feed reaches no connection.
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
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
