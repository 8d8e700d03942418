//! Whole apps in cluster mode, in process: shared topics, takeover after a stop, headers.

use std::time::{Duration, Instant};

use super::*;
use crate::support::TestDatabase;

/// Two real apps in process, in cluster mode on one database and one fake Bybit: every
/// pipeline-file topic is subscribed upstream by exactly one of them; both answer
/// `GET /api/v1/cluster` with the same owners; after one stops (SIGTERM), the other subscribes
/// all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_share_the_topics_and_one_takes_over_when_the_other_stops() {
    use crate::support::{TestConfig, http, spawn_app};
    use ws_gateway::pipeline_file::PipelineFile;

    let db = TestDatabase::postgres().await;
    let fake = fake_bybit::FakeBybit::start().await;
    let symbols: Vec<String> = (0..6).map(|i| format!("SYM{i}USDT")).collect();
    let mut toml = String::from(
        "[source]\nconnect_on_start = []\n[cluster]\nrenew_interval = \"200ms\"\n\
         lease_ttl = \"1s\"\npoll_interval = \"200ms\"\n",
    );
    for s in &symbols {
        toml.push_str(&format!(
            "[[subscriptions]]\nchannel_type = \"trades\"\nsymbol = \"{s}\"\ncategory = \"linear\"\n"
        ));
    }
    let pipeline = PipelineFile::parse(&toml).unwrap();
    let start = |id: &str| {
        let config = TestConfig {
            pipeline: pipeline.clone(),
            ..TestConfig::default()
        }
        .var("DATABASE_URL", db.url.clone())
        .var("BYBIT_WS_URL", fake.base_url())
        .var("WS_GATEWAY_CLUSTER", "postgres")
        .var("WS_GATEWAY_INSTANCE_ID", id);
        spawn_app(config)
    };
    let a = start("app-a").await;
    let b = start("app-b").await;
    let topics: Vec<String> = symbols.iter().map(|s| format!("publicTrade.{s}")).collect();
    // A pong is a control frame: the gateway ignores it, the fake counts the connections.
    let once = |fake: &fake_bybit::FakeBybit| {
        topics
            .iter()
            .all(|t| fake.push_topic(t, r#"{"op":"pong"}"#) == 1)
    };
    let took = wait_for(
        "each topic subscribed once",
        Duration::from_secs(20),
        || once(&fake),
    )
    .await;
    eprintln!("two apps: each topic subscribed once after {took:?}");

    let owners = |v: &serde_json::Value| -> BTreeMap<String, String> {
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["topic"].as_str().unwrap().to_owned(),
                    t["owner"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let started = Instant::now();
    loop {
        let ((_, va), (_, vb)) = (
            http::get(&a, "/api/v1/cluster").await,
            http::get(&b, "/api/v1/cluster").await,
        );
        let (oa, ob) = (owners(&va), owners(&vb));
        let both = va["instances"].as_array().unwrap().len() == 2
            && vb["instances"].as_array().unwrap().len() == 2;
        let on_a = oa.values().filter(|o| *o == "app-a").count();
        // Balanced: 3 each (planned moves from a, which started first, to b).
        if both
            && oa == ob
            && oa.len() == 6
            && on_a == 3
            && oa.values().all(|o| o.starts_with("app-"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "same balanced view on both: {va} / {vb}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "two apps: balanced, same view on both after {:?}",
        started.elapsed()
    );
    // Exactly once upstream after the planned moves too.
    wait_for(
        "each topic once after the moves",
        Duration::from_secs(5),
        || once(&fake),
    )
    .await;
    let (_, health) = http::get(&a, "/health").await;
    assert_eq!(health["components"]["cluster"], "up", "{health}");

    // A subscription created through a is upstream (once) within 1 s; cancelled through b, it
    // is no longer upstream anywhere.
    let posted = Instant::now();
    let (_, created) = http::post(
        &a,
        serde_json::json!({
            "channel_type": "trades", "symbol": "APIUSDT", "category": "linear",
            "requesting_service": "alpha"
        }),
    )
    .await;
    let id = created["id"].as_str().expect("created").to_owned();
    wait_for("API topic upstream", Duration::from_secs(3), || {
        fake.push_topic("publicTrade.APIUSDT", r#"{"op":"pong"}"#) == 1
    })
    .await;
    eprintln!(
        "two apps: API subscription via a upstream after {:?}",
        posted.elapsed()
    );
    let (cancelled, _) = http::delete(&b, &format!("/api/v1/subscriptions/{id}")).await;
    assert!(cancelled.is_success(), "{cancelled}");
    let took = wait_for("cancel through b ends it", Duration::from_secs(5), || {
        fake.push_topic("publicTrade.APIUSDT", r#"{"op":"pong"}"#) == 0
    })
    .await;
    eprintln!("two apps: cancelled via b, unsubscribed after {took:?}");

    // SIGTERM of a: b subscribes every topic, each once.
    a.shutdown().await.unwrap();
    let took = wait_for("b took over", Duration::from_secs(5), || once(&fake)).await;
    eprintln!("stop: b subscribed every topic {took:?} after a stopped");
    b.shutdown().await.unwrap();
    db.drop_database().await;
}

/// Cluster mode end to end with the real broker: a subscription created through the REST API
/// is claimed and subscribed upstream within 1 s, and its messages carry the headers
/// `instance` and `epoch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_messages_carry_instance_and_epoch_headers() {
    use crate::support::{
        amqp::{collect, consume, open, queue_len, trade_text},
        stack::{Db, Options, Stack},
    };
    use ws_gateway::pipeline_file::PipelineFile;

    let stack = Stack::start(
        Options {
            db: Db::Postgres,
            ..Options::default()
        },
        |c| {
            c.vars
                .insert("WS_GATEWAY_CLUSTER".into(), "postgres".into());
            c.vars
                .insert("WS_GATEWAY_INSTANCE_ID".into(), "gw-headers".into());
            let source = std::mem::take(&mut c.pipeline.source);
            c.pipeline = PipelineFile::parse(
                "[cluster]\nrenew_interval = \"200ms\"\nlease_ttl = \"1s\"\npoll_interval = \"200ms\"\n",
            )
            .unwrap();
            c.pipeline.source = source;
        },
    )
    .await;
    let posted = Instant::now();
    stack.trades("BTCUSDT", "alpha").await;
    let upstream = posted.elapsed();
    eprintln!("cluster: API subscription subscribed upstream {upstream:?} after the POST");
    assert!(upstream < Duration::from_secs(2), "{upstream:?}");
    for _ in 0..5 {
        stack
            .fake
            .push_topic("publicTrade.BTCUSDT", &trade_text("BTCUSDT"));
    }
    let (conn, ch) = open(&stack.amqp).await;
    let class = stack.queue("trades");
    let settled = crate::support::wait_until(Duration::from_secs(20), || async {
        (queue_len(&ch, &class).await >= 5).then_some(())
    })
    .await;
    assert!(settled.is_some(), "trades in the class queue");
    let mut rx = consume(&ch, &class).await;
    let got = collect(&mut rx, 5, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 5);
    for m in &got {
        assert_eq!(m.header("instance").as_deref(), Some("gw-headers"));
        let epoch = m.header("epoch").expect("an epoch header");
        assert!(epoch.contains('1'), "epoch 1 (first claim): {epoch}");
    }
    let _ = ch.close().await;
    let _ = conn.close().await;
    let alpha = stack.queue("trades.alpha");
    stack.finish(&[alpha]).await;
}
