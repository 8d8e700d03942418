//! Issue 4 end to end: per-service queues made by REST subscriptions, fan-out to two services
//! from the fake Bybit's frames. The envelope, the properties and volume without loss or
//! reordering belong to the RabbitMQ sink and are tested in `publish`.

use std::collections::{HashMap, HashSet};

use crate::support::{
    amqp::{collect, consume, open, queue_len, trade_text},
    secs,
    stack::{Options, Stack, wait_queue},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_topic_each_get_every_event_once_and_nothing_they_did_not_ask_for() {
    // Arrange: alpha and beta want BTCUSDT trades; beta also wants ETHUSDT.
    let stack = Stack::start(Options::default(), |_| {}).await;
    stack.trades("BTCUSDT", "alpha").await;
    stack.trades("BTCUSDT", "beta").await;
    stack.trades("ETHUSDT", "beta").await;
    let (qa, qb) = (stack.queue("trades.alpha"), stack.queue("trades.beta"));
    assert!(wait_queue(&stack.amqp, &qa, secs(20)).await);
    assert!(wait_queue(&stack.amqp, &qb, secs(20)).await);

    // Act
    for _ in 0..20 {
        stack
            .fake
            .push_topic("publicTrade.BTCUSDT", &trade_text("BTCUSDT"));
        stack
            .fake
            .push_topic("publicTrade.ETHUSDT", &trade_text("ETHUSDT"));
    }

    // Assert
    let (conn, ch) = open(&stack.amqp).await;
    let class = stack.queue("trades");
    let settled = crate::support::wait_until(secs(30), || async {
        (queue_len(&ch, &class).await == 40).then_some(())
    })
    .await;
    assert!(settled.is_some(), "all 40 trades in the class queue");
    let mut by_service = HashMap::new();
    for (queue, expected) in [(&qa, 20), (&qb, 40)] {
        let mut rx = consume(&ch, queue).await;
        let got = collect(&mut rx, 1000, secs(3)).await;
        assert_eq!(got.len(), expected, "{queue}");
        let ids: HashSet<String> = got.iter().map(|m| m.json()["id"].to_string()).collect();
        assert_eq!(ids.len(), expected, "{queue}: each event once");
        by_service.insert(queue.clone(), got);
    }
    assert!(
        by_service[&qa]
            .iter()
            .all(|m| m.routing_key == "trades.linear.BTCUSDT"),
        "alpha got nothing it did not subscribe to"
    );
    let btc = |q: &String| -> HashSet<String> {
        by_service[q]
            .iter()
            .filter(|m| m.routing_key == "trades.linear.BTCUSDT")
            .map(|m| m.json()["id"].to_string())
            .collect()
    };
    assert_eq!(btc(&qa), btc(&qb), "both got the same BTCUSDT events");
    let _ = conn.close().await;
    stack.finish(&[qa, qb]).await;
}
