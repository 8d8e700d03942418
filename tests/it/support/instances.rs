//! Several real `ws-gateway` processes in cluster mode (issue 14, spec section 11): one fake
//! Bybit, one fresh PostgreSQL database, one queue prefix and API key; each instance on its own
//! address (127.0.0.2, .3, ...) with a TCP proxy of its own in front of PostgreSQL (to cut it
//! alone) and in front of the fake Bybit (so every upstream connection the fake sees is known to
//! belong to one instance). Faults: `kill -9`, `kill -STOP`/`-CONT`, SIGTERM, restart on the same
//! database. Readers: `GET /api/v1/cluster`, who holds each topic upstream, and [`Recorder`]s on
//! the class queues that keep every message's `instance`, `epoch`, `event_key` and `topic`.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::channel::ConsumerMessage;
use fake_bybit::{FakeBybit, INVERSE, LINEAR, OPTION, PRIVATE, SPOT};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{
    TEST_API_KEY, TestDatabase, amqp, amqp_url, binary::gateway_vars, http, postgres_base,
    proxy::TcpProxy, secs, stack::wait_queue, unique, wait_until,
};

/// The lease timings the suite runs with, as a `[cluster]` table of the pipeline file: the
/// shipped defaults, written out so that the figures the suite prints stay comparable.
pub const CLUSTER_TABLE: &str =
    "[cluster]\nrenew_interval = \"1s\"\nlease_ttl = \"3s\"\npoll_interval = \"500ms\"\n";

/// The Bybit path of a `/api/v1/cluster` topic's category (`private` or anything not public
/// is the private stream).
pub fn path_of(category: &str) -> &'static str {
    match category {
        "spot" => SPOT,
        "linear" => LINEAR,
        "inverse" => INVERSE,
        "option" => OPTION,
        _ => PRIVATE,
    }
}

/// A TCP proxy to the fake Bybit that remembers the local address of every connection it
/// opens to the fake (the fake sees them as the peers of its connections).
#[derive(Debug)]
pub struct BybitProxy {
    pub addr: SocketAddr,
    outgoing: Arc<Mutex<HashSet<SocketAddr>>>,
    stop: CancellationToken,
}

impl BybitProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let outgoing = Arc::new(Mutex::new(HashSet::new()));
        let stop = CancellationToken::new();
        let (out, token) = (outgoing.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut client = tokio::select! {
                    () = token.cancelled() => return,
                    r = listener.accept() => match r { Ok((c, _)) => c, Err(_) => continue },
                };
                let (out, token) = (out.clone(), token.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let _ = client.set_nodelay(true);
                    if let Ok(local) = server.local_addr() {
                        out.lock().unwrap().insert(local);
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = token.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            outgoing,
            stop,
        }
    }

    /// Whether the fake's peer `peer` is one of this proxy's connections.
    pub fn owns(&self, peer: &SocketAddr) -> bool {
        self.outgoing.lock().unwrap().contains(peer)
    }
}

impl Drop for BybitProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One gateway instance: its id, address, directory (kept across restarts) and proxies.
#[derive(Debug)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub db_proxy: TcpProxy,
    pub bybit: BybitProxy,
    pub child: Option<std::process::Child>,
    pub paused: bool,
    /// How many times it was started.
    pub starts: usize,
}

impl Instance {
    /// `http://<host>:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Its PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether its process is running (paused counts as running).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its log so far (every start appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The last `n` lines of its log but the HTTP access lines (for failure messages).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("\"HTTP request.\""))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let status = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {sig} {pid}");
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.paused {
            self.signal("-CONT");
        }
        if let Some(mut c) = self.child.take()
            && matches!(c.try_wait(), Ok(None))
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `INSTANCES_KEEP_LOGS=<dir>` keeps each instance's whole log for a look afterwards.
        if let Ok(dir) = std::env::var("INSTANCES_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                self.dir.path().join("gateway.log"),
                std::path::Path::new(&dir).join(format!("{}.log", self.id)),
            );
        }
    }
}

/// The whole set-up of one test: the fake, a database, a prefix, and the instances by id.
#[derive(Debug)]
pub struct Cluster {
    pub fake: FakeBybit,
    pub db: TestDatabase,
    pub prefix: String,
    pub pipeline: String,
    pub instances: BTreeMap<String, Instance>,
    /// Extra environment for every instance.
    pub extra_vars: Vec<(&'static str, String)>,
}

/// `host:port` and the database name of a PostgreSQL URL.
fn split_pg_url(url: &str) -> (String, String, String) {
    let (scheme_user, rest) = url.split_once('@').expect("user@host in the database URL");
    let (host, name) = rest.split_once('/').expect("a database name");
    (scheme_user.to_owned(), host.to_owned(), name.to_owned())
}

impl Cluster {
    /// A fake Bybit, a fresh database and prefix; `pipeline` is every instance's pipeline file
    /// (with [`CLUSTER_TABLE`] appended).
    pub async fn new(pipeline: &str) -> Self {
        Self::with_table(pipeline, CLUSTER_TABLE).await
    }

    /// As [`Cluster::new`] with `cluster_table` (a whole `[cluster]` table) instead of
    /// [`CLUSTER_TABLE`].
    pub async fn with_table(pipeline: &str, cluster_table: &str) -> Self {
        super::init_test_log();
        let fake = FakeBybit::start().await;
        let db = TestDatabase::postgres().await;
        Self {
            fake,
            db,
            prefix: unique("inst"),
            pipeline: format!("{pipeline}\n{cluster_table}\n"),
            instances: BTreeMap::new(),
            extra_vars: Vec::new(),
        }
    }

    /// Adds instance `id` on `host` (e.g. `127.0.0.2`), not started.
    pub async fn add(&mut self, id: &str, host: &str) {
        let (_, pg_host, _) = split_pg_url(&postgres_base());
        let db_proxy = TcpProxy::start(&pg_host).await;
        let fake_addr: SocketAddr = self
            .fake
            .base_url()
            .trim_start_matches("ws://")
            .parse()
            .unwrap();
        let bybit = BybitProxy::start(fake_addr).await;
        let port = std::net::TcpListener::bind(format!("{host}:0"))
            .unwrap_or_else(|e| panic!("bind {host}: {e}"))
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.toml"), &self.pipeline).unwrap();
        self.instances.insert(
            id.to_owned(),
            Instance {
                id: id.to_owned(),
                host: host.to_owned(),
                port,
                dir,
                db_proxy,
                bybit,
                child: None,
                paused: false,
                starts: 0,
            },
        );
    }

    pub fn get(&self, id: &str) -> &Instance {
        &self.instances[id]
    }

    pub fn ids(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    /// Launches instance `id` (no wait).
    pub fn launch(&mut self, id: &str) {
        let inst = self.instances.get_mut(id).expect("known instance");
        assert!(inst.child.is_none(), "{id} already running");
        let (user, _, name) = split_pg_url(&self.db.url);
        let db_url = format!("{user}@{}/{name}", inst.db_proxy.host_port());
        let mut vars = gateway_vars(&self.fake, amqp_url(), &self.prefix);
        vars.push(("BYBIT_WS_URL", format!("ws://{}", inst.bybit.addr)));
        vars.push(("DATABASE_URL", db_url));
        vars.push(("WS_GATEWAY_CLUSTER", "postgres".into()));
        vars.push(("WS_GATEWAY_INSTANCE_ID", id.to_owned()));
        // `INSTANCES_LOG_LEVEL=<directive>` (e.g. `info,ws_gateway::cluster=debug`) sets every
        // instance's `WS_GATEWAY_LOG_LEVEL`, for a look at kept logs (`INSTANCES_KEEP_LOGS`).
        if let Ok(level) = std::env::var("INSTANCES_LOG_LEVEL") {
            vars.push(("WS_GATEWAY_LOG_LEVEL", level));
        }
        vars.extend(self.extra_vars.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(inst.dir.path().join("gateway.log"))
            .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ws-gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WS_GATEWAY_PIPELINE", inst.dir.path().join("pipeline.toml"))
            .env("WS_GATEWAY_HOST", &inst.host)
            .env("WS_GATEWAY_PORT", inst.port.to_string())
            .env("WS_GATEWAY_API_KEY", TEST_API_KEY)
            .current_dir(inst.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        inst.child = Some(cmd.spawn().expect("spawn ws-gateway"));
        inst.paused = false;
        inst.starts += 1;
    }

    /// Waits until `/health` of `id` answers (any status); false after `deadline` or if the
    /// process exited.
    pub async fn wait_up(&mut self, id: &str, deadline: Duration) -> bool {
        let start = Instant::now();
        let url = format!("{}/health", self.get(id).base());
        while start.elapsed() < deadline {
            if !self.instances.get_mut(id).unwrap().running() {
                return false;
            }
            if reqwest::get(&url).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Starts `ids` at the same moment and waits until each serves `/health`.
    pub async fn start_together(&mut self, ids: &[&str]) {
        for id in ids {
            self.launch(id);
        }
        for id in ids {
            let up = self.wait_up(id, secs(60)).await;
            assert!(up, "{id} serves /health: {}", self.get(id).log_tail(40));
        }
    }

    /// Starts `id` and waits until it serves `/health`.
    pub async fn start(&mut self, id: &str) {
        self.start_together(&[id]).await;
    }

    /// `kill -9`, and waits for the exit.
    pub fn kill9(&mut self, id: &str) {
        let inst = self.instances.get_mut(id).unwrap();
        if let Some(mut c) = inst.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        inst.paused = false;
    }

    /// `kill -STOP`.
    pub fn pause(&mut self, id: &str) {
        let inst = self.instances.get_mut(id).unwrap();
        inst.signal("-STOP");
        inst.paused = true;
    }

    /// `kill -CONT`.
    pub fn resume(&mut self, id: &str) {
        let inst = self.instances.get_mut(id).unwrap();
        inst.signal("-CONT");
        inst.paused = false;
    }

    /// SIGTERM, and waits (at most `deadline`) for the exit status.
    pub async fn sigterm(
        &mut self,
        id: &str,
        deadline: Duration,
    ) -> Option<std::process::ExitStatus> {
        let inst = self.instances.get_mut(id).unwrap();
        inst.signal("-TERM");
        let start = Instant::now();
        loop {
            let child = inst.child.as_mut()?;
            if let Some(s) = child.try_wait().unwrap() {
                inst.child = None;
                return Some(s);
            }
            if start.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /api/v1/cluster` on `id`.
    pub async fn cluster_view(&self, id: &str) -> Option<Value> {
        let resp = http::client()
            .get(format!("{}/api/v1/cluster", self.get(id).base()))
            .timeout(secs(5))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Sum of `name` samples matching `labels` on `id`'s `/metrics` (0 when it does not answer).
    pub async fn metric(&self, id: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        super::metrics::scrape(&self.get(id).base())
            .await
            .sum(name, labels)
    }

    /// `GET /health` of `id`.
    pub async fn health(&self, id: &str) -> Option<Value> {
        let resp = reqwest::Client::new()
            .get(format!("{}/health", self.get(id).base()))
            .timeout(secs(5))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// Which instance's proxy the fake's connection `conn` came through.
    pub fn instance_of_conn(&self, peers: &BTreeMap<u64, SocketAddr>, conn: u64) -> Option<String> {
        let peer = peers.get(&conn)?;
        self.instances
            .values()
            .find(|i| i.bybit.owns(peer))
            .map(|i| i.id.clone())
    }

    /// Who holds each (path, topic) upstream now: the instance of each open connection that
    /// has it subscribed (an instance twice if two of its connections hold it).
    pub fn upstream(&self) -> BTreeMap<(String, String), Vec<String>> {
        let peers = self.fake.peers();
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (id, path, _, topics) in self.fake.connections() {
            let who = self
                .instance_of_conn(&peers, id)
                .unwrap_or_else(|| "?".into());
            for t in topics {
                out.entry((path.clone(), t)).or_default().push(who.clone());
            }
        }
        out
    }

    /// Waits until `topic` on `path` is held upstream by some instance other than `not`.
    pub async fn wait_held_by_other(
        &self,
        path: &str,
        topic: &str,
        not: &str,
        deadline: Duration,
    ) -> Option<String> {
        wait_until(deadline, || {
            let up = self.upstream();
            let who = up
                .get(&(path.to_owned(), topic.to_owned()))
                .and_then(|v| v.iter().find(|w| w.as_str() != not).cloned());
            async move { who }
        })
        .await
    }

    /// Waits until `/api/v1/cluster` on every running, unpaused instance lists exactly
    /// `members` and gives every topic of `expect` (path, topic) an owner among them, the same
    /// owner on all, and each owner holds its topics upstream exactly once across the cluster;
    /// returns the owner map (topic → (owner, epoch)) or `None` at `deadline`.
    pub async fn wait_settled(
        &self,
        members: &[&str],
        expect: &BTreeSet<(String, String)>,
        deadline: Duration,
    ) -> Option<BTreeMap<(String, String), (String, u64)>> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(map) = self.settled_once(members, expect).await {
                return Some(map);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// Waits until every (path, topic) of `expect` is held upstream exactly once, by one of
    /// `members` (the fake's view, whatever `/api/v1/cluster` says); returns topic → holder.
    pub async fn wait_upstream(
        &self,
        members: &[&str],
        expect: &BTreeSet<(String, String)>,
        deadline: Duration,
    ) -> Option<BTreeMap<(String, String), String>> {
        wait_until(deadline, || {
            let up = self.upstream();
            let map: Option<BTreeMap<_, _>> = expect
                .iter()
                .map(|k| match up.get(k).map(Vec::as_slice) {
                    Some([one]) if members.contains(&one.as_str()) => {
                        Some((k.clone(), one.clone()))
                    }
                    _ => None,
                })
                .collect();
            async move { map }
        })
        .await
    }

    async fn settled_once(
        &self,
        members: &[&str],
        expect: &BTreeSet<(String, String)>,
    ) -> Option<BTreeMap<(String, String), (String, u64)>> {
        let mut agreed: Option<BTreeMap<(String, String), (String, u64)>> = None;
        for id in members {
            let view = self.cluster_view(id).await?;
            let listed: BTreeSet<String> = instance_ids(&view);
            let want: BTreeSet<String> = members.iter().map(|s| (*s).to_owned()).collect();
            if listed != want {
                return None;
            }
            let owners = owners(&view);
            if expect.iter().any(|k| {
                owners
                    .get(k)
                    .is_none_or(|(o, _)| !want.contains(o.as_str()))
            }) {
                return None;
            }
            let mine: BTreeMap<_, _> = expect
                .iter()
                .map(|k| (k.clone(), owners[k].clone()))
                .collect();
            match &agreed {
                Some(a) if a != &mine => return None,
                _ => agreed = Some(mine),
            }
        }
        let agreed = agreed?;
        let up = self.upstream();
        for (k, (owner, _)) in &agreed {
            let holders = up.get(k)?;
            if holders.len() != 1 || &holders[0] != owner {
                return None;
            }
        }
        Some(agreed)
    }

    /// Stops every instance (SIGKILL), deletes the broker objects and the database.
    pub async fn finish(mut self) {
        for inst in self.instances.values_mut() {
            if inst.paused {
                inst.signal("-CONT");
                inst.paused = false;
            }
            if let Some(mut c) = inst.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        amqp::cleanup(&amqp_url(), &self.prefix, &[]).await;
        self.db.drop_database().await;
    }

    /// `<prefix>.<class>`.
    pub fn queue(&self, class: &str) -> String {
        format!("{}.{class}", self.prefix)
    }

    /// Waits until the class queues exist, then starts a [`Recorder`] on each of `classes`.
    pub async fn record(&self, classes: &[&str]) -> BTreeMap<String, Recorder> {
        let mut out = BTreeMap::new();
        for class in classes {
            let q = self.queue(class);
            assert!(wait_queue(&amqp_url(), &q, secs(30)).await, "{q} declared");
            out.insert((*class).to_owned(), Recorder::start(&q).await);
        }
        out
    }
}

/// The instance ids `/api/v1/cluster` lists.
pub fn instance_ids(view: &Value) -> BTreeSet<String> {
    view["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (path, topic) → (owner, epoch) as `/api/v1/cluster` gives them. The private stream is one
/// lease: listed as a topic `private`, it stands for each private topic.
pub fn owners(view: &Value) -> BTreeMap<(String, String), (String, u64)> {
    let mut out = listed_owners(view);
    if let Some(unit) = out
        .get(&(PRIVATE.to_owned(), "private".to_owned()))
        .cloned()
    {
        for t in ["execution", "order", "position", "wallet"] {
            out.entry((PRIVATE.to_owned(), t.to_owned()))
                .or_insert_with(|| unit.clone());
        }
    }
    out
}

fn listed_owners(view: &Value) -> BTreeMap<(String, String), (String, u64)> {
    view["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let path = path_of(t["category"].as_str().unwrap_or("private"));
                    Some((
                        (path.to_owned(), t["topic"].as_str()?.to_owned()),
                        (
                            t["owner"].as_str().unwrap_or("").to_owned(),
                            t["epoch"].as_u64().unwrap_or(0),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `owned_topics` of each instance (a count, or the length of a list).
pub fn owned_counts(view: &Value) -> BTreeMap<String, u64> {
    view["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    let n = match &i["owned_topics"] {
                        Value::Array(v) => v.len() as u64,
                        v => v.as_u64()?,
                    };
                    Some((i["id"].as_str()?.to_owned(), n))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One message as a recorder saw it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub at: Instant,
    pub instance: Option<String>,
    pub epoch: Option<u64>,
    pub event_key: Option<String>,
    pub topic: Option<String>,
    pub body: Value,
}

/// A header's value as text (strings as they are, numbers as digits).
fn header_text(props: &amqprs::BasicProperties, key: &str) -> Option<String> {
    let v = props.headers()?.get(&key.try_into().ok()?)?;
    let s = format!("{v:?}");
    let text = match v {
        amqprs::FieldValue::S(s) => String::from(s.clone()),
        _ => s,
    };
    Some(text)
}

/// The digits of a numeric header (`l(3)` or `"3"` → 3).
fn header_u64(props: &amqprs::BasicProperties, key: &str) -> Option<u64> {
    let t = header_text(props, key)?;
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A consumer of one queue that keeps every message (auto-ack) until dropped.
#[derive(Debug)]
pub struct Recorder {
    pub queue: String,
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: CancellationToken,
}

impl Recorder {
    pub async fn start(queue: &str) -> Self {
        let (conn, ch) = amqp::open(&amqp_url()).await;
        let mut rx = amqp::consume(&ch, queue).await;
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (sink, token) = (msgs.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let m: ConsumerMessage = tokio::select! {
                    () = token.cancelled() => break,
                    m = rx.recv() => match m { Some(m) => m, None => break },
                };
                let props = m.basic_properties.unwrap_or_default();
                let body = m.content.unwrap_or_default();
                let msg = Msg {
                    at: Instant::now(),
                    instance: header_text(&props, "instance"),
                    epoch: header_u64(&props, "epoch"),
                    event_key: header_text(&props, "event_key"),
                    topic: header_text(&props, "topic"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                sink.lock().unwrap().push(msg);
            }
            let _ = ch.close().await;
            let _ = conn.close().await;
        });
        Self {
            queue: queue.to_owned(),
            msgs,
            stop,
        }
    }

    /// Every message so far, in arrival order.
    pub fn msgs(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no message arrived for `quiet` (at most `deadline`).
    pub async fn settle(&self, quiet: Duration, deadline: Duration) {
        let start = Instant::now();
        let mut last = self.len();
        let mut since = Instant::now();
        while start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = self.len();
            if n != last {
                last = n;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Per topic, messages whose epoch is lower than one seen before on the same topic: (topic,
/// epoch seen, earlier highest epoch, instance).
pub fn epoch_regressions(msgs: &[Msg]) -> Vec<(String, u64, u64, String)> {
    let mut high: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for m in msgs {
        let (Some(topic), Some(epoch)) = (&m.topic, m.epoch) else {
            continue;
        };
        let h = high.entry(topic.clone()).or_insert(0);
        if epoch < *h {
            out.push((
                topic.clone(),
                epoch,
                *h,
                m.instance.clone().unwrap_or_default(),
            ));
        } else {
            *h = epoch;
        }
    }
    out
}

/// How many messages repeat an `event_key` seen before (per queue).
pub fn repeats(msgs: &[Msg]) -> usize {
    let mut seen = HashSet::new();
    msgs.iter()
        .filter_map(|m| m.event_key.as_ref())
        .filter(|k| !seen.insert((*k).clone()))
        .count()
}

/// Messages without the `instance` or `epoch` header.
pub fn without_headers(msgs: &[Msg]) -> usize {
    msgs.iter()
        .filter(|m| m.instance.is_none() || m.epoch.is_none())
        .count()
}

/// p50 and max of `xs` (sorted copy; zero when empty).
pub fn p50_max(xs: &[Duration]) -> (Duration, Duration) {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}
