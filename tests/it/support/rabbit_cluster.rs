//! A three-node RabbitMQ cluster of the test's own (never the shared broker on 5672): each
//! node with its own config file (the machine's `/etc/rabbitmq/rabbitmq.conf` pins 5672), port,
//! distribution port, data and log dirs under a temp dir owned by `rabbitmq` (the server drops
//! to that user), node names unique to the run, and one Erlang cookie for the three nodes and
//! `rabbitmqctl` (`-setcookie`). Started, joined to the first node, and stopped by node name
//! (then by PID) when the guard drops, also when a test fails.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A running cluster; dropping it stops every node.
#[derive(Debug)]
pub struct RabbitCluster {
    /// `name@localhost` of each node.
    pub nodes: Vec<String>,
    /// AMQP port of each node.
    pub ports: Vec<u16>,
    cookie: String,
    dir: tempfile::TempDir,
    /// How long start and join took.
    pub started_in: Duration,
    /// The `rabbitmq-server` processes (reaped when the guard drops).
    children: Vec<std::process::Child>,
}

fn ctl(cookie: &str, node: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .arg("-n")
        .arg(node)
        .args(args)
        .env("RABBITMQ_CTL_ERL_ARGS", format!("-setcookie {cookie}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("rabbitmqctl -n {node} {args:?}: {text}"))
    }
}

impl RabbitCluster {
    /// Starts three nodes on three free ports from 5690 up, joins them and waits until the
    /// cluster reports three running nodes.
    pub async fn start() -> Self {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("cluster start")
    }

    fn start_blocking() -> Self {
        let started = Instant::now();
        let run = format!(
            "{}{}",
            std::process::id(),
            started.elapsed().subsec_nanos() % 10_000
        );
        let cookie = format!("wsgwcluster{run}");
        let dir = tempfile::Builder::new()
            .prefix("wsgw-cluster")
            .tempdir()
            .expect("temp dir");
        let mut ports = Vec::new();
        let mut port = 5690u16 + (std::process::id() % 50) as u16 * 3;
        while ports.len() < 3 {
            let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port + 20_000)).is_ok();
            if free {
                ports.push(port);
            }
            port += 1;
        }
        let nodes: Vec<String> = (0..3).map(|i| format!("wsgw{run}n{i}@localhost")).collect();
        let mut cluster = Self {
            nodes: nodes.clone(),
            ports: ports.clone(),
            cookie: cookie.clone(),
            dir,
            started_in: Duration::ZERO,
            children: Vec::new(),
        };
        for (i, (node, port)) in nodes.iter().zip(&ports).enumerate() {
            let d = cluster.node_dir(i);
            std::fs::create_dir_all(d.join("mnesia")).unwrap();
            std::fs::create_dir_all(d.join("log")).unwrap();
            std::fs::write(d.join("plugins"), "[].\n").unwrap();
            std::fs::write(
                d.join("rabbitmq.conf"),
                format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
            )
            .unwrap();
            let chown = Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(cluster.dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown the node dirs to rabbitmq");
            let _ = Command::new("chmod")
                .arg("755")
                .arg(cluster.dir.path())
                .status();
            let log = std::fs::File::create(d.join("out.log")).unwrap();
            let child = Command::new("rabbitmq-server")
                .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
                .env("RABBITMQ_NODENAME", node)
                .env("RABBITMQ_DIST_PORT", (port + 20_000).to_string())
                .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
                .env("RABBITMQ_LOG_BASE", d.join("log"))
                .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("plugins"))
                .env("RABBITMQ_PID_FILE", d.join("pid"))
                .env(
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    format!("-setcookie {cookie}"),
                )
                .env("RABBITMQ_CTL_ERL_ARGS", format!("-setcookie {cookie}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn rabbitmq-server");
            cluster.children.push(child);
        }
        // await_startup fails at once until the node has registered with epmd.
        std::thread::sleep(Duration::from_secs(3));
        for node in &nodes {
            let mut last = String::new();
            let ok =
                (0..5).any(
                    |_| match ctl(&cookie, node, &["await_startup", "--timeout", "60"]) {
                        Ok(_) => true,
                        Err(e) => {
                            last = e;
                            std::thread::sleep(Duration::from_secs(2));
                            false
                        }
                    },
                );
            assert!(ok, "node {node} did not start: {last}");
        }
        for node in &nodes[1..] {
            ctl(&cookie, node, &["stop_app"]).unwrap();
            ctl(&cookie, node, &["join_cluster", &nodes[0]]).unwrap();
            ctl(&cookie, node, &["start_app"]).unwrap();
        }
        let status = ctl(
            &cookie,
            &nodes[0],
            &["cluster_status", "--formatter", "json"],
        )
        .unwrap();
        for node in &nodes {
            assert!(
                status.contains(node.as_str()),
                "{node} in the cluster: {status}"
            );
        }
        cluster.started_in = started.elapsed();
        cluster
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.ports[i])
    }

    /// Every node's URL, comma-separated, in node order.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `rabbitmqctl -n <node i> <args>`.
    pub fn ctl(&self, i: usize, args: &[&str]) -> Result<String, String> {
        ctl(&self.cookie, &self.nodes[i], args)
    }

    /// [`RabbitCluster::ctl`] on a blocking thread (the test's runtime keeps running).
    pub async fn ctl_async(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let (cookie, node) = (self.cookie.clone(), self.nodes[i].clone());
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ctl(&cookie, &node, &args)
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            let _ = self.ctl(i, &["stop"]);
            // If rabbitmqctl could not reach it, stop it by its PID.
            if let Ok(pid) = std::fs::read_to_string(self.node_dir(i).join("pid")) {
                let pid = pid.trim();
                if !pid.is_empty()
                    && Command::new("kill")
                        .args(["-0", pid])
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
        }
        for child in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
