//! Broker faults through the test's own TCP proxy: a cut mid-stream, and the end of input while
//! the broker is unreachable.

use super::*;

#[tokio::test]
async fn a_broker_cut_loses_no_private_event_and_market_loss_equals_the_drop_counter() {
    // Arrange: the sink talks to RabbitMQ through a proxy the test can cut.
    let url = amqp_url();
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let proxied = format!("amqp://guest:guest@{}/%2f", proxy.host_port());
    let mut h = PipelineHarness::start(Some(proxied), |f| {
        f.stages.publish.capacity = 100;
        f.publish.private_memory_buffer = 20;
        f.publish.reconnect_initial = Duration::from_millis(50);
        f.publish.reconnect_max = Duration::from_millis(300);
    })
    .await;
    let order = fixture("order.json");
    let trade = trade_text("BTCUSDT");
    for _ in 0..50 {
        h.send(Endpoint::Private, order.clone()).await;
        h.send(LINEAR, trade.clone()).await;
    }
    assert!(h.wait_confirmed(100, LONG).await);

    // Act: cut, keep the input flowing, restore.
    proxy.cut();
    for i in 0..1000 {
        if i % 5 == 0 {
            h.send(Endpoint::Private, order.clone()).await;
        }
        h.send(LINEAR, trade.clone()).await;
    }
    let stats = h.stats.clone();
    crate::support::wait_until(LONG, || {
        let seen = stats.events();
        async move { (seen == 1300).then_some(()) }
    })
    .await
    .expect("the input kept being read while the broker was away");
    assert!(
        h.stats.spooled() > 0,
        "private events overflowed to the spool"
    );
    proxy.restore();
    for _ in 0..10 {
        h.send(Endpoint::Private, order.clone()).await;
    }
    assert!(h.finish(LONG).await);

    // Assert
    let (conn, ch) = open(&url).await;
    let mut rx = consume(&ch, &format!("{}.orders", h.prefix)).await;
    let orders = collect(&mut rx, 10_000, Duration::from_secs(5)).await;
    let mut seen = HashSet::new();
    let seqs: Vec<u64> = orders
        .iter()
        .map(|m| m.json())
        .filter(|v| seen.insert(v["id"].to_string()))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=260).collect::<Vec<_>>(),
        "every private event, in order"
    );
    let mut rx = consume(&ch, &format!("{}.trades", h.prefix)).await;
    let trades = collect(&mut rx, 10_000, Duration::from_secs(5)).await;
    let distinct: HashSet<String> = trades.iter().map(|m| m.json()["id"].to_string()).collect();
    assert_eq!(
        distinct.len() as u64,
        1050 - h.stats.market_dropped(),
        "market loss equals the drop counter"
    );
    assert!(h.stats.market_dropped() > 0);
    let _ = conn.close().await;
    cleanup(&url, &h.prefix, &[]).await;
}

#[tokio::test]
async fn the_end_of_input_with_the_broker_down_spools_private_events_drops_market_data_and_ends() {
    // Arrange: everything sent so far is confirmed, then the broker goes away.
    let url = amqp_url();
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let proxied = format!("amqp://guest:guest@{}/%2f", proxy.host_port());
    let mut h = PipelineHarness::start(Some(proxied), |f| {
        f.publish.reconnect_initial = Duration::from_millis(50);
        f.publish.reconnect_max = Duration::from_secs(30);
    })
    .await;
    let order = fixture("order.json");
    let trade = trade_text("BTCUSDT");
    for _ in 0..10 {
        h.send(Endpoint::Private, order.clone()).await;
        h.send(LINEAR, trade.clone()).await;
    }
    assert!(h.wait_confirmed(20, LONG).await);
    proxy.cut();
    for _ in 0..40 {
        h.send(Endpoint::Private, order.clone()).await;
        h.send(LINEAR, trade.clone()).await;
    }
    let stats = h.stats.clone();
    crate::support::wait_until(LONG, || {
        let seen = stats.events();
        async move { (seen == 100).then_some(()) }
    })
    .await
    .expect("every frame was read");

    // Act: end the input while the broker is still unreachable.
    let ended = h.finish(LONG).await;

    // Assert: the task ended without the broker, private events are on disk in order, and
    // the market data it could not send is counted as dropped.
    assert!(ended, "the publish task ended with the broker down");
    assert_eq!(h.stats.confirmed(), 20);
    assert_eq!(h.stats.market_dropped(), 40);
    let mut spool =
        ws_gateway::sink::rabbitmq::spool::Spool::open(h.spool_dir.path(), &h.prefix).unwrap();
    assert_eq!(spool.pending(), 40);
    let mut seqs = vec![];
    while let Some(ev) = spool.read_next().unwrap() {
        assert_eq!(ev.class, EventClass::Orders);
        seqs.push(ev.seq);
    }
    assert_eq!(
        seqs,
        (11..=50).collect::<Vec<_>>(),
        "every private event, in order"
    );
    proxy.restore();
    cleanup(&url, &h.prefix, &[]).await;
}
