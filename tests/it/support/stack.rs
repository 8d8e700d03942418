//! The full stack of an end-to-end test: the fake Bybit, the real app in-process publishing
//! under its own prefix, a database, the real RabbitMQ; and waits on broker objects.

use std::time::Duration;

use fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit, LINEAR};
use serde_json::{Value, json};

use super::{
    TestApp, TestConfig, TestDatabase, amqp, amqp_url, fast_config, http::post, secs, spawn_app,
    sqlite_url, unique,
};

/// An app configuration against `fake` with working credentials and quick reconnects.
pub fn against(fake: &FakeBybit, database_url: &str) -> TestConfig {
    let mut config = TestConfig::default()
        .var("BYBIT_WS_URL", fake.base_url())
        .var("BYBIT_REST_URL", fake.rest_url())
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
