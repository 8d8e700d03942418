//! Reconnect pacing and the heartbeat, under paused time (in-memory sockets, no network).

use std::{collections::BTreeSet, sync::Arc};

use async_tungstenite::{
    WebSocketStream,
    tokio::TokioAdapter,
    tungstenite::{Message, protocol::Role},
};
use futures::StreamExt;
use tokio::{
    io::DuplexStream,
    sync::{mpsc, watch},
    time::Instant,
};

use super::*;
use crate::{
    event::{Category, Endpoint, RawFrame},
    health::HealthBoard,
    source::{rate::TokenBucket, session::Session},
    subscriptions::SubscriptionRegistry,
};

type Duplex = WebSocketStream<TokioAdapter<DuplexStream>>;

fn config() -> SourceConfig {
    SourceConfig {
        ping_interval: Duration::from_secs(20),
        pong_timeout: Duration::from_secs(10),
        reconnect_initial: Duration::from_millis(500),
        reconnect_max: Duration::from_secs(30),
        ..SourceConfig::default()
    }
}

fn ctx() -> (
    ConnCtx,
    watch::Sender<BTreeSet<String>>,
    mpsc::Receiver<RawFrame>,
) {
    let (topics_tx, topics) = watch::channel(BTreeSet::new());
    let (out, out_rx) = mpsc::channel(16);
    let config = config();
    let ctx = ConnCtx {
        endpoint: Endpoint::Public(Category::Linear),
        shard: 0,
        url: "ws://test/v5/public/linear".into(),
        environment: crate::config::BybitEnvironment::Mainnet,
        clock: crate::rest::ServerClock::local(),
        budget: None,
        ownership: crate::cluster::Ownership::solo("test"),
        bucket: Arc::new(TokenBucket::new(
            config.connect_burst,
            config.connect_refill,
        )),
        prober: Arc::new(crate::source::probe::Prober::new(config.reconnect_probe)),
        config,
        credentials: None,
        trade_recovery: crate::source::trade_gap::TradeRecovery::new(None),
        trade_marks: Default::default(),
        registry: SubscriptionRegistry::new_handle(),
        health: Arc::new(HealthBoard::default()),
        out,
        supervisor: crate::shutdown::Supervisor::new(CancellationToken::new()),
        topics,
        failed_at: Default::default(),
        catchup: None,
    };
    (ctx, topics_tx, out_rx)
}

async fn pair() -> (Duplex, Duplex) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let client = WebSocketStream::from_raw_socket(TokioAdapter::new(a), Role::Client, None).await;
    let server = WebSocketStream::from_raw_socket(TokioAdapter::new(b), Role::Server, None).await;
    (client, server)
}

/// A server that reads everything, counts pings, and answers them with a linear pong if asked.
fn serve(mut server: Duplex, answer: bool) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(msg)) = server.next().await {
            if let Message::Text(t) = msg
                && t.contains(r#""op":"ping""#)
            {
                pings += 1;
                if answer {
                    let pong = r#"{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}"#;
                    if server.send(Message::text(pong)).await.is_err() {
                        break;
                    }
                }
            }
        }
        pings
    })
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_is_declared_dead_after_ping_interval_plus_pong_timeout() {
    let (mut ctx, _topics, _out) = ctx();
    let (client, server) = pair().await;
    let pings = serve(server, false);
    let start = Instant::now();
    let end = Session::new(&mut ctx)
        .run(client, &CancellationToken::new())
        .await;
    let elapsed = start.elapsed();
    assert!(
        matches!(
            end,
            SessionEnd::Failed {
                error: SourceError::PongTimeout(_),
                healthy: false
            }
        ),
        "{end:?}"
    );
    assert!(elapsed >= Duration::from_secs(30), "{elapsed:?}");
    assert!(elapsed <= Duration::from_millis(30_600), "{elapsed:?}");
    drop(ctx);
    assert_eq!(pings.await.unwrap(), 1, "one ping at 20 s, none answered");
}

#[tokio::test(start_paused = true)]
async fn an_answering_server_keeps_the_connection_for_many_intervals_without_data() {
    let (mut ctx, _topics, _out) = ctx();
    let health = ctx.health.clone();
    let (client, server) = pair().await;
    let pings = serve(server, true);
    let stop = CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(300)).await;
        stopper.cancel();
    });
    let end = Session::new(&mut ctx).run(client, &stop).await;
    assert!(matches!(end, SessionEnd::Stopped), "{end:?}");
    let row = &health.snapshot().connections[0];
    assert_eq!(row.state, ComponentState::Up);
    assert!(row.last_heartbeat_at.is_some());
    drop(ctx);
    assert!(pings.await.unwrap() >= 14, "a ping every 20 s for 5 min");
}

#[test]
fn first_retry_is_under_the_initial_delay_and_delays_stay_under_the_cap() {
    let cfg = config();
    for _ in 0..50 {
        assert!(Retry::new(&cfg).after(false) < cfg.reconnect_initial);
    }
    let mut retry = Retry::new(&cfg);
    for _ in 0..100 {
        assert!(retry.after(false) < cfg.reconnect_max);
    }
    // A session that worked starts the sequence over.
    for _ in 0..50 {
        let mut r = Retry::new(&cfg);
        for _ in 0..10 {
            r.after(false);
        }
        assert!(r.after(true) < cfg.reconnect_initial);
    }
}

#[tokio::test(start_paused = true)]
async fn a_minute_of_failing_connects_makes_few_attempts() {
    let cfg = config();
    let bucket = TokenBucket::new(cfg.connect_burst, cfg.connect_refill);
    let mut retry = Retry::new(&cfg);
    let start = Instant::now();
    let mut attempts = 0;
    while start.elapsed() < Duration::from_secs(60) {
        bucket.acquire().await;
        attempts += 1;
        tokio::time::sleep(retry.after(false)).await;
    }
    // Ceilings 0.5, 1, 2, 4, 8, 16, 30 s...: a hot loop would make thousands.
    assert!(attempts < 40, "{attempts} attempts");
}
