//! Logging and metrics set-up, and the name of every metric the gateway exports.
//!
//! Metric names are constants here so that dashboards, tests and code agree; each module
//! records them where the event happens (log and count in one place).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod logging;

pub use logging::init_tracing;

/// Installs the Prometheus recorder once per process and returns its handle (for `/metrics`).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .expect("static, non-empty bucket list");
            let handle = builder
                .install_recorder()
                .expect("the recorder is installed once");
            describe();
            register_at_zero();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets without a scrape.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// `install_recorder` runs no upkeep: histogram samples pile up until a scrape renders them,
/// so with nobody scraping `/metrics` memory grows with every event (two samples per
/// published event). A small thread of its own folds them in every [`UPKEEP_INTERVAL`],
/// whatever runtime is (or is not) running.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "Cannot start the metrics upkeep thread; histograms are folded only on scrapes.");
    }
}

/// Latency buckets from 100 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

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

/// Every metric the gateway exports (dashboards, README and tests check against this list).
pub const ALL: &[&str] = &[
    FRAMES_RECEIVED,
    FRAMES_MALFORMED,
    CONNECTION_UP,
    CONNECTS,
    RECONNECTS,
    PONG_RTT,
    SUBSCRIBE_FAILURES,
    AUTH_FAILURES,
    ORDERBOOK_GAPS,
    ORDERBOOK_RESYNCS,
    TOPIC_SILENCE,
    STAGE_RECEIVED,
    STAGE_SENT,
    STAGE_DROPPED,
    UNKNOWN_TOPICS,
    EVENTS_PUBLISHED,
    EVENTS_CONFIRMED,
    PUBLISH_RETRIES,
    PUBLISH_CONFIRM_LATENCY,
    RECEIVE_TO_CONFIRM_LATENCY,
    BROKER_UP,
    SPOOLED,
    SPOOL_UNREADABLE,
    DB_WRITES,
    DB_WRITE_FAILURES,
    DB_UP,
    WS_CLIENTS,
    WS_EVICTIONS,
    WS_MESSAGES_SENT,
    WS_MESSAGES_RECEIVED,
    WS_TOPICS,
    HTTP_REQUESTS,
    HTTP_LATENCY,
];

/// Registers every metric at zero so `/metrics` lists it before its first event (dashboards and
/// alerts see 0, not "no data"). Metrics whose label values form a closed set get one series
/// per value (`endpoint`, `class`, `category`); the others get one unlabelled series that the
/// owning module's labelled series join. Gauges use `increment(0.0)`, which never overwrites a
/// value already set.
fn register_at_zero() {
    use metrics::{counter, gauge, histogram};
    const ENDPOINTS: [&str; 5] = ["spot", "linear", "inverse", "option", "private"];
    const CATEGORIES: [&str; 4] = ["spot", "linear", "inverse", "option"];
    for endpoint in ENDPOINTS {
        for name in [
            FRAMES_RECEIVED,
            FRAMES_MALFORMED,
            CONNECTS,
            SUBSCRIBE_FAILURES,
            UNKNOWN_TOPICS,
        ] {
            counter!(name, "endpoint" => endpoint).increment(0);
        }
    }
    for category in CATEGORIES {
        counter!(ORDERBOOK_GAPS, "category" => category).increment(0);
        counter!(ORDERBOOK_RESYNCS, "category" => category).increment(0);
    }
    for class in crate::event::EventClass::ALL {
        counter!(EVENTS_PUBLISHED, "class" => class.as_str()).increment(0);
        counter!(EVENTS_CONFIRMED, "class" => class.as_str()).increment(0);
    }
    for name in [
        RECONNECTS,
        AUTH_FAILURES,
        STAGE_RECEIVED,
        STAGE_SENT,
        STAGE_DROPPED,
        PUBLISH_RETRIES,
        SPOOLED,
        SPOOL_UNREADABLE,
        DB_WRITES,
        DB_WRITE_FAILURES,
        WS_EVICTIONS,
        WS_MESSAGES_SENT,
        WS_MESSAGES_RECEIVED,
        HTTP_REQUESTS,
    ] {
        counter!(name).increment(0);
    }
    for name in [
        CONNECTION_UP,
        TOPIC_SILENCE,
        BROKER_UP,
        DB_UP,
        WS_CLIENTS,
        WS_TOPICS,
    ] {
        gauge!(name).increment(0.0);
    }
    for name in [
        PONG_RTT,
        PUBLISH_CONFIRM_LATENCY,
        RECEIVE_TO_CONFIRM_LATENCY,
        HTTP_LATENCY,
    ] {
        // A handle with no sample renders as an empty histogram (count 0).
        let _ = histogram!(name);
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        FRAMES_RECEIVED,
        Unit::Count,
        "Data frames read from Bybit, by endpoint."
    );
    describe_counter!(
        FRAMES_MALFORMED,
        Unit::Count,
        "Frames that were not valid JSON or of no known shape."
    );
    describe_gauge!(
        CONNECTION_UP,
        "1 while a Bybit connection is open, by endpoint and shard."
    );
    describe_counter!(
        CONNECTS,
        Unit::Count,
        "Bybit connections opened, by endpoint."
    );
    describe_counter!(
        RECONNECTS,
        Unit::Count,
        "Bybit reconnects, by endpoint and reason."
    );
    describe_histogram!(
        PONG_RTT,
        Unit::Seconds,
        "Ping to pong round trip, by endpoint."
    );
    describe_counter!(
        SUBSCRIBE_FAILURES,
        Unit::Count,
        "Subscribe requests rejected or unanswered, by endpoint."
    );
    describe_counter!(
        AUTH_FAILURES,
        Unit::Count,
        "Failed private-stream authentications."
    );
    describe_counter!(
        ORDERBOOK_GAPS,
        Unit::Count,
        "Order-book update-id gaps, by category."
    );
    describe_counter!(
        ORDERBOOK_RESYNCS,
        Unit::Count,
        "Order-book topics resubscribed after a gap, by category."
    );
    describe_gauge!(
        TOPIC_SILENCE,
        Unit::Seconds,
        "Seconds since the quietest desired topic sent a frame, by endpoint."
    );
    describe_counter!(
        STAGE_RECEIVED,
        Unit::Count,
        "Items a pipeline stage took in, by stage."
    );
    describe_counter!(
        STAGE_SENT,
        Unit::Count,
        "Items a pipeline stage passed on, by stage."
    );
    describe_counter!(
        STAGE_DROPPED,
        Unit::Count,
        "Items a pipeline stage dropped, by stage and reason."
    );
    describe_counter!(
        UNKNOWN_TOPICS,
        Unit::Count,
        "Frames classified as other (unknown topic)."
    );
    describe_counter!(
        EVENTS_PUBLISHED,
        Unit::Count,
        "Events handed to RabbitMQ, by class."
    );
    describe_counter!(
        EVENTS_CONFIRMED,
        Unit::Count,
        "Events confirmed by RabbitMQ, by class."
    );
    describe_counter!(
        PUBLISH_RETRIES,
        Unit::Count,
        "Publishes NACKed or returned and retried."
    );
    describe_histogram!(
        PUBLISH_CONFIRM_LATENCY,
        Unit::Seconds,
        "Publish to broker confirm."
    );
    describe_histogram!(
        RECEIVE_TO_CONFIRM_LATENCY,
        Unit::Seconds,
        "Frame receipt to broker confirm."
    );
    describe_gauge!(BROKER_UP, "1 while the RabbitMQ connection is open.");
    describe_counter!(
        SPOOLED,
        Unit::Count,
        "Private events written to the on-disk spool."
    );
    describe_counter!(
        SPOOL_UNREADABLE,
        Unit::Count,
        "Spool records (or damaged stretches) that could not be read back."
    );
    describe_counter!(
        DB_WRITES,
        Unit::Count,
        "Rows written to the database, by table."
    );
    describe_counter!(
        DB_WRITE_FAILURES,
        Unit::Count,
        "Failed database write attempts, by table."
    );
    describe_gauge!(DB_UP, "1 while the database answers.");
    describe_histogram!(
        DB_WRITE_LATENCY,
        Unit::Seconds,
        "Frame receipt to balance row committed."
    );
    describe_gauge!(WS_CLIENTS, "Connected /ws clients.");
    describe_counter!(
        WS_EVICTIONS,
        Unit::Count,
        "/ws clients closed with 1013 for falling behind."
    );
    describe_counter!(
        WS_MESSAGES_SENT,
        Unit::Count,
        "Messages sent to /ws clients."
    );
    describe_gauge!(WS_TOPICS, "Distinct topics held by /ws clients.");
    describe_counter!(
        WS_MESSAGES_RECEIVED,
        Unit::Count,
        "Messages received from /ws clients."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests, by method, route and status."
    );
    describe_histogram!(
        HTTP_LATENCY,
        Unit::Seconds,
        "HTTP request latency, by method and route."
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_the_recorder_starts_the_upkeep_thread_so_unscraped_histograms_stay_bounded() {
        let _handle = super::metrics_handle();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("procfs")
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        };
        // A new thread carries its parent's name until it has started and renamed itself.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !names().iter().any(|n| n == "metrics-upkeep") {
            assert!(
                std::time::Instant::now() < deadline,
                "threads: {:?}",
                names()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
