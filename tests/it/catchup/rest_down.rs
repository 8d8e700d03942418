//! REST answering 500 for 20 s across a private reconnect: live events are held no longer than
//! `max_hold`, the gap is counted, and once REST answers the missed executions are published
//! (each once).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use fake_bybit::{PRIVATE, RestFailure};
use serde_json::{Value, json};

use super::{counts, exec_id, items};
use crate::support::{
    amqp::{consume, open},
    metrics::scrape,
    secs,
    stack::{Options, Stack},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_down_across_a_reconnect_holds_live_events_briefly_and_recovers_later() {
    // Arrange
    let max_hold = Duration::from_secs(3);
    let stack = Stack::start(Options::default(), |c| {
        c.pipeline.catchup.max_hold = max_hold;
        c.pipeline.catchup.retry_initial = Duration::from_millis(500);
        c.pipeline.catchup.retry_max = Duration::from_secs(2);
    })
    .await;
    stack
        .subscribe(
            json!({"channel_type": "execution", "requesting_service": "om"}),
            PRIVATE,
            "execution",
        )
        .await;
    // Every execution as it reaches the class queue, with its arrival time (ms).
    let (conn, ch) = open(&stack.amqp).await;
    let mut rx = consume(&ch, &stack.queue("executions")).await;
    let seen: Arc<Mutex<Vec<(i64, Value)>>> = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let body: Value = serde_json::from_slice(&m.content.unwrap_or_default()).unwrap();
            let now = chrono::Utc::now().timestamp_millis();
            sink.lock().unwrap().push((now, body));
        }
    });
    let account = stack.fake.account();
    let trading = account.keep_trading("linear", "BTCUSDT", Duration::from_millis(100));
    tokio::time::sleep(secs(1)).await;
    let gaps = |base: String| async move {
        scrape(&base)
            .await
            .sum("ws_gateway_catchup_gaps_total", &[])
    };
    let gaps_before = gaps(stack.app.http()).await;

    // Act: REST fails; the private socket is cut for 2 s; REST is back 20 s after it failed.
    stack.fake.fail_rest(RestFailure::Http500, None);
    stack.fake.refuse_connections(true);
    stack.fake.drop_connections(PRIVATE, true);
    tokio::time::sleep(secs(2)).await;
    stack.fake.refuse_connections(false);
    tokio::time::sleep(secs(18)).await;
    let gaps_during = gaps(stack.app.http()).await;
    stack.fake.clear_rest_failure();
    let everything = wait_until(secs(20), || async {
        let produced: Vec<String> = account.executions().iter().map(exec_id).collect();
        let got = seen.lock().unwrap();
        let envelopes: Vec<Value> = got.iter().map(|(_, e)| e.clone()).collect();
        let have = counts(&items(&envelopes), exec_id);
        produced
            .iter()
            .all(|id| have.contains_key(id))
            .then_some(())
    })
    .await;
    drop(trading);
    tokio::time::sleep(secs(2)).await;

    // Assert
    let got = seen.lock().unwrap().clone();
    let envelopes: Vec<Value> = got.iter().map(|(_, e)| e.clone()).collect();
    let all = items(&envelopes);
    let have = counts(&all, exec_id);
    let produced = account.executions();
    let missing = produced
        .iter()
        .filter(|e| !have.contains_key(&exec_id(e)))
        .count();
    let repeated = have.values().filter(|n| **n > 1).count();
    let recovered = envelopes.iter().filter(|e| e["type"] == "recovery").count();
    // The longest a live execution waited between the exchange and the queue.
    let held = got
        .iter()
        .filter(|(_, e)| e["type"] != "recovery")
        .flat_map(|(at, e)| {
            e["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |i| at - i["execTime"].as_str().unwrap().parse::<i64>().unwrap())
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "REST 500 for 20 s: produced {}, in queue {}, recovered {recovered}, missing {missing}, repeated {repeated}, longest live wait {held} ms, gaps counted {}",
        produced.len(),
        all.len(),
        gaps_during - gaps_before
    );
    assert!(everything.is_some(), "missing {missing} executions");
    assert!(gaps_during > gaps_before, "the gap is counted");
    assert!(recovered > 0, "the missed executions came over REST");
    assert_eq!(repeated, 0, "no execution twice");
    let bound = i64::try_from(max_hold.as_millis()).unwrap() + 1500;
    assert!(held <= bound, "a live execution waited {held} ms");
    let _ = conn.close().await;
    let extra = [stack.queue("executions.om")];
    stack.finish(&extra).await;
}
