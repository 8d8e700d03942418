//! The pipeline file (`pipelines/default.toml`): *what* flows and how buffers behave.
//!
//! Every table and key is optional; a missing one takes the default documented on its field,
//! and the built-in defaults equal the shipped `pipelines/default.toml`. Unknown keys are an
//! error naming the key (`deny_unknown_fields`), so a typo never silently means "default".

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

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

/// The RabbitMQ queue type of a class queue (and of the class's per-service queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// One node holds the queue (fast; unavailable while that node is down).
    #[default]
    Classic,
    /// Replicated over the cluster (Raft); the recommended type for private classes on a
    /// cluster.
    Quorum,
}

impl QueueType {
    /// `classic` / `quorum`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// `[classes.<class>]`: how a class is kept on RabbitMQ.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    /// Type of `<prefix>.<class>` and of `<prefix>.<class>.<service>`.
    pub queue_type: QueueType,
    /// An optional stream `<prefix>.<class>.stream` bound like the class queue.
    pub stream: Option<StreamConfig>,
}

/// `stream = { max_age = "24h", max_bytes = "10GB" }`: a stream's retention (whichever is hit
/// first; RabbitMQ removes whole segments).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Age past which segments are removed (`x-max-age`); none when absent.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Size past which the oldest segments are removed (`x-max-length-bytes`): bytes, or a
    /// number with `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB`.
    #[serde(default, deserialize_with = "de_bytes")]
    pub max_bytes: Option<u64>,
}

/// `"10GB"`, `"512MiB"`, `"1000"` or a TOML integer → bytes.
fn de_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::S(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Parses a byte size: `"10GB"`, `"512 MiB"`, `"1000"`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. \"10GB\" or \"512MiB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// What a bounded buffer does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: backpressure travels up to the source.
    #[default]
    Block,
    /// Drop the oldest item and count it. Never applied to private classes.
    DropOldest,
}

/// One buffer between stages.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Items the buffer holds.
    pub capacity: usize,
    /// What happens when it is full.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl BufferConfig {
    const fn new(capacity: usize, when_full: WhenFull) -> Self {
        Self {
            capacity,
            when_full,
        }
    }
}

/// A buffer whose when-full behaviour is fixed by what it protects, so it has no `when_full`
/// key (`stages.decode` always blocks, `stages.tee` never does).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Items the buffer holds.
    pub capacity: usize,
}

/// Bybit connection behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// Public categories connected at startup so reachability shows at once.
    pub connect_on_start: Vec<Category>,
    /// Interval between our `ping` ops.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A connection with no frame for `ping_interval + pong_timeout` is dead.
    #[serde(with = "humantime_serde")]
    pub pong_timeout: Duration,
    /// `expires` of the private `auth` op is now + this window.
    #[serde(with = "humantime_serde")]
    pub auth_expiry_window: Duration,
    /// How long to wait for a subscribe/auth ack before treating the request as failed.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Upper bound of the first reconnect delay (full jitter below it).
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// Cap of the exponential reconnect delay.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// During an outage (connect refused or unanswered), the exchange host is probed with a
    /// plain TCP connect this often, and a connection reconnects as soon as the probe sees the
    /// host back instead of sleeping out its backoff delay; `0s` disables the probe.
    #[serde(with = "humantime_serde")]
    pub reconnect_probe: Duration,
    /// Token bucket on new connections: burst size.
    pub connect_burst: u32,
    /// Token bucket on new connections: one token per this period.
    #[serde(with = "humantime_serde")]
    pub connect_refill: Duration,
    /// Bybit's limit of args per spot subscribe request.
    pub spot_args_per_request: usize,
    /// Args per request on other endpoints (Bybit does not cap them, we keep requests small).
    pub args_per_request: usize,
    /// Bybit's limit of characters of args per connection; past it we shard.
    pub max_args_chars_per_connection: usize,
    /// Bybit's limit of args (topics) per options connection; past it we shard.
    pub option_args_per_connection: usize,
    /// Capacity of each connection's outbound command queue (ping, subscribe, unsubscribe).
    pub command_capacity: usize,
    /// A topic Bybit rejected (`failed`) is subscribed again after a reconnect or a re-post
    /// only once this long has passed since it failed; the wait doubles with each failure in
    /// a row, up to `failed_retry_max`.
    #[serde(with = "humantime_serde")]
    pub failed_retry: Duration,
    /// Cap of the doubling failed-topic retry backoff.
    #[serde(with = "humantime_serde")]
    pub failed_retry_max: Duration,
    /// After a public reconnect, the live frames of a `publicTrade` topic are held at most
    /// this long (from its subscribe ack) while the trades missed in the gap are fetched over
    /// REST; then they flow and the gap is counted as lost. `0s` turns trade recovery off.
    #[serde(with = "humantime_serde")]
    pub trade_recovery_wait: Duration,
    /// Most live frames held per `publicTrade` topic during its recovery; past it the recovery
    /// is given up (the gap counted) and the frames flow.
    pub trade_recovery_hold: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            connect_on_start: vec![Category::Linear],
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(10),
            auth_expiry_window: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            reconnect_probe: Duration::from_secs(1),
            connect_burst: 10,
            connect_refill: Duration::from_secs(1),
            spot_args_per_request: 10,
            args_per_request: 10,
            max_args_chars_per_connection: 21_000,
            option_args_per_connection: 2_000,
            command_capacity: 256,
            failed_retry: Duration::from_secs(300),
            failed_retry_max: Duration::from_secs(3600),
            trade_recovery_wait: Duration::from_secs(5),
            trade_recovery_hold: 10_000,
        }
    }
}

/// Buffers between stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagesConfig {
    /// Source → decode: the source's output channel. Always `block`: backpressure reaches the
    /// sockets (a frame cannot be judged droppable before it is decoded).
    pub decode: CapacityConfig,
    /// Decode → classify.
    pub classify: BufferConfig,
    /// Classify → enrich.
    pub enrich: BufferConfig,
    /// Tee → persistence sink: never blocks the main path; past `capacity` (twice: the tee's
    /// buffer and the channel behind it) the oldest non-private event is dropped.
    pub tee: CapacityConfig,
    /// Enrich → publish (market data; private classes always block and spool).
    pub publish: BufferConfig,
}

impl Default for StagesConfig {
    fn default() -> Self {
        Self {
            decode: CapacityConfig { capacity: 1024 },
            classify: BufferConfig::new(1024, WhenFull::Block),
            enrich: BufferConfig::new(1024, WhenFull::Block),
            tee: CapacityConfig { capacity: 10_000 },
            publish: BufferConfig::new(10_000, WhenFull::DropOldest),
        }
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

/// Timings of the cluster control plane (spec section 11); read only in cluster mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How often the owned leases are renewed (one statement) and the heartbeat written.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// How long a lease lasts after its last renewal, judged by the database clock. The owner
    /// stops publishing earlier, at its own deadline (`ttl - renew_interval` after it sent the
    /// renewal).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the controller looks at the database even when no `NOTIFY` arrived.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// New upstream connections the whole cluster may open per `connect_window`.
    pub connect_budget: u32,
    /// The window of `connect_budget`.
    #[serde(with = "humantime_serde")]
    pub connect_window: Duration,
    /// Bybit REST requests the whole cluster may send per `rest_window` (Bybit counts per IP).
    pub rest_budget: u32,
    /// The window of `rest_budget`.
    #[serde(with = "humantime_serde")]
    pub rest_window: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            renew_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(3),
            poll_interval: Duration::from_millis(500),
            connect_budget: 300,
            connect_window: Duration::from_secs(300),
            rest_budget: 600,
            rest_window: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Checks the timings make sense together (the owner's deadline comes before expiry).
    pub fn check(&self) -> Result<(), String> {
        if self.renew_interval.is_zero() || self.poll_interval.is_zero() {
            return Err("cluster: renew_interval and poll_interval must be above 0".to_owned());
        }
        if self.lease_ttl < self.renew_interval * 2 {
            return Err("cluster: lease_ttl must be at least twice renew_interval".to_owned());
        }
        if self.connect_budget == 0 || self.connect_window.is_zero() {
            return Err("cluster: connect_budget and connect_window must be above 0".to_owned());
        }
        if self.rest_budget == 0 || self.rest_window.is_zero() {
            return Err("cluster: rest_budget and rest_window must be above 0".to_owned());
        }
        Ok(())
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
        let text = include_str!("../pipelines/default.toml");
        let file = PipelineFile::parse(text).unwrap();
        assert_eq!(file.source.ping_interval, Duration::from_secs(20));
        assert_eq!(file.stages.publish.when_full, WhenFull::DropOldest);
    }

    #[test]
    fn the_shipped_file_equals_the_built_in_defaults() {
        let file = PipelineFile::parse(include_str!("../pipelines/default.toml")).unwrap();
        assert_eq!(
            format!("{file:?}"),
            format!("{:?}", PipelineFile::default())
        );
    }

    #[test]
    fn when_full_is_refused_where_the_policy_is_fixed() {
        for stage in ["decode", "tee"] {
            let text = format!("[stages.{stage}]\ncapacity = 10\nwhen_full = \"block\"\n");
            let err = PipelineFile::parse(&text).unwrap_err();
            assert!(err.contains("when_full"), "{stage}: {err}");
        }
    }

    #[test]
    fn classes_take_a_queue_type_and_an_optional_stream() {
        let text = "[classes.orders]\nqueue_type = \"quorum\"\n\
                    [classes.executions]\nqueue_type = \"quorum\"\n\
                    stream = { max_age = \"24h\", max_bytes = \"10GB\" }\n\
                    [classes.trades]\nqueue_type = \"classic\"\n";
        let file = PipelineFile::parse(text).unwrap();
        assert_eq!(file.class(EventClass::Orders).queue_type, QueueType::Quorum);
        assert_eq!(file.class(EventClass::Orders).stream, None);
        let ex = file.publish.class(EventClass::Executions);
        assert_eq!(ex.queue_type, QueueType::Quorum);
        let stream = ex.stream.unwrap();
        assert_eq!(stream.max_age, Some(Duration::from_secs(86_400)));
        assert_eq!(stream.max_bytes, Some(10_000_000_000));
        assert_eq!(
            file.class(EventClass::Trades).queue_type,
            QueueType::Classic
        );
        assert_eq!(file.class(EventClass::Klines), ClassConfig::default());
        for (bad, named) in [
            ("[classes.order]\nqueue_type = \"quorum\"\n", "order"),
            ("[classes.orders]\nqueue_type = \"stream\"\n", "stream"),
            ("[classes.orders]\nqueu_type = \"quorum\"\n", "queu_type"),
            (
                "[classes.orders]\nstream = { max_bytes = \"10XB\" }\n",
                "10XB",
            ),
            (
                "[classes.orders]\nstream = { max_age = \"forever\" }\n",
                "forever",
            ),
        ] {
            let err = PipelineFile::parse(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = PipelineFile::parse("[source]\npong_timeotu = \"1s\"\n").unwrap_err();
        assert!(err.contains("pong_timeotu"), "{err}");
    }
}
