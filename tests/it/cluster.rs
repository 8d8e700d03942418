//! RabbitMQ as a cluster (issue 15, spec section 4): several nodes in `AMQP_URL`, queue types
//! per class, streams per class, and a clear stop on a queue declared otherwise.
//!
//! The failover test starts a three-node cluster of its own (`support::rabbit_cluster`, about
//! 40 s) and is `#[ignore]`d; `.ci/run` runs it as its own step:
//! `cargo test --test it cluster -- --ignored --test-threads 1`. The others use the shared
//! broker with a fresh prefix and run with every `cargo test`.

use std::{collections::HashSet, time::Duration};

use amqprs::{
    FieldTable, FieldValue,
    channel::{
        BasicAckArguments, BasicConsumeArguments, BasicQosArguments, QueueDeclareArguments,
        QueueDeleteArguments,
    },
};
use ws_gateway::{
    event::{Endpoint, EventClass},
    pipeline_file::{ClassConfig, PipelineFile, QueueType, StreamConfig},
    sink::rabbitmq::topology,
};

use crate::support::{
    amqp::{LINEAR, PipelineHarness, cleanup, collect, consume, open, trade_text},
    amqp_url,
    binary::Binary,
    fixture,
    metrics::metric_sum,
    rabbit_cluster::RabbitCluster,
    secs, silent_bybit_url, unique, wait_until,
};

const LONG: Duration = Duration::from_secs(60);

const PRIVATE: [EventClass; 4] = [
    EventClass::Orders,
    EventClass::Executions,
    EventClass::Positions,
    EventClass::Balances,
];

/// Private classes quorum (the recommended setting on a cluster), market data classic.
fn quorum_private(f: &mut PipelineFile) {
    for class in PRIVATE {
        f.classes.insert(
            class,
            ClassConfig {
                queue_type: QueueType::Quorum,
                stream: None,
            },
        );
    }
    f.publish.classes = f.classes.clone();
}

/// Every event's `seq` in the order the messages came, and the distinct ones (first kept).
fn seqs(msgs: &[crate::support::amqp::Received]) -> (Vec<u64>, Vec<u64>) {
    let all: Vec<u64> = msgs
        .iter()
        .map(|m| m.json()["seq"].as_u64().unwrap())
        .collect();
    let mut seen = HashSet::new();
    let distinct = all.iter().copied().filter(|s| seen.insert(*s)).collect();
    (all, distinct)
}

/// The node label of the gateway's `ws_gateway_broker_node` series that is 1, if any.
fn node_in_use(cluster: &RabbitCluster) -> Option<usize> {
    cluster.ports.iter().position(|p| {
        metric_sum(
            "ws_gateway_broker_node",
            &format!("node=\"127.0.0.1:{p}\"}} 1"),
        ) >= 1.0
    })
}

#[tokio::test]
#[ignore = "starts a three-node RabbitMQ cluster (about 40 s); .ci/run runs it as its own step"]
async fn cluster_failover_loses_no_private_event_and_market_loss_equals_the_drop_counter() {
    // Arrange: a cluster of our own, the gateway given all three nodes, private classes quorum.
    let cluster = RabbitCluster::start().await;
    eprintln!(
        "cluster of 3 nodes up and joined in {:?}",
        cluster.started_in
    );
    let failovers_before = metric_sum("ws_gateway_broker_failovers_total", "");
    let mut h = PipelineHarness::start(Some(cluster.urls()), |f| {
        quorum_private(f);
        // Transient messages in a classic queue do not survive its node's restart; persistent
        // ones do, so what the trades queue lacks afterwards is what the gateway dropped.
        f.publish.persistent_market_data = true;
        f.publish.reconnect_initial = Duration::from_millis(50);
        f.publish.reconnect_max = Duration::from_millis(500);
    })
    .await;
    let order = fixture("order.json");
    let trade = trade_text("BTCUSDT");
    assert!(
        wait_until(LONG, || async {
            (node_in_use(&cluster) == Some(0)).then_some(())
        })
        .await
        .is_some(),
        "the gateway connects to the first node given"
    );
    let (mut orders_sent, mut trades_sent) = (0u64, 0u64);
    for _ in 0..200 {
        h.send(Endpoint::Private, order.clone()).await;
        h.send(LINEAR, trade.clone()).await;
        orders_sent += 1;
        trades_sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(
        h.wait_confirmed(400, LONG).await,
        "flowing before the fault"
    );

    // Act: stop the node the gateway is connected to while traffic keeps flowing.
    let stopped_at = std::time::Instant::now();
    cluster
        .ctl_async(0, &["stop_app"])
        .await
        .expect("stop_app on node 0");
    let mut moved_in = None;
    for i in 0..2000u64 {
        if i % 2 == 0 {
            h.send(Endpoint::Private, order.clone()).await;
            orders_sent += 1;
        }
        h.send(LINEAR, trade.clone()).await;
        trades_sent += 1;
        if moved_in.is_none() && i % 10 == 0 && matches!(node_in_use(&cluster), Some(1 | 2)) {
            moved_in = Some(stopped_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if moved_in.is_none() {
        moved_in = wait_until(LONG, || async {
            matches!(node_in_use(&cluster), Some(1 | 2)).then(|| stopped_at.elapsed())
        })
        .await;
    }
    let moved_in = moved_in.expect("the gateway moves to another node");
    eprintln!("stop_app → gateway connected to another node in {moved_in:?}");
    let stats = h.stats.clone();
    let total = orders_sent + trades_sent;
    let settled = wait_until(LONG, || {
        let n = stats.confirmed() + stats.market_dropped();
        async move { (n >= total).then_some(()) }
    })
    .await;
    assert!(
        settled.is_some(),
        "every event confirmed or counted as dropped: confirmed {}, dropped {}, of {total}",
        h.stats.confirmed(),
        h.stats.market_dropped()
    );
    assert!(h.finish(LONG).await);

    // Assert: the private queue (quorum, leader moved) holds every order once, in order.
    let url = cluster.url(1);
    let (conn, ch) = open(&url).await;
    let mut rx = consume(&ch, &format!("{}.orders", h.prefix)).await;
    let got = collect(&mut rx, orders_sent as usize * 2, Duration::from_secs(10)).await;
    let (all, distinct) = seqs(&got);
    let mut sorted = distinct.clone();
    sorted.sort_unstable();
    assert_eq!(distinct.len() as u64, orders_sent, "every private event");
    assert_eq!(distinct, sorted, "in order");
    let duplicates = all.len() - distinct.len();
    eprintln!(
        "orders: {} sent, {} distinct, {duplicates} duplicates (re-sent unconfirmed), retried {}",
        orders_sent,
        distinct.len(),
        h.stats.retried()
    );
    assert!(
        duplicates as u64 <= h.stats.retried(),
        "a duplicate only where an unconfirmed message was re-sent"
    );
    assert!(
        metric_sum("ws_gateway_broker_failovers_total", "") > failovers_before,
        "the failover is counted"
    );
    let _ = conn.close().await;

    // Market: node 0 back, the classic trades queue readable again; what it lacks is what was
    // counted as dropped.
    cluster
        .ctl_async(0, &["start_app"])
        .await
        .expect("start_app on node 0");
    let (conn, ch) = open(&cluster.url(0)).await;
    let mut rx = consume(&ch, &format!("{}.trades", h.prefix)).await;
    let trades = collect(&mut rx, trades_sent as usize * 2, Duration::from_secs(10)).await;
    let (_, distinct) = seqs(&trades);
    eprintln!(
        "trades: {trades_sent} sent, {} in the queue, {} counted as dropped",
        distinct.len(),
        h.stats.market_dropped()
    );
    assert_eq!(
        distinct.len() as u64,
        trades_sent - h.stats.market_dropped(),
        "market loss equals the drop counter"
    );
    let _ = conn.close().await;
    assert!(
        moved_in < Duration::from_secs(5),
        "the gateway was on another node within 5 s (took {moved_in:?})"
    );
    cleanup(&cluster.url(0), &h.prefix, &[]).await;
}

/// `rabbitmqctl list_queues` of the shared broker: (name, type, arguments) of `prefix`'s queues.
fn list_queues(prefix: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "type",
            "arguments",
            "--formatter",
            "json",
        ])
        .output()
        .expect("rabbitmqctl");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.into_iter()
        .filter(|q| {
            q["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{prefix}.")))
        })
        .collect()
}

#[tokio::test]
async fn cluster_queue_types_and_streams_are_declared_as_the_pipeline_file_says() {
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |f| {
        quorum_private(f);
        f.classes.insert(
            EventClass::Executions,
            ClassConfig {
                queue_type: QueueType::Quorum,
                stream: Some(StreamConfig {
                    max_age: Some(Duration::from_secs(3600)),
                    max_bytes: Some(50_000_000),
                }),
            },
        );
        f.publish.classes = f.classes.clone();
    })
    .await;
    h.send(Endpoint::Private, fixture("execution.json")).await;
    assert!(h.wait_confirmed(1, LONG).await);
    let stream = format!("{}.executions.stream", h.prefix);
    let queues = list_queues(&h.prefix);
    let type_of = |name: &str| {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .map(|q| q["type"].as_str().unwrap_or("").to_owned())
    };
    for class in EventClass::ALL {
        let want = if PRIVATE.contains(&class) {
            "quorum"
        } else {
            "classic"
        };
        assert_eq!(
            type_of(&format!("{}.{class}", h.prefix)).as_deref(),
            Some(want),
            "{class}: {queues:?}"
        );
    }
    assert_eq!(type_of(&stream).as_deref(), Some("stream"), "{queues:?}");
    let args = |name: &str| {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .map(|q| q["arguments"].to_string())
            .unwrap_or_default()
    };
    let orders = args(&format!("{}.orders", h.prefix));
    assert!(
        orders.contains("x-max-length") && orders.contains("drop-head"),
        "quorum keeps the limits it accepts: {orders}"
    );
    let s = args(&stream);
    assert!(
        s.contains("x-max-age") && s.contains("3600s") && s.contains("x-max-length-bytes"),
        "{s}"
    );
    assert!(
        !s.contains("x-overflow") && !s.contains("x-message-ttl"),
        "{s}"
    );
    assert!(h.finish(LONG).await);
    cleanup(&url, &h.prefix, &[stream]).await;
}

/// A stream consumer (manual acks, as streams require) from `offset`; returns the `seq`s read
/// within `wait`.
async fn read_stream(url: &str, stream: &str, offset: FieldValue, wait: Duration) -> Vec<u64> {
    let (conn, ch) = open(url).await;
    ch.basic_qos(BasicQosArguments::new(0, 100, false))
        .await
        .unwrap();
    let mut args = FieldTable::new();
    args.insert("x-stream-offset".try_into().unwrap(), offset);
    let (_, mut rx) = ch
        .basic_consume_rx(
            BasicConsumeArguments::new(stream, &unique("replay"))
                .arguments(args)
                .finish(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + wait;
    while let Ok(Some(m)) = tokio::time::timeout_at(end, rx.recv()).await {
        let tag = m.deliver.as_ref().map(|d| d.delivery_tag()).unwrap_or(0);
        let body: serde_json::Value =
            serde_json::from_slice(&m.content.unwrap_or_default()).unwrap();
        out.push(body["seq"].as_u64().unwrap());
        let _ = ch.basic_ack(BasicAckArguments::new(tag, false)).await;
    }
    let _ = conn.close().await;
    out
}

#[tokio::test]
async fn cluster_a_stream_replays_every_execution_from_a_timestamp_in_order() {
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |f| {
        f.classes.insert(
            EventClass::Executions,
            ClassConfig {
                queue_type: QueueType::Classic,
                stream: Some(StreamConfig {
                    max_age: Some(Duration::from_secs(86_400)),
                    max_bytes: None,
                }),
            },
        );
        f.publish.classes = f.classes.clone();
    })
    .await;
    let execution = fixture("execution.json");
    for _ in 0..30 {
        h.send(Endpoint::Private, execution.clone()).await;
    }
    assert!(h.wait_confirmed(30, LONG).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let between = chrono::Utc::now().timestamp() as u64;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..20 {
        h.send(Endpoint::Private, execution.clone()).await;
    }
    assert!(h.wait_confirmed(50, LONG).await);
    let stream = format!("{}.executions.stream", h.prefix);

    // From ten minutes back: every execution, in order.
    let ten_minutes_back = between - 600;
    let all = read_stream(&url, &stream, FieldValue::T(ten_minutes_back), secs(5)).await;
    assert_eq!(
        all,
        (1..=50).collect::<Vec<u64>>(),
        "every execution since then, in order"
    );
    // From a moment between the two batches: the second batch, in order.
    let later = read_stream(&url, &stream, FieldValue::T(between), secs(5)).await;
    assert_eq!(
        later,
        (31..=50).collect::<Vec<u64>>(),
        "only what came after it"
    );
    // From the first offset, as a consumer that was never there would.
    let first = read_stream(&url, &stream, FieldValue::from("first"), secs(5)).await;
    assert_eq!(first.len(), 50);
    assert!(h.finish(LONG).await);
    cleanup(&url, &h.prefix, &[stream]).await;
}

#[tokio::test]
async fn cluster_a_queue_declared_otherwise_stops_the_binary_with_one_error_line_and_exit_2() {
    // Arrange: `<prefix>.orders` exists as a classic queue; the pipeline file wants quorum.
    let url = amqp_url();
    let prefix = unique("wsgw-mismatch");
    let queue = format!("{prefix}.orders");
    let (conn, ch) = open(&url).await;
    ch.queue_declare(
        QueueDeclareArguments::durable_client_named(&queue)
            .arguments(topology::queue_arguments())
            .finish(),
    )
    .await
    .unwrap();
    let vars = [
        ("BYBIT_WS_URL", silent_bybit_url()),
        ("AMQP_URL", url.clone()),
        ("WS_GATEWAY_SERVICE_NAME", prefix.clone()),
        ("WS_GATEWAY_LOG_LEVEL", "info".to_owned()),
    ];
    let toml = "[classes.orders]\nqueue_type = \"quorum\"\n";

    // Act
    let mut bin = Binary::launch(&vars, toml);
    let status = bin.wait_exit(LONG).await;

    // Assert
    let log = bin.log();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "exit code 2: {log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one ERROR line: {log}");
    let line = errors[0];
    for needle in [
        queue.as_str(),
        "x-queue-type",
        "quorum",
        "delete_queue",
        "[classes.orders]",
    ] {
        assert!(line.contains(needle), "{needle:?} in {line}");
    }
    let _ = ch.queue_delete(QueueDeleteArguments::new(&queue)).await;
    let _ = conn.close().await;
    cleanup(&url, &prefix, &[]).await;
}
