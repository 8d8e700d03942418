//! The pipeline file (`pipelines/default.toml`): *what* flows and how buffers behave.
//!
//! Every table and key is optional; a missing one takes the default documented on its field,
//! and the built-in defaults equal the shipped `pipelines/default.toml`. Unknown keys are an
//! error naming the key (`deny_unknown_fields`), so a typo never silently means "default".
//!
//! Some tables have a file of their own: `[source]` (`source.rs`), `[stages]` (`stages.rs`),
//! `[classes.*]` (`classes.rs`) and `[cluster]` (`cluster.rs`); the rest are here.

mod classes;
mod cluster;
mod source;
mod stages;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

pub use classes::{ClassConfig, QueueType, StreamConfig, parse_bytes};
pub use cluster::ClusterConfig;
pub use source::SourceConfig;
pub use stages::{BufferConfig, CapacityConfig, StagesConfig, WhenFull};

use crate::event::{Category, EventClass};

/// Why the pipeline file cannot be used; `Display` names the file (and the key).
#[derive(Debug, thiserror::Error)]
pub enum PipelineFileError {
    /// The pipeline file could not be read.
    #[error("WS_GATEWAY_PIPELINE: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline file is not valid (unknown key, wrong type).
    #[error("pipeline file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// The whole pipeline file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineFile {
    /// The Bybit connections.
    pub source: SourceConfig,
    /// Channel capacity and when-full policy per stage.
    pub stages: StagesConfig,
    /// RabbitMQ publishing.
    pub publish: PublishConfig,
    /// The persistence tee and the database sink.
    pub persistence: PersistenceConfig,
    /// The downstream `/ws` endpoint.
    pub downstream: DownstreamConfig,
    /// The HTTP server's limits (REST, `/ws` upgrades, `/metrics`).
    pub http: HttpConfig,
    /// General process behaviour.
    pub process: ProcessConfig,
    /// The REST catch-up after private (re)connects and restarts, and the snapshots.
    pub catchup: CatchupConfig,
    /// Several instances (`WS_GATEWAY_CLUSTER=postgres`): lease timings and the shared
    /// connection budget.
    pub cluster: ClusterConfig,
    /// Subscriptions held from startup (requesting service `pipeline` unless named).
    pub subscriptions: Vec<StartupSubscription>,
    /// Per event class: RabbitMQ queue type and optional stream (`[classes.orders]`); a class
    /// not named here gets a classic queue and no stream.
    pub classes: BTreeMap<EventClass, ClassConfig>,
}

impl PipelineFile {
    /// Reads and parses a pipeline file; errors name the file and the offending key.
    pub fn read(path: PathBuf) -> Result<Self, PipelineFileError> {
        let text = std::fs::read_to_string(&path).map_err(|source| PipelineFileError::Read {
            path: path.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PipelineFileError::Parse { path, message })
    }

    /// Parses pipeline TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut file: Self = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
        file.publish.shutdown_timeout = file.process.shutdown_timeout;
        file.publish.classes = file.classes.clone();
        file.cluster.check()?;
        Ok(file)
    }

    /// The RabbitMQ settings of one class (defaults when the file does not name it).
    pub fn class(&self, class: EventClass) -> ClassConfig {
        self.classes.get(&class).cloned().unwrap_or_default()
    }
}

/// RabbitMQ publishing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Unconfirmed messages in flight at most.
    pub confirm_window: usize,
    /// Market data as persistent messages (`delivery_mode=2`); private always are.
    pub persistent_market_data: bool,
    /// Private events held in memory while the broker is away before spilling to disk.
    pub private_memory_buffer: usize,
    /// Directory of the on-disk spool for private events.
    pub spool_dir: PathBuf,
    /// Bound of the spool file in bytes; when full, private events block the source.
    pub spool_max_bytes: u64,
    /// Upper bound of the first broker reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Cap of the broker reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// `process.shutdown_timeout` (copied when the file is parsed): a stop gives the broker
    /// half of it to confirm, then spools what is left.
    #[serde(skip)]
    pub shutdown_timeout: Duration,
    /// The `[classes.*]` tables (copied when the file is parsed): queue types and streams.
    #[serde(skip)]
    pub classes: BTreeMap<EventClass, ClassConfig>,
}

impl PublishConfig {
    /// The RabbitMQ settings of one class (defaults when the file does not name it).
    pub fn class(&self, class: EventClass) -> ClassConfig {
        self.classes.get(&class).cloned().unwrap_or_default()
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        Self {
            confirm_window: 256,
            persistent_market_data: false,
            private_memory_buffer: 10_000,
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 1 << 30,
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(15),
            classes: BTreeMap::new(),
        }
    }
}

/// What is persisted, and how the database sink batches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// Event classes the tee hands to persistence.
    pub classes: Vec<String>,
    /// Rows per insert at most.
    pub batch_size: usize,
    /// A partial batch is written after this long.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Upper bound of the first retry delay after a failed write.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Cap of the retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How often `last_event_at` of subscriptions is written.
    #[serde(with = "humantime_serde")]
    pub last_event_flush: Duration,
    /// Balance rows held in memory while the database is slow or away; past it the oldest row
    /// is dropped (counted, logged at ERROR).
    pub max_buffered_rows: usize,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            classes: vec!["balances".to_owned()],
            batch_size: 500,
            flush_interval: Duration::from_millis(100),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            last_event_flush: Duration::from_secs(1),
            max_buffered_rows: 200_000,
        }
    }
}

/// The downstream `/ws` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownstreamConfig {
    /// Topics one client may hold.
    pub max_topics_per_client: usize,
    /// Messages queued per client before it is closed with 1013.
    pub outbound_queue: usize,
    /// Server ping interval.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Interval of the INFO statistics line.
    #[serde(with = "humantime_serde")]
    pub stats_interval: Duration,
    /// Capacity of the in-process broadcast point the clients read from.
    pub broadcast_capacity: usize,
    /// Connected clients at most; an upgrade past it gets 503 `too_many_clients`.
    pub max_clients: usize,
    /// Largest client message (and frame) in bytes; a larger one closes the client with 1009.
    pub max_message_bytes: usize,
}

/// The HTTP server's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection that has not sent a complete request header this long after it opened (or
    /// after its previous response) is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open HTTP connections at most (including `/ws`); further ones wait in the kernel's
    /// accept queue until one closes.
    pub max_connections: usize,
    /// Largest request body in bytes; a larger one gets 413 `payload_too_large`.
    pub max_body_bytes: usize,
    /// Active subscriptions one requesting service may hold; past it a create gets 429
    /// `limit_exceeded`.
    pub max_subscriptions_per_service: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_body_bytes: 64 * 1024,
            max_subscriptions_per_service: 1000,
        }
    }
}

impl Default for DownstreamConfig {
    fn default() -> Self {
        Self {
            max_topics_per_client: 50,
            outbound_queue: 1024,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            stats_interval: Duration::from_secs(60),
            broadcast_capacity: 8192,
            max_clients: 256,
            max_message_bytes: 64 * 1024,
        }
    }
}

/// The REST catch-up (spec section 10): after every private (re)connect and at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatchupConfig {
    /// Whether the gateway catches up over REST at all (needs private credentials).
    pub enabled: bool,
    /// Longest time live private frames wait for the catch-up after a (re)connect.
    #[serde(with = "humantime_serde")]
    pub max_hold: Duration,
    /// Most live private frames held meanwhile; past it they are released.
    pub max_hold_frames: usize,
    /// With no cursor in the database yet (first start), how far back the first catch-up
    /// reaches; "0s": nothing from before the start.
    #[serde(with = "humantime_serde")]
    pub first_start_lookback: Duration,
    /// Wallet account types of the wallet snapshot.
    pub wallet_account_types: Vec<String>,
    /// Categories an all-in-one private topic (`order`, `execution`, `position`) covers.
    pub categories: Vec<Category>,
    /// Settle coins asked for where Bybit requires one (linear positions and open orders).
    pub settle_coins: Vec<String>,
    /// How often confirmed progress is written to the cursor table.
    #[serde(with = "humantime_serde")]
    pub cursor_flush: Duration,
    /// First wait before a failed catch-up is tried again; doubles up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest wait between two attempts of a failed catch-up.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Item identities remembered as published by this process (the oldest are forgotten).
    pub seen_capacity: usize,
    /// How far back Bybit's REST history reaches (`/v5/execution/list` and order history keep
    /// 2 years): a range older than this is not fetched (nor retried) but counted as a gap.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for CatchupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_hold: Duration::from_secs(5),
            max_hold_frames: 10_000,
            first_start_lookback: Duration::ZERO,
            wallet_account_types: vec!["UNIFIED".to_owned()],
            categories: Category::ALL.to_vec(),
            settle_coins: vec!["USDT".to_owned(), "USDC".to_owned()],
            cursor_flush: Duration::from_millis(500),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            seen_capacity: 100_000,
            retention: Duration::from_secs(730 * 24 * 3600),
        }
    }
}

/// Process-wide behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessConfig {
    /// How long a clean stop may take before unfinished tasks are named and the exit is non-zero.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout: Duration::from_secs(15),
        }
    }
}

/// A subscription held from startup, in the API's terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartupSubscription {
    /// `trades`, `ticker`, `orderbook`, `kline`, `liquidation`, `order`, `execution`, `position`, `balance`.
    pub channel_type: String,
    /// Instrument, for public channels.
    pub symbol: Option<String>,
    /// Category; `linear` for public channels when absent.
    pub category: Option<Category>,
    /// Order-book depth.
    pub depth: Option<u32>,
    /// Kline interval.
    pub interval: Option<String>,
    /// Who holds it; `pipeline` when absent.
    #[serde(default = "default_requester")]
    pub requesting_service: String,
}

fn default_requester() -> String {
    "pipeline".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_parses() {
        let text = include_str!("../../pipelines/default.toml");
        let file = PipelineFile::parse(text).unwrap();
        assert_eq!(file.source.ping_interval, Duration::from_secs(20));
        assert_eq!(file.stages.publish.when_full, WhenFull::DropOldest);
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        let file = PipelineFile::parse(include_str!("../../pipelines/default.toml")).unwrap();
        assert_eq!(
            format!("{file:?}"),
            format!("{:?}", PipelineFile::default())
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = PipelineFile::parse("[source]\npong_timeotu = \"1s\"\n").unwrap_err();
        assert!(err.contains("pong_timeotu"), "{err}");
    }
}
