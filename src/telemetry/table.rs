//! The metric table: every metric the gateway exports, in one place.
//!
//! [`METRICS`] drives the name list ([`ALL`]), the `describe_*` calls, the registration at zero
//! and the README's table (a test compares them). Names are constants so that dashboards, tests
//! and code agree; each module records them where the event happens (log and count in one
//! place). A new metric is one constant and one row here.

// --- source ---
/// Data frames read from Bybit, by `endpoint`.
pub const FRAMES_RECEIVED: &str = "ws_gateway_frames_received_total";
/// Frames that were not valid JSON or not a known shape, by `endpoint`.
pub const FRAMES_MALFORMED: &str = "ws_gateway_frames_malformed_total";
/// 1 while a connection is open, by `endpoint`, `shard`.
pub const CONNECTION_UP: &str = "ws_gateway_connection_up";
/// New connections opened, by `endpoint`.
pub const CONNECTS: &str = "ws_gateway_connects_total";
/// Reconnects, by `endpoint` and `reason`.
pub const RECONNECTS: &str = "ws_gateway_reconnects_total";
/// Ping → pong round trip, by `endpoint`.
pub const PONG_RTT: &str = "ws_gateway_pong_rtt_seconds";
/// Subscribe requests rejected by Bybit (or unanswered), by `endpoint`.
pub const SUBSCRIBE_FAILURES: &str = "ws_gateway_subscribe_failures_total";
/// Failed private authentications.
pub const AUTH_FAILURES: &str = "ws_gateway_auth_failures_total";
/// Order-book `u` gaps, by `category`.
pub const ORDERBOOK_GAPS: &str = "ws_gateway_orderbook_gaps_total";
/// Order-book topics resubscribed after a gap, by `category`.
pub const ORDERBOOK_RESYNCS: &str = "ws_gateway_orderbook_resyncs_total";
/// Public trades missed in a reconnect gap and published as recovered, by `category`.
pub const TRADES_RECOVERED: &str = "ws_gateway_trades_recovered_total";
/// Public trades missed in a reconnect gap that REST no longer had, by `category` (counted
/// when trade ids are sequential numbers).
pub const TRADES_LOST: &str = "ws_gateway_trades_lost_total";
/// Public trade gaps not (fully) recovered (REST failed, too slow, or no longer had the
/// oldest missed trades), by `category`.
pub const TRADE_GAPS_LOST: &str = "ws_gateway_trade_gaps_lost_total";
/// Seconds since the quietest desired topic last sent a frame, by `endpoint`.
pub const TOPIC_SILENCE: &str = "ws_gateway_topic_max_silence_seconds";

// --- pipeline stages ---
/// Items a stage took in, by `stage`.
pub const STAGE_RECEIVED: &str = "ws_gateway_stage_received_total";
/// Items a stage passed on, by `stage`.
pub const STAGE_SENT: &str = "ws_gateway_stage_sent_total";
/// Items a stage dropped, by `stage` and `reason`.
pub const STAGE_DROPPED: &str = "ws_gateway_stage_dropped_total";
/// Events classified as `other` (unknown topic), by `endpoint`.
pub const UNKNOWN_TOPICS: &str = "ws_gateway_unknown_topics_total";

// --- publish ---
/// Events handed to the broker, by `class`.
pub const EVENTS_PUBLISHED: &str = "ws_gateway_events_published_total";
/// Events confirmed by the broker, by `class`.
pub const EVENTS_CONFIRMED: &str = "ws_gateway_events_confirmed_total";
/// Publishes NACKed or returned and retried, by `class`, `reason`.
pub const PUBLISH_RETRIES: &str = "ws_gateway_publish_retries_total";
/// Publish → confirm latency.
pub const PUBLISH_CONFIRM_LATENCY: &str = "ws_gateway_publish_confirm_seconds";
/// Frame receipt → broker confirm latency.
pub const RECEIVE_TO_CONFIRM_LATENCY: &str = "ws_gateway_receive_to_confirm_seconds";
/// 1 while the broker connection is open.
pub const BROKER_UP: &str = "ws_gateway_broker_up";
/// 1 for the RabbitMQ node in use, 0 for the others of `AMQP_URL`, by `node` (`host:port`).
pub const BROKER_NODE: &str = "ws_gateway_broker_node";
/// Connections made to another RabbitMQ node than the one last in use.
pub const BROKER_FAILOVERS: &str = "ws_gateway_broker_failovers_total";
/// Publish → confirm latency by the `queue_type` of the event's class queue.
pub const PUBLISH_CONFIRM_BY_QUEUE_TYPE: &str = "ws_gateway_publish_confirm_by_queue_type_seconds";
/// Private events written to the on-disk spool.
pub const SPOOLED: &str = "ws_gateway_spooled_events_total";
/// Spool records (or damaged stretches) that could not be read back: private events lost.
pub const SPOOL_UNREADABLE: &str = "ws_gateway_spool_unreadable_records_total";

// --- persistence ---
/// Rows written, by `table`.
pub const DB_WRITES: &str = "ws_gateway_db_writes_total";
/// Failed write attempts, by `table`.
pub const DB_WRITE_FAILURES: &str = "ws_gateway_db_write_failures_total";
/// 1 while the database answers.
pub const DB_UP: &str = "ws_gateway_db_up";
/// Frame receipt → balance row committed (spec: ≤ 1 s for 99 % in normal operation).
pub const DB_WRITE_LATENCY: &str = "ws_gateway_receive_to_db_write_seconds";

// --- downstream /ws ---
/// Connected `/ws` clients.
pub const WS_CLIENTS: &str = "ws_gateway_ws_clients";
/// `/ws` clients closed with 1013 for falling behind.
pub const WS_EVICTIONS: &str = "ws_gateway_ws_evictions_total";
/// Messages sent to `/ws` clients.
pub const WS_MESSAGES_SENT: &str = "ws_gateway_ws_messages_sent_total";
/// Distinct topics held by `/ws` clients.
pub const WS_TOPICS: &str = "ws_gateway_ws_topics";
/// Messages received from `/ws` clients.
pub const WS_MESSAGES_RECEIVED: &str = "ws_gateway_ws_messages_received_total";

// --- HTTP ---
/// HTTP requests, by `method`, `route`, `status`.
pub const HTTP_REQUESTS: &str = "ws_gateway_http_requests_total";
/// HTTP request latency, by `method`, `route`.
pub const HTTP_LATENCY: &str = "ws_gateway_http_request_duration_seconds";

// --- Bybit REST ---
/// Bybit REST requests, by `endpoint` and `ret_code` (Bybit's `retCode`, `http_<status>`, or
/// `transport`).
pub const REST_REQUESTS: &str = "ws_gateway_rest_requests_total";
/// Bybit server time − local time, in seconds (last measurement).
pub const SERVER_TIME_OFFSET: &str = "ws_gateway_server_time_offset_seconds";

// --- catch-up ---
/// Items published as `recovered` events by the REST catch-up, by `topic` (execution, order,
/// position, wallet).
pub const CATCHUP_RECOVERED: &str = "ws_gateway_catchup_recovered_total";
/// Private `auth` ack → recovered events handed to the pipeline.
pub const CATCHUP_DURATION: &str = "ws_gateway_catchup_duration_seconds";
/// Catch-ups whose REST calls failed (a gap), by `topic`.
pub const CATCHUP_GAPS: &str = "ws_gateway_catchup_gaps_total";
/// Gaps not recovered yet (their catch-up is being retried).
pub const CATCHUP_GAPS_OPEN: &str = "ws_gateway_catchup_gaps_open";

// --- cluster ---
/// Leases this instance gained or lost, by `change` (`claimed`, `handed_in`, `handed_out`,
/// `released`, `lost`).
pub const CLUSTER_OWNERSHIP_CHANGES: &str = "ws_gateway_cluster_ownership_changes_total";
/// Lease renewals that failed (database unreachable or slow).
pub const CLUSTER_RENEW_FAILURES: &str = "ws_gateway_cluster_renew_failures_total";
/// Units (public topics, the private stream) this instance owns now.
pub const CLUSTER_OWNED: &str = "ws_gateway_cluster_owned_units";

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The README's word for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Which series exist at zero before the first event: one per value of a closed label set, or
/// one unlabelled series that the owning module's labelled series join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// One series per endpoint (`spot`, `linear`, `inverse`, `option`, `private`).
    Endpoint,
    /// One series per public category.
    Category,
    /// One series per event class.
    Class,
    /// One unlabelled series.
    Unlabelled,
}

/// One row of the metric table.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The exported name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names (low cardinality: never a symbol or topic).
    pub labels: &'static [&'static str],
    /// Series registered at startup.
    pub zero: Zero,
    /// `# HELP` text and the README's "meaning" column.
    pub help: &'static str,
}

/// Every metric the gateway exports.
pub const METRICS: &[MetricDef] = &[
    MetricDef {
        name: FRAMES_RECEIVED,
        kind: Kind::Counter,
        labels: &["endpoint"],
        zero: Zero::Endpoint,
        help: "data frames read from Bybit",
    },
    MetricDef {
        name: FRAMES_MALFORMED,
        kind: Kind::Counter,
        labels: &["endpoint"],
        zero: Zero::Endpoint,
        help: "frames that were not JSON or of no known shape (dropped, logged at DEBUG)",
    },
    MetricDef {
        name: CONNECTION_UP,
        kind: Kind::Gauge,
        labels: &["endpoint", "shard"],
        zero: Zero::Unlabelled,
        help: "1 while that Bybit connection is open",
    },
    MetricDef {
        name: CONNECTS,
        kind: Kind::Counter,
        labels: &["endpoint"],
        zero: Zero::Endpoint,
        help: "Bybit connections opened",
    },
    MetricDef {
        name: RECONNECTS,
        kind: Kind::Counter,
        labels: &["endpoint", "reason"],
        zero: Zero::Unlabelled,
        help: "reconnects and why (pong timeout, closed, error, …)",
    },
    MetricDef {
        name: PONG_RTT,
        kind: Kind::Histogram,
        labels: &["endpoint"],
        zero: Zero::Unlabelled,
        help: "ping → pong round trip",
    },
    MetricDef {
        name: SUBSCRIBE_FAILURES,
        kind: Kind::Counter,
        labels: &["endpoint"],
        zero: Zero::Endpoint,
        help: "subscribe requests rejected by Bybit or unanswered",
    },
    MetricDef {
        name: AUTH_FAILURES,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "failed private-stream authentications",
    },
    MetricDef {
        name: ORDERBOOK_GAPS,
        kind: Kind::Counter,
        labels: &["category"],
        zero: Zero::Category,
        help: "order-book `u` gaps detected",
    },
    MetricDef {
        name: ORDERBOOK_RESYNCS,
        kind: Kind::Counter,
        labels: &["category"],
        zero: Zero::Category,
        help: "order-book topics resubscribed for a fresh snapshot",
    },
    MetricDef {
        name: TRADES_RECOVERED,
        kind: Kind::Counter,
        labels: &["category"],
        zero: Zero::Category,
        help: "public trades missed in a reconnect gap and published as `recovered` (REST)",
    },
    MetricDef {
        name: TRADES_LOST,
        kind: Kind::Counter,
        labels: &["category"],
        zero: Zero::Category,
        help: "public trades missed in a reconnect gap that REST no longer had (when trade ids are sequential)",
    },
    MetricDef {
        name: TRADE_GAPS_LOST,
        kind: Kind::Counter,
        labels: &["category"],
        zero: Zero::Category,
        help: "public trade gaps not fully recovered (REST failed or too slow, or no longer had the oldest missed trades)",
    },
    MetricDef {
        name: TOPIC_SILENCE,
        kind: Kind::Gauge,
        labels: &["endpoint"],
        zero: Zero::Unlabelled,
        help: "seconds since the quietest desired topic sent a frame",
    },
    MetricDef {
        name: STAGE_RECEIVED,
        kind: Kind::Counter,
        labels: &["stage"],
        zero: Zero::Unlabelled,
        help: "items a pipeline stage took in",
    },
    MetricDef {
        name: STAGE_SENT,
        kind: Kind::Counter,
        labels: &["stage"],
        zero: Zero::Unlabelled,
        help: "items a pipeline stage passed on",
    },
    MetricDef {
        name: STAGE_DROPPED,
        kind: Kind::Counter,
        labels: &["stage", "reason"],
        zero: Zero::Unlabelled,
        help: r#"items dropped (`drop_oldest` buffers, malformed input, `/ws` dispatcher lag as `stage="ws_fanout"`)"#,
    },
    MetricDef {
        name: UNKNOWN_TOPICS,
        kind: Kind::Counter,
        labels: &["endpoint"],
        zero: Zero::Endpoint,
        help: "frames classified as `other`",
    },
    MetricDef {
        name: EVENTS_PUBLISHED,
        kind: Kind::Counter,
        labels: &["class"],
        zero: Zero::Class,
        help: "events handed to RabbitMQ",
    },
    MetricDef {
        name: EVENTS_CONFIRMED,
        kind: Kind::Counter,
        labels: &["class"],
        zero: Zero::Class,
        help: "events confirmed by RabbitMQ (publisher confirms)",
    },
    MetricDef {
        name: PUBLISH_RETRIES,
        kind: Kind::Counter,
        labels: &["class", "reason"],
        zero: Zero::Unlabelled,
        help: "publishes NACKed or returned and retried",
    },
    MetricDef {
        name: PUBLISH_CONFIRM_LATENCY,
        kind: Kind::Histogram,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "publish → broker confirm",
    },
    MetricDef {
        name: RECEIVE_TO_CONFIRM_LATENCY,
        kind: Kind::Histogram,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "frame receipt → broker confirm (end-to-end latency)",
    },
    MetricDef {
        name: BROKER_UP,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "1 while the RabbitMQ connection is open",
    },
    MetricDef {
        name: BROKER_NODE,
        kind: Kind::Gauge,
        labels: &["node"],
        zero: Zero::Unlabelled,
        help: "1 for the RabbitMQ node of `AMQP_URL` in use (`node` = `host:port`), 0 for the others",
    },
    MetricDef {
        name: BROKER_FAILOVERS,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "connections made to another RabbitMQ node than the one last in use",
    },
    MetricDef {
        name: PUBLISH_CONFIRM_BY_QUEUE_TYPE,
        kind: Kind::Histogram,
        labels: &["queue_type"],
        zero: Zero::Unlabelled,
        help: "publish → broker confirm by the queue type of the event's class (`classic`, `quorum`)",
    },
    MetricDef {
        name: SPOOLED,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "private events written to the on-disk spool while the broker was away",
    },
    MetricDef {
        name: SPOOL_UNREADABLE,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "spool records (or damaged stretches) that could not be read back and were skipped: private events lost",
    },
    MetricDef {
        name: DB_WRITES,
        kind: Kind::Counter,
        labels: &["table"],
        zero: Zero::Unlabelled,
        help: "rows written",
    },
    MetricDef {
        name: DB_WRITE_FAILURES,
        kind: Kind::Counter,
        labels: &["table"],
        zero: Zero::Unlabelled,
        help: "failed write attempts (retried)",
    },
    MetricDef {
        name: DB_UP,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "1 while the database answers",
    },
    MetricDef {
        name: DB_WRITE_LATENCY,
        kind: Kind::Histogram,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "frame receipt → balance row committed (spec: ≤ 1 s for 99 % in normal operation)",
    },
    MetricDef {
        name: WS_CLIENTS,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "connected `/ws` clients",
    },
    MetricDef {
        name: WS_EVICTIONS,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "`/ws` clients closed with 1013 because their outbound queue was full",
    },
    MetricDef {
        name: WS_MESSAGES_SENT,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "messages (envelopes and replies) sent to `/ws` clients",
    },
    MetricDef {
        name: WS_TOPICS,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "distinct topics held by `/ws` clients",
    },
    MetricDef {
        name: WS_MESSAGES_RECEIVED,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "messages received from `/ws` clients",
    },
    MetricDef {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        labels: &["method", "route", "status"],
        zero: Zero::Unlabelled,
        help: "HTTP requests",
    },
    MetricDef {
        name: HTTP_LATENCY,
        kind: Kind::Histogram,
        labels: &["method", "route"],
        zero: Zero::Unlabelled,
        help: "HTTP request latency",
    },
    MetricDef {
        name: REST_REQUESTS,
        kind: Kind::Counter,
        labels: &["endpoint", "ret_code"],
        zero: Zero::Unlabelled,
        help: "Bybit REST requests by endpoint and `retCode` (`http_<status>`, `transport` when there is none)",
    },
    MetricDef {
        name: SERVER_TIME_OFFSET,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "Bybit server time minus local time (last `/v5/market/time` measurement)",
    },
    MetricDef {
        name: CATCHUP_RECOVERED,
        kind: Kind::Counter,
        labels: &["topic"],
        zero: Zero::Unlabelled,
        help: "items published as `recovered` events by the REST catch-up, by topic (`execution`, `order`, `position`, `wallet`)",
    },
    MetricDef {
        name: CATCHUP_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "private `auth` ack → recovered events handed to the pipeline",
    },
    MetricDef {
        name: CATCHUP_GAPS,
        kind: Kind::Counter,
        labels: &["topic"],
        zero: Zero::Unlabelled,
        help: "catch-ups whose REST calls failed, leaving a gap (retried in the background), by topic",
    },
    MetricDef {
        name: CATCHUP_GAPS_OPEN,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "gaps not recovered yet (their catch-up is still being retried)",
    },
    MetricDef {
        name: CLUSTER_OWNERSHIP_CHANGES,
        kind: Kind::Counter,
        labels: &["change"],
        zero: Zero::Unlabelled,
        help: "leases this instance gained or lost (`claimed`, `handed_in`, `handed_out`, `released`, `lost`); cluster mode",
    },
    MetricDef {
        name: CLUSTER_RENEW_FAILURES,
        kind: Kind::Counter,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "lease renewals that failed (database unreachable or slow); cluster mode",
    },
    MetricDef {
        name: CLUSTER_OWNED,
        kind: Kind::Gauge,
        labels: &[],
        zero: Zero::Unlabelled,
        help: "units (public topics, the private stream) this instance owns; cluster mode",
    },
];

/// Every metric name, in table order (dashboards, README and tests check against this list).
pub const ALL: [&str; METRICS.len()] = names();

const fn names() -> [&'static str; METRICS.len()] {
    let mut out = [""; METRICS.len()];
    let mut i = 0;
    while i < METRICS.len() {
        out[i] = METRICS[i].name;
        i += 1;
    }
    out
}
