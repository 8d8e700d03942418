//! Test support, one home for every helper of the integration tests. This module: isolated
//! databases and broker names, `spawn_app` (the real app in-process on port 0), quick source
//! timings and deadline-bounded waits. Beside it:
//!
//! - [`stack`]: the full stack of an end-to-end test (fake Bybit, app, database, broker);
//! - [`binary`]: the real `ws-gateway` binary in its own process;
//! - [`source`]: `source::spawn` driven directly against the fake Bybit;
//! - [`amqp`]: a pipeline fed in-process ([`amqp::PipelineHarness`]), a consumer, cleanup;
//! - [`http`]: REST calls with the test key; [`wsclient`]: a `/ws` client and event builders;
//! - [`metrics`]: the `/metrics` parser; [`proxy`]: a TCP proxy to cut a service;
//! - [`instances`]: several real binaries in cluster mode (issue 14), their faults and readers.
//!
//! The fake Bybit itself is the dev-only `fake-bybit` workspace crate.
//!
//! The services are required, never skipped: PostgreSQL at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and RabbitMQ at `TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). A test that cannot reach them fails.
#![allow(dead_code)]

pub mod amqp;
pub mod binary;
pub mod http;
pub mod instances;
pub mod metrics;
pub mod proxy;
pub mod rabbit_cluster;
pub mod source;
pub mod stack;
pub mod wsclient;

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    sync::Once,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    app::App,
    config::Settings,
    pipeline_file::{PipelineFile, SourceConfig},
};

pub use fake_bybit::fixture;

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Quick timings for tests: short backoff, heartbeat as given.
pub fn fast_config(ping: Duration, pong: Duration) -> SourceConfig {
    SourceConfig {
        connect_on_start: Vec::new(),
        ping_interval: ping,
        pong_timeout: pong,
        ack_timeout: secs(2),
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        ..SourceConfig::default()
    }
}

/// Base URL of the test PostgreSQL server (a database name is appended per test).
pub fn postgres_base() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// URL of the test RabbitMQ.
pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A random lowercase suffix for per-test names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Logs to stderr under `TEST_LOG=1`.
pub fn init_test_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "debug,sqlx=warn".into()),
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A fresh PostgreSQL database for one test; dropped by [`TestDatabase::drop_database`].
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a uniquely named database on the test server.
    pub async fn postgres() -> Self {
        let base = postgres_base();
        let admin = Database::connect(&base)
            .await
            .expect("PostgreSQL must be reachable at TEST_DATABASE_URL");
        let name = format!("wsgw_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let (head, _) = base.rsplit_once('/').expect("database URL has a path");
        Self {
            url: format!("{head}/{name}"),
            name,
        }
    }

    /// A connection to this database with every migration applied (`store::connect`).
    pub async fn migrated(&self) -> sea_orm::DatabaseConnection {
        ws_gateway::store::connect(&secrecy::SecretString::from(self.url.clone()))
            .await
            .expect("connect and migrate the test database")
    }

    /// Drops the database (best effort; connections are terminated first).
    pub async fn drop_database(&self) {
        if let Ok(admin) = Database::connect(&postgres_base()).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                    self.name
                ))
                .await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {}", self.name))
                .await;
        }
    }
}

/// `ws://` address of a Bybit that takes TCP connections and never answers the WebSocket
/// handshake (one listener for the whole test process, never accepting). An app pointed at it
/// keeps its connection "connecting" until the ack timeout (10 s), so, unlike a refused port or
/// an unreachable host, no quick failed attempt marks wanted topics pending behind a test's back.
pub fn silent_bybit_url() -> String {
    static SILENT: std::sync::OnceLock<std::net::TcpListener> = std::sync::OnceLock::new();
    let listener = SILENT
        .get_or_init(|| std::net::TcpListener::bind("127.0.0.1:0").expect("bind the silent Bybit"));
    format!("ws://{}", listener.local_addr().expect("its address"))
}

/// A SQLite database URL in `dir` (the file lives as long as the temp dir).
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("ws-gateway.db").display())
}

/// What a test wants of its app.
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// Environment variables (as the operator would set them); port 0 and a fixed API key are
    /// added unless given.
    pub vars: HashMap<String, String>,
    /// The pipeline file; the built-in defaults unless changed.
    pub pipeline: PipelineFile,
}

impl Default for TestConfig {
    fn default() -> Self {
        let mut pipeline = PipelineFile::default();
        pipeline.source.connect_on_start.clear();
        Self {
            vars: HashMap::new(),
            pipeline,
        }
    }
}

impl TestConfig {
    /// Sets a variable.
    pub fn var(mut self, k: &str, v: impl Into<String>) -> Self {
        self.vars.insert(k.to_owned(), v.into());
        self
    }
}

pub const TEST_API_KEY: &str = "test-api-key";

/// A running app and the handles tests use.
#[derive(Debug)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub api_key: String,
    pub stop: CancellationToken,
    pub registry: ws_gateway::subscriptions::SubscriptionHandle,
    pub health: std::sync::Arc<ws_gateway::health::HealthBoard>,
    pub events: tokio::sync::broadcast::Sender<std::sync::Arc<ws_gateway::event::Event>>,
    pub run: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// `http://127.0.0.1:<port>`.
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the app as SIGTERM would and returns its result.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.run.await.expect("app task panicked")
    }
}

/// Builds and runs the real app in-process with ports 0.
pub async fn spawn_app(config: TestConfig) -> TestApp {
    init_test_log();
    let mut vars = config.vars;
    vars.entry("WS_GATEWAY_HOST".into())
        .or_insert_with(|| "127.0.0.1".into());
    vars.entry("WS_GATEWAY_PORT".into())
        .or_insert_with(|| "0".into());
    vars.entry("WS_GATEWAY_API_KEY".into())
        .or_insert_with(|| TEST_API_KEY.into());
    vars.entry("WS_GATEWAY_PIPELINE".into())
        .or_insert_with(|| concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/default.toml").into());
    let mut settings = Settings::from_vars(&vars).expect("test settings are valid");
    settings.pipeline = config.pipeline;
    let api_key = vars["WS_GATEWAY_API_KEY"].clone();
    let app = App::build(settings).await.expect("app builds");
    let addr = app.api_addr();
    let stop = app.shutdown_token();
    let registry = app.registry();
    let health = app.health();
    let events = app.events();
    let run = tokio::spawn(app.run());
    TestApp {
        addr,
        api_key,
        stop,
        registry,
        health,
        events,
        run,
    }
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub async fn wait_until<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
