//! The `/ws` relay of issue 14 (spec section 11, "any instance serves `/ws`"), against the real
//! RabbitMQ: envelopes published as the owning instance publishes them reach this instance's
//! `/ws` event broadcast for exactly the relayed topics, in order, and nothing of a topic after
//! it left the set; the relay rebinds after the broker connection is cut.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use amqprs::channel::{BasicPublishArguments, Channel};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    cluster::relay::{Relay, RelayConfig, RelayNode, queue_name},
    event::{Category, Endpoint, Event},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
    sink::rabbitmq::{properties, relay_nodes},
    subscriptions::TopicKey,
};

use crate::support::{
    amqp::{LINEAR, cleanup, frame, open, trade_text},
    amqp_url, fixture, init_test_log,
    proxy::TcpProxy,
    unique,
};

/// Events as the owning instance's pipeline builds them (one enricher: seq per topic).
struct Owner {
    enricher: Enricher,
    exchange: String,
    ch: Channel,
}

impl Owner {
    fn event(&mut self, endpoint: Endpoint, text: &str) -> Event {
        self.enricher
            .enrich(classify(decode(frame(endpoint, text.trim_end()))))
    }

    /// Publishes an event of `text` as the RabbitMQ sink does; returns it.
    async fn publish(&mut self, endpoint: Endpoint, text: &str) -> Event {
        let event = self.event(endpoint, text);
        self.ch
            .basic_publish(
                properties(&event, false),
                event.json.to_vec(),
                BasicPublishArguments::new(&self.exchange, &event.routing_key()),
            )
            .await
            .expect("publish");
        event
    }
}

fn node(url: &str) -> RelayNode {
    let mut nodes = relay_nodes(&secrecy::SecretString::from(url.to_owned())).expect("AMQP URL");
    assert_eq!(nodes.len(), 1);
    nodes.remove(0)
}

fn orderbook_text(depth: u32) -> String {
    fixture("linear_orderbook_50_delta.json").replace(
        "\"orderbook.50.BTCUSDT\"",
        &format!("\"orderbook.{depth}.BTCUSDT\""),
    )
}

fn key(endpoint: Endpoint, topic: &str) -> TopicKey {
    TopicKey::new(endpoint, topic)
}

/// Receives until `n` events or `deadline`.
async fn take(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    n: usize,
    deadline: Duration,
) -> Vec<Arc<Event>> {
    let end = tokio::time::Instant::now() + deadline;
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Ok(e)) => out.push(e),
            Ok(Err(broadcast::error::RecvError::Lagged(k))) => panic!("lagged {k}"),
            _ => break,
        }
    }
    out
}

async fn wait_synced(synced: &mut watch::Receiver<u64>, above: u64) -> u64 {
    let got = tokio::time::timeout(Duration::from_secs(20), synced.wait_for(|n| *n > above))
        .await
        .expect("the relay synced its bindings in time")
        .expect("relay alive");
    *got
}

struct Setup {
    prefix: String,
    owner: Owner,
    topics: watch::Sender<BTreeSet<TopicKey>>,
    rx: broadcast::Receiver<Arc<Event>>,
    synced: watch::Receiver<u64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    conn: amqprs::connection::Connection,
}

async fn setup(relay_url: &str, initial: BTreeSet<TopicKey>) -> Setup {
    init_test_log();
    let url = amqp_url();
    let prefix = unique("relay");
    let (conn, ch) = open(&url).await;
    let (tx, rx) = broadcast::channel(4096);
    let (topics, topics_rx) = watch::channel(initial);
    let mut config = RelayConfig::new(vec![node(relay_url)], &prefix, "b");
    config.retry_min = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(500);
    let relay = Relay::new(config, topics_rx, tx);
    let synced = relay.synced();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));
    Setup {
        owner: Owner {
            enricher: Enricher::default(),
            exchange: format!("{prefix}.events"),
            ch,
        },
        prefix,
        topics,
        rx,
        synced,
        stop,
        task,
        conn,
    }
}

impl Setup {
    async fn finish(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        let url = amqp_url();
        cleanup(&url, &self.prefix, &[queue_name(&self.prefix, "b")]).await;
        let _ = self.conn.close().await;
    }
}

#[tokio::test]
async fn the_relay_hands_on_exactly_the_relayed_topics_in_order_and_nothing_after_unbinding() {
    let trade_a = key(LINEAR, "publicTrade.AAAUSDT");
    let book_50 = key(LINEAR, "orderbook.50.BTCUSDT");
    let mut s = setup(
        &amqp_url(),
        BTreeSet::from([trade_a.clone(), book_50.clone()]),
    )
    .await;
    let first = wait_synced(&mut s.synced, 0).await;

    // A relayed trade topic, one of another symbol (another routing key), a relayed order
    // book and one of another depth (the same routing key), a spot trade of the relayed
    // symbol (another endpoint), interleaved.
    let (a, b) = (trade_text("AAAUSDT"), trade_text("BBBUSDT"));
    let (ob50, ob200) = (orderbook_text(50), orderbook_text(200));
    let spot_a = a.clone();
    let mut expected = Vec::new();
    for _ in 0..40 {
        expected.push(s.owner.publish(LINEAR, &a).await);
        s.owner.publish(LINEAR, &b).await;
        expected.push(s.owner.publish(LINEAR, &ob50).await);
        s.owner.publish(LINEAR, &ob200).await;
        s.owner
            .publish(Endpoint::Public(Category::Spot), &spot_a)
            .await;
    }
    let got = take(&mut s.rx, expected.len() + 1, Duration::from_secs(10)).await;
    let ids = |v: &[Event]| v.iter().map(|e| e.id).collect::<Vec<_>>();
    let got_events: Vec<Event> = got.iter().map(|e| (**e).clone()).collect();
    assert_eq!(
        ids(&got_events),
        ids(&expected),
        "exactly the relayed topics, in publish order"
    );
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!((g.endpoint, &g.topic, g.seq), (e.endpoint, &e.topic, e.seq));
        assert_eq!(g.json, e.json, "the envelope byte for byte");
        assert_eq!(g.key(), e.key());
        assert_eq!(g.data(), e.data());
    }

    // The trade topic leaves the set: after the relay synced, nothing of it arrives; the
    // order book still does (a marker published after the trades).
    s.topics.send_replace(BTreeSet::from([book_50.clone()]));
    wait_synced(&mut s.synced, first).await;
    for _ in 0..20 {
        s.owner.publish(LINEAR, &a).await;
    }
    let marker = s.owner.publish(LINEAR, &ob50).await;
    let got = take(&mut s.rx, 2, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![marker.id],
        "nothing of an unbound topic after the sync"
    );
    s.finish().await;
}

#[tokio::test]
async fn the_relay_reconnects_and_rebinds_after_the_broker_connection_is_cut() {
    let upstream = amqp_url();
    let parsed = url::Url::parse(&upstream).expect("AMQP URL");
    let proxy = TcpProxy::start(&format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5672)
    ))
    .await;
    let mut via = parsed.clone();
    via.set_port(Some(proxy.addr.port())).expect("port");
    let trade_a = key(LINEAR, "publicTrade.AAAUSDT");
    let mut s = setup(via.as_str(), BTreeSet::from([trade_a])).await;
    let first = wait_synced(&mut s.synced, 0).await;
    let a = trade_text("AAAUSDT");
    let before = s.owner.publish(LINEAR, &a).await;
    let got = take(&mut s.rx, 1, Duration::from_secs(10)).await;
    assert_eq!(got.first().map(|e| e.id), Some(before.id));

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    let started = std::time::Instant::now();
    wait_synced(&mut s.synced, first).await;
    let rebound = started.elapsed();
    // The old exclusive queue went with its connection; the new one is bound again.
    let after = s.owner.publish(LINEAR, &a).await;
    let got = take(&mut s.rx, 1, Duration::from_secs(10)).await;
    assert_eq!(got.first().map(|e| e.id), Some(after.id));
    tracing::info!(?rebound, "The relay rebound after the cut.");
    eprintln!("relay rebound {rebound:?} after the proxy came back");
    s.finish().await;
}

#[tokio::test]
async fn the_relay_counts_and_skips_messages_that_are_not_envelopes() {
    let trade_a = key(LINEAR, "publicTrade.AAAUSDT");
    let mut s = setup(&amqp_url(), BTreeSet::from([trade_a])).await;
    wait_synced(&mut s.synced, 0).await;
    let bad = [&b"not json"[..], b"{\"class\":\"trades\"}", b"\xff\xfe"];
    for body in bad {
        s.owner
            .ch
            .basic_publish(
                amqprs::BasicProperties::default(),
                body.to_vec(),
                BasicPublishArguments::new(&s.owner.exchange, "trades.linear.AAAUSDT"),
            )
            .await
            .expect("publish");
    }
    let good = s.owner.publish(LINEAR, &trade_text("AAAUSDT")).await;
    let got = take(&mut s.rx, 2, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(|e| e.id).collect::<Vec<_>>(), vec![good.id]);
    s.finish().await;
}
