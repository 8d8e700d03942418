//! `/ws` on any instance and the cluster-wide connection budget: a `/ws` client on B receives a
//! topic owned by C (and a topic only it asks for, subscribed upstream once, by its owner); a
//! reconnect storm (the fake refuses every connection for 60 s) keeps the cluster's new upstream
//! connections within `[cluster] connect_budget`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_tungstenite::{
    WebSocketStream,
    tokio::{ConnectStream, connect_async},
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use fake_bybit::{LINEAR, PATHS};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{A, B, C, HOSTS, expected, ms, pipeline, symbols, three_started};
use crate::support::{TEST_API_KEY, instances::Cluster, secs};

/// A `/ws` client of instance `base` (`http://host:port`).
async fn ws(base: &str) -> WebSocketStream<ConnectStream> {
    let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("X-API-Key", HeaderValue::from_static(TEST_API_KEY));
    connect_async(req).await.expect("/ws upgrade").0
}

/// The next JSON text message within `deadline`.
async fn next_json(s: &mut WebSocketStream<ConnectStream>, deadline: Duration) -> Option<Value> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, s.next()).await.ok()?? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Subscribes `s` to `topic` (linear) and waits for the reply.
async fn subscribe(s: &mut WebSocketStream<ConnectStream>, topic: &str) -> Option<Value> {
    let op = json!({"op": "subscribe", "topics": [topic], "category": "linear"});
    s.send(Message::text(op.to_string())).await.ok()?;
    loop {
        let v = next_json(s, secs(10)).await?;
        if v["op"] == "subscribe" {
            return Some(v);
        }
    }
}

/// Pushes trades of `symbol` every 200 ms until an envelope of `topic` arrives on `s` (at most
/// `deadline`); returns how long it took.
async fn receives(
    c: &Cluster,
    s: &mut WebSocketStream<ConnectStream>,
    symbol: &str,
    deadline: Duration,
) -> Option<Duration> {
    let topic = format!("publicTrade.{symbol}");
    let t0 = Instant::now();
    let tape = c.fake.trades("linear", symbol);
    while t0.elapsed() < deadline {
        tape.push(1);
        if let Some(v) = next_json(s, Duration::from_millis(200)).await
            && v["topic"] == topic.as_str()
        {
            return Some(t0.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn a_ws_client_on_b_receives_a_topic_owned_by_c() {
    let syms = symbols(6);
    let want = expected(&syms, false);
    let c = three_started(&syms, false).await;
    // Settled and spread: every topic upstream once, and every instance owning some (the first
    // instance up may hold everything until the others' claims and hand-overs land).
    let map = crate::support::wait_until(secs(60), || {
        let c = &c;
        let want = &want;
        async move {
            let map = c.wait_upstream(&[A, B, C], want, secs(1)).await?;
            let owners: BTreeSet<&String> = map.values().collect();
            (owners.len() == 3).then_some(map)
        }
    })
    .await;
    assert!(
        map.is_some(),
        "every topic upstream once, spread over the three: {:?}",
        c.upstream()
    );
    let map = map.unwrap();
    let mut fails = Vec::new();
    // A topic C owns (else any B does not own).
    let pick = map
        .iter()
        .find(|(_, o)| o.as_str() == C)
        .or_else(|| map.iter().find(|(_, o)| o.as_str() != B))
        .map(|((_, t), o)| (t.clone(), o.clone()));
    let Some((topic, owner)) = pick else {
        c.finish().await;
        panic!("every topic on {B}: {map:?}");
    };
    let symbol = topic.trim_start_matches("publicTrade.").to_owned();
    let mut client = ws(&c.get(B).base()).await;
    match subscribe(&mut client, &topic).await {
        Some(v) if v["success"] == true => {}
        other => fails.push(format!("/ws subscribe on {B}: {other:?}")),
    }
    match receives(&c, &mut client, &symbol, secs(10)).await {
        Some(t) => eprintln!(
            "/ws on {B}: {topic} (owned by {owner}) received {} ms after the first push",
            ms(t)
        ),
        None => fails.push(format!(
            "/ws client on {B} got nothing of {topic} owned by {owner}"
        )),
    }
    // A topic only this client wants: subscribed upstream once, by its owner, and delivered.
    let only = "WSONLYUSDT";
    let only_topic = format!("publicTrade.{only}");
    match subscribe(&mut client, &only_topic).await {
        Some(v) if v["success"] == true => {}
        other => fails.push(format!("/ws subscribe of {only_topic} on {B}: {other:?}")),
    }
    if receives(&c, &mut client, only, secs(10)).await.is_none() {
        fails.push(format!("/ws client on {B} got nothing of {only_topic}"));
    }
    tokio::time::sleep(secs(2)).await;
    let held = c
        .upstream()
        .get(&(LINEAR.to_owned(), only_topic.clone()))
        .cloned()
        .unwrap_or_default();
    if held.len() != 1 {
        fails.push(format!("{only_topic} upstream on {held:?}, not once"));
    }
    let _ = client.close(None).await;
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn a_reconnect_storm_keeps_the_connection_budget() {
    const BUDGET: usize = 40;
    let syms = symbols(30);
    let want = expected(&syms, true);
    let table = format!(
        "[cluster]\nrenew_interval = \"1s\"\nlease_ttl = \"3s\"\npoll_interval = \"500ms\"\nconnect_budget = {BUDGET}\nconnect_window = \"5m\"\n"
    );
    let mut c = Cluster::with_table(&pipeline(&syms, true), &table).await;
    for (id, host) in &HOSTS[..3] {
        c.add(id, host).await;
    }
    c.start_together(&[A, B, C]).await;
    assert!(
        c.wait_upstream(&[A, B, C], &want, secs(60)).await.is_some(),
        "every topic upstream once: {:?}",
        c.upstream()
    );
    let before = c.fake.connection_attempts();
    c.fake.refuse_connections(true);
    for path in PATHS {
        c.fake.drop_connections(path, true);
    }
    tokio::time::sleep(secs(60)).await;
    let during = c.fake.connection_attempts() - before;
    let refused = c.fake.connections_refused();
    c.fake.refuse_connections(false);
    let total = c.fake.connection_attempts();
    eprintln!(
        "reconnect storm 60 s: {during} connection attempts during it ({refused} refused), {total} since start, budget {BUDGET} per 5 min"
    );
    let back = c.wait_upstream(&[A, B, C], &want, secs(30)).await.is_some();
    eprintln!("after the storm: every topic upstream again within 30 s: {back}");
    c.finish().await;
    assert!(
        total <= BUDGET,
        "{total} new connections in under 5 minutes, budget {BUDGET}"
    );
}
