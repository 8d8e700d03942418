//! One gateway process of a [`Cluster`]: its address, directory and proxies ([`Instance`],
//! [`BybitProxy`]), and how the suite starts, waits for, pauses, signals and kills it
//! (`launch`, `start`, `kill9`, `pause`, `resume`, `sigterm`). The binary is Cargo's
//! `CARGO_BIN_EXE_ws-gateway`, run with a cleared environment plus the test's variables.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::{Cluster, split_pg_url};
use crate::support::{TEST_API_KEY, amqp_url, binary::gateway_vars, proxy::TcpProxy, secs};

/// A TCP proxy to the fake Bybit that remembers the local address of every connection it
/// opens to the fake (the fake sees them as the peers of its connections).
#[derive(Debug)]
pub struct BybitProxy {
    pub addr: SocketAddr,
    outgoing: Arc<Mutex<HashSet<SocketAddr>>>,
    stop: CancellationToken,
}

impl BybitProxy {
    pub(super) async fn start(upstream: SocketAddr) -> Self {
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

    pub(super) fn signal(&self, sig: &str) {
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

impl Cluster {
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
}
