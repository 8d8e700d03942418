//! Several real `ws-gateway` processes in cluster mode (issue 14, spec section 11): one fake
//! Bybit, one fresh PostgreSQL database, one queue prefix and API key; each instance on its own
//! address (127.0.0.2, .3, ...) with a TCP proxy of its own in front of PostgreSQL (to cut it
//! alone) and in front of the fake Bybit (so every upstream connection the fake sees is known to
//! belong to one instance). Faults: `kill -9`, `kill -STOP`/`-CONT`, SIGTERM, restart on the same
//! database. Readers: `GET /api/v1/cluster`, who holds each topic upstream, and [`Recorder`]s on
//! the class queues that keep every message's `instance`, `epoch`, `event_key` and `topic`.
//!
//! The instances' processes are in `process.rs`, the queue recorders in `recorder.rs`, and the
//! reading of `/api/v1/cluster` answers in `view.rs`; this module sets a cluster up, reads it
//! and waits for it to settle.

mod process;
mod recorder;
mod view;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use fake_bybit::FakeBybit;
use serde_json::Value;

pub use process::{BybitProxy, Instance};
pub use recorder::{Msg, Recorder, epoch_regressions, repeats, without_headers};
pub use view::{instance_ids, owned_counts, owners, path_of};

use super::{
    TestDatabase, amqp, amqp_url, http, postgres_base, proxy::TcpProxy, secs, stack::wait_queue,
    unique, wait_until,
};

/// The lease timings the suite runs with, as a `[cluster]` table of the pipeline file: the
/// shipped defaults, written out so that the figures the suite prints stay comparable.
pub const CLUSTER_TABLE: &str =
    "[cluster]\nrenew_interval = \"1s\"\nlease_ttl = \"3s\"\npoll_interval = \"500ms\"\n";

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

/// p50 and max of `xs` (sorted copy; zero when empty).
pub fn p50_max(xs: &[Duration]) -> (Duration, Duration) {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}
