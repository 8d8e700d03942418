//! Issue 5 end to end: wallet frames from the fake Bybit reach `GET /api/v1/balances` within a
//! second with exact decimals; a database cut never stalls the queue path and loses no row.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use fake_bybit::PRIVATE;

use crate::support::{
    amqp::{consume, open, trade_text},
    fixture,
    http::get,
    proxy::TcpProxy,
    secs,
    stack::{Db, Options, Stack},
    wait_until,
};

/// The fixture's coins as (coin, field of the frame, field of the API row) triples to compare.
const FIELDS: [(&str, &str); 8] = [
    ("walletBalance", "wallet_balance"),
    ("equity", "equity"),
    ("usdValue", "usd_value"),
    ("availableToWithdraw", "available_to_withdraw"),
    ("unrealisedPnl", "unrealised_pnl"),
    ("cumRealisedPnl", "cum_realised_pnl"),
    ("locked", "locked"),
    ("totalPositionIM", "total_position_im"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_frame_shows_in_the_balances_api_within_a_second_with_exact_decimals() {
    // Arrange
    let stack = Stack::start(
        Options {
            db: Db::Postgres,
            ..Options::default()
        },
        |_| {},
    )
    .await;
    stack
        .subscribe(
            json!({"channel_type": "balance", "requesting_service": "treasury"}),
            PRIVATE,
            "wallet",
        )
        .await;
    let text = fixture("wallet.json");
    let frame: Value = serde_json::from_str(&text).unwrap();
    let account = &frame["data"][0];
    let coins = account["coin"].as_array().unwrap();

    // Act
    let pushed = Instant::now();
    assert_eq!(stack.fake.push_topic("wallet", &text), 1);
    let body = wait_until(secs(10), || async {
        let (_, body) = get(&stack.app, "/api/v1/balances").await;
        (body["balances"].as_array().map_or(0, Vec::len) == coins.len()).then_some(body)
    })
    .await
    .expect("the balances appear");
    let latency = pushed.elapsed();
    eprintln!("wallet frame → GET /api/v1/balances: {latency:?}");

    // Assert
    assert!(latency <= Duration::from_secs(1), "took {latency:?}");
    for coin in coins {
        let name = coin["coin"].as_str().unwrap();
        let row = body["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["coin"] == name)
            .unwrap_or_else(|| panic!("{name} row"));
        for (theirs, ours) in FIELDS {
            assert_eq!(row[ours], coin[theirs], "{name}.{ours}");
        }
        assert_eq!(row["account_type"], "UNIFIED");
        assert_eq!(row["exchange_ts"], frame["creationTime"]);
    }
    let margin = &body["margin"];
    for (theirs, ours) in [
        ("totalEquity", "total_equity"),
        ("totalWalletBalance", "total_wallet_balance"),
        ("totalMarginBalance", "total_margin_balance"),
        ("totalAvailableBalance", "total_available_balance"),
        ("totalInitialMargin", "total_initial_margin"),
        ("totalMaintenanceMargin", "total_maintenance_margin"),
        ("accountIMRate", "account_im_rate"),
        ("accountMMRate", "account_mm_rate"),
    ] {
        assert_eq!(margin[ours], account[theirs], "margin.{ours}");
    }
    let queue = stack.queue("balances.treasury");
    stack.finish(&[queue]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_database_cut_never_stalls_trades_and_every_wallet_row_lands_after() {
    // Arrange: the app reaches PostgreSQL through a proxy; the test reads it directly.
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let db = crate::support::TestDatabase::postgres().await;
    let proxied = db.url.replacen("127.0.0.1:5432", &proxy.host_port(), 1);
    assert_ne!(
        proxied, db.url,
        "the test database URL names 127.0.0.1:5432"
    );
    let stack = Stack::start(
        Options {
            app_db: Some(proxied),
            ..Options::default()
        },
        |_| {},
    )
    .await;
    stack
        .subscribe(
            json!({"channel_type": "balance", "requesting_service": "treasury"}),
            PRIVATE,
            "wallet",
        )
        .await;
    stack.trades("BTCUSDT", "treasury").await;
    let (conn, ch) = open(&stack.amqp).await;
    let mut rx = consume(&ch, &stack.queue("trades")).await;
    let wallet = fixture("wallet.json");
    let trade = trade_text("BTCUSDT");
    assert_eq!(stack.fake.push_topic("wallet", &wallet), 1);
    let first = wait_until(secs(10), || async {
        let (_, rows) = get(&stack.app, "/api/v1/balances/history?limit=1000").await;
        (rows.as_array().map_or(0, Vec::len) == 3).then_some(())
    })
    .await;
    assert!(first.is_some(), "the first wallet event is written");

    // Act: cut the database for 10 s; every 100 ms a trade, every second a wallet.
    proxy.cut();
    let cut_at = Instant::now();
    let mut arrivals: Vec<Duration> = vec![];
    let mut pushed = 0;
    let mut wallets = 1;
    while cut_at.elapsed() < secs(10) {
        assert_eq!(stack.fake.push_topic("publicTrade.BTCUSDT", &trade), 1);
        pushed += 1;
        if pushed % 10 == 0 {
            assert_eq!(stack.fake.push_topic("wallet", &wallet), 1);
            wallets += 1;
        }
        let tick = tokio::time::Instant::now() + Duration::from_millis(100);
        while let Ok(Some(_)) = tokio::time::timeout_at(tick, rx.recv()).await {
            arrivals.push(cut_at.elapsed());
        }
    }
    proxy.restore();
    let during = arrivals.len();

    // Assert: trades flowed through the cut, second by second.
    eprintln!("database cut: {pushed} trades pushed, {during} arrived in RabbitMQ during the cut");
    assert!(
        during + 2 >= pushed,
        "trades reached RabbitMQ during the cut: {during} of {pushed}"
    );
    for second in 0..9 {
        let window = Duration::from_secs(second)..Duration::from_secs(second + 1);
        assert!(
            arrivals.iter().any(|t| window.contains(t)),
            "trades arrived in second {second} of the cut"
        );
    }
    let rows = wait_until(secs(60), || async {
        let (status, rows) = get(&stack.app, "/api/v1/balances/history?limit=1000").await;
        let rows = rows.as_array().cloned().unwrap_or_default();
        (status.is_success() && rows.len() == wallets * 3).then_some(rows)
    })
    .await
    .unwrap_or_else(|| panic!("all {wallets} wallet events written after the cut"));
    let events: HashSet<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events.len(), wallets, "one event id per wallet frame");
    let _ = conn.close().await;
    let queues = [
        stack.queue("trades.treasury"),
        stack.queue("balances.treasury"),
    ];
    stack.finish(&queues).await;
    db.drop_database().await;
}
