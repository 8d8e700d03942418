//! A private socket dropped for 5 s while the account keeps trading: after the reconnect every
//! execution reaches its class queue exactly once, every order's latest state is there, no item
//! twice, recovered before the live ones that follow, within 5 s of the auth ack.

use std::time::{Duration, Instant};

use fake_bybit::PRIVATE;
use serde_json::json;

use super::{counts, drain, exec_id, items, order_id};
use crate::support::{
    secs,
    stack::{Options, Stack},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_second_private_drop_loses_and_repeats_nothing() {
    // Arrange: execution and order subscribed, the account trading every 100 ms.
    let stack = Stack::start(Options::default(), |_| {}).await;
    for (channel, topic) in [("execution", "execution"), ("order", "order")] {
        stack
            .subscribe(
                json!({"channel_type": channel, "requesting_service": "om"}),
                PRIVATE,
                topic,
            )
            .await;
    }
    let account = stack.fake.account();
    let trading = account.keep_trading("linear", "BTCUSDT", Duration::from_millis(100));
    tokio::time::sleep(secs(2)).await;

    // Act: the private socket is cut and stays down 5 s; trading goes on.
    stack.fake.refuse_connections(true);
    stack.fake.drop_connections(PRIVATE, true);
    let auths_before = stack.fake.requests_of(PRIVATE, "auth").len();
    tokio::time::sleep(secs(5)).await;
    stack.fake.refuse_connections(false);
    let authed = wait_until(secs(20), || async {
        (stack.fake.requests_of(PRIVATE, "auth").len() > auths_before).then(Instant::now)
    })
    .await
    .expect("the private stream authenticates again");
    let metric = |name: &'static str| {
        let app = &stack.app;
        async move {
            crate::support::metrics::scrape(&app.http())
                .await
                .sum(name, &[])
        }
    };
    let recovered_before = metric("ws_gateway_catchup_recovered_total").await;
    let recovery = wait_until(secs(15), || async {
        (metric("ws_gateway_catchup_recovered_total").await > recovered_before)
            .then(|| authed.elapsed())
    })
    .await
    .expect("recovered events are published");
    eprintln!("auth ack → recovered events handed to the pipeline: {recovery:?}");
    tokio::time::sleep(secs(2)).await;
    drop(trading);
    tokio::time::sleep(secs(2)).await;

    // Assert
    let execs = drain(&stack.amqp, &stack.queue("executions"), secs(3)).await;
    let orders = drain(&stack.amqp, &stack.queue("orders"), secs(3)).await;
    let exec_items = items(&execs);
    let order_items = items(&orders);
    let exec_counts = counts(&exec_items, exec_id);
    let produced = account.executions();
    let missing: Vec<String> = produced
        .iter()
        .map(exec_id)
        .filter(|id| !exec_counts.contains_key(id))
        .collect();
    let repeated: Vec<(&String, &usize)> = exec_counts.iter().filter(|(_, n)| **n > 1).collect();
    let recovered = execs.iter().filter(|e| e["type"] == "recovery").count();
    eprintln!(
        "executions: produced {}, in queue {} ({} recovered), missing {}, repeated {}",
        produced.len(),
        exec_items.len(),
        recovered,
        missing.len(),
        repeated.len()
    );
    assert!(missing.is_empty(), "missing executions: {missing:?}");
    assert!(repeated.is_empty(), "repeated executions: {repeated:?}");
    assert!(recovered > 0, "some executions came over REST");
    for e in execs.iter().filter(|e| e["type"] == "recovery") {
        assert_eq!(e["recovered"], true, "{e}");
        assert_eq!(
            e["key"],
            format!("execution:{}", e["data"][0]["execId"].as_str().unwrap())
        );
        assert_eq!(e["data"].as_array().map(Vec::len), Some(1), "{e}");
    }
    for e in execs.iter().filter(|e| e["type"] != "recovery") {
        assert_eq!(e["recovered"], false, "{e}");
    }
    for e in orders.iter().filter(|e| e["type"] == "recovery") {
        let item = &e["data"][0];
        let key = format!(
            "order:{}:{}",
            item["orderId"].as_str().unwrap(),
            item["updatedTime"].as_str().unwrap()
        );
        assert_eq!(
            (e["recovered"].clone(), e["key"].clone()),
            (json!(true), json!(key))
        );
    }
    assert!(
        recovery <= secs(5),
        "recovered {recovery:?} after the auth ack"
    );
    // Per topic in exchange order: execTime never goes back (recovered before live).
    let times: Vec<u64> = exec_items
        .iter()
        .map(|(_, i)| i["execTime"].as_str().unwrap().parse().unwrap())
        .collect();
    let back = times.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(back, 0, "executions out of exchange order: {times:?}");
    // Orders: no update twice; every order's latest state present.
    let order_counts = counts(&order_items, order_id);
    let repeated: Vec<_> = order_counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "repeated order updates: {repeated:?}");
    let mut latest = std::collections::HashMap::new();
    for u in account.order_updates() {
        latest.insert(u["orderId"].as_str().unwrap().to_owned(), order_id(&u));
    }
    let missing: Vec<_> = latest
        .values()
        .filter(|id| !order_counts.contains_key(*id))
        .collect();
    eprintln!(
        "orders: {} orders, {} updates produced, {} in queue ({} recovered), latest state missing for {}",
        latest.len(),
        account.order_updates().len(),
        order_items.len(),
        orders.iter().filter(|e| e["type"] == "recovery").count(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "orders without their latest state: {missing:?}"
    );
    let extra = [stack.queue("executions.om"), stack.queue("orders.om")];
    stack.finish(&extra).await;
}
