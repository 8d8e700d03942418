//! End to end: the real app against the fake Bybit, with the real RabbitMQ and PostgreSQL.
//! Each test drives the gateway the way its users do (REST, `/ws`, queues) and checks what
//! arrives at the far end.

mod balances;
mod broker;
mod metrics;
mod queues;
mod upstream;
mod ws;

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    amqp,
    api::post,
    fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit},
    helpers::{TestApp, TestConfig, TestDatabase, amqp_url, spawn_app, sqlite_url, unique},
    source::fast_config,
};

pub const LINEAR: &str = "/v5/public/linear";
pub const PRIVATE: &str = "/v5/private";

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An app configuration against `fake` with working credentials and quick reconnects.
pub fn against(fake: &FakeBybit, database_url: &str) -> TestConfig {
    let mut config = TestConfig::default()
        .var("BYBIT_WS_URL", fake.base_url())
        .var("DATABASE_URL", database_url)
        .var("BYBIT_API_KEY", FAKE_API_KEY)
        .var("BYBIT_API_SECRET", FAKE_API_SECRET);
    config.pipeline.source = fast_config(secs(20), secs(10));
    config
}

/// Where the app keeps its data for one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The whole stack of one test: fake Bybit, the app publishing under its own prefix, a
/// database, and the direct broker URL the test consumes from.
#[derive(Debug)]
pub struct Stack {
    pub fake: FakeBybit,
    pub app: TestApp,
    pub prefix: String,
    /// The broker as the test reaches it (not through any proxy).
    pub amqp: String,
    pub db: Option<TestDatabase>,
    pub _dir: tempfile::TempDir,
}

/// Options of [`Stack::start`].
#[derive(Debug, Clone)]
pub struct Options {
    pub db: Db,
    /// The broker URL the app uses (a proxy, or the real one when `None`).
    pub app_amqp: Option<String>,
    /// The database URL the app uses instead of the test database's (a proxy).
    pub app_db: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            app_amqp: None,
            app_db: None,
        }
    }
}

impl Stack {
    /// Starts the stack; `tweak` edits the app configuration last.
    pub async fn start(opts: Options, tweak: impl FnOnce(&mut TestConfig)) -> Self {
        let fake = FakeBybit::start().await;
        let dir = tempfile::tempdir().unwrap();
        let db = match opts.db {
            Db::Postgres => Some(TestDatabase::postgres().await),
            Db::Sqlite => None,
        };
        let db_url = match (&opts.app_db, &db) {
            (Some(url), _) => url.clone(),
            (None, Some(db)) => db.url.clone(),
            (None, None) => sqlite_url(dir.path()),
        };
        let prefix = unique("e2e");
        let direct = amqp_url();
        let mut config = against(&fake, &db_url)
            .var("AMQP_URL", opts.app_amqp.unwrap_or_else(|| direct.clone()))
            .var("WS_GATEWAY_SERVICE_NAME", &prefix);
        config.pipeline.publish.spool_dir = dir.path().join("spool");
        tweak(&mut config);
        let app = spawn_app(config).await;
        let stack = Self {
            fake,
            app,
            prefix,
            amqp: direct,
            db,
            _dir: dir,
        };
        assert!(
            wait_queue(&stack.amqp, &stack.queue("trades"), secs(30)).await,
            "the sink declared its topology"
        );
        stack
    }

    /// `<prefix>.<rest>`.
    pub fn queue(&self, rest: &str) -> String {
        format!("{}.{rest}", self.prefix)
    }

    /// Creates a subscription through the REST API and waits until the fake sees `topic`
    /// subscribed on `path`.
    pub async fn subscribe(&self, body: Value, path: &str, topic: &str) -> Value {
        let (status, sub) = post(&self.app, body).await;
        assert!(status.is_success(), "{status}: {sub}");
        assert!(
            self.fake.wait_subscribed(path, topic, secs(10)).await,
            "{topic} subscribed upstream"
        );
        sub
    }

    /// A trades subscription of `service` on linear `symbol`.
    pub async fn trades(&self, symbol: &str, service: &str) -> Value {
        self.subscribe(
            json!({"channel_type": "trades", "symbol": symbol, "requesting_service": service}),
            LINEAR,
            &format!("publicTrade.{symbol}"),
        )
        .await
    }

    /// Stops the app, deletes the broker objects (class queues and `extra` queues) and the
    /// database.
    pub async fn finish(self, extra: &[String]) {
        self.app.shutdown().await.expect("clean stop");
        amqp::cleanup(&self.amqp, &self.prefix, extra).await;
        if let Some(db) = &self.db {
            db.drop_database().await;
        }
    }
}

/// Whether `queue` exists (a fresh connection per check: a failed passive declare closes the
/// channel).
pub async fn queue_exists(url: &str, queue: &str) -> bool {
    let (conn, ch) = amqp::open(url).await;
    let found = ch
        .queue_declare(
            amqprs::channel::QueueDeclareArguments::new(queue)
                .passive(true)
                .finish(),
        )
        .await
        .is_ok();
    let _ = conn.close().await;
    found
}

/// Waits until `queue` exists; a short grace follows so that its binding (declared right
/// after it) is in place too.
pub async fn wait_queue(url: &str, queue: &str, deadline: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if queue_exists(url, queue).await {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The real `ws-gateway` binary in its own process (its own metrics registry), on a port the
/// test picked, logging to a file in its temp dir.
#[derive(Debug)]
pub struct Binary {
    pub child: std::process::Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Binary {
    /// Starts the binary with `vars` (plus host, port, API key, pipeline file) and waits until
    /// `/health` answers.
    pub async fn start(vars: &[(&str, String)], pipeline_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(&pipeline, pipeline_toml).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ws-gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WS_GATEWAY_PIPELINE", &pipeline)
            .env("WS_GATEWAY_HOST", "127.0.0.1")
            .env("WS_GATEWAY_PORT", port.to_string())
            .env("WS_GATEWAY_API_KEY", crate::helpers::TEST_API_KEY)
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the binary");
        let base = format!("http://127.0.0.1:{port}");
        let up = crate::helpers::wait_until(secs(30), || {
            let url = format!("{base}/health");
            async move { reqwest::get(url).await.ok().map(|_| ()) }
        })
        .await;
        assert!(up.is_some(), "the binary serves /health");
        Self { child, base, dir }
    }

    /// `POST /api/v1/subscriptions`.
    pub async fn post(&self, body: Value) -> Value {
        let resp = crate::api::client()
            .post(format!("{}/api/v1/subscriptions", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json().await.unwrap()
    }

    /// Sum of `name` samples matching `labels` on this process's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::metrics::scrape(&self.base)
            .await
            .matching(name, labels)
            .map(|s| s.value)
            .sum()
    }

    /// Sends SIGTERM and waits (at most `deadline`) for the exit status.
    pub async fn sigterm(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if started.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
