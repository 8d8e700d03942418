//! Bybit REST: the fake's REST side (signature, timestamp, pagination, windows, failures) and
//! the gateway's client over it (signing, pagination, retries and give-up, server clock), and
//! the whole binary with a fake clock 30 s off (private auth and REST still succeed, the offset
//! gauge shows it).

use std::time::Duration;

use fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit, PRIVATE, RestFailure, rest_signature};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    config::BybitCredentials,
    rest::{RestClient, RestError, RestPolicy, ServerClock, endpoints},
};

use crate::support::{binary::Binary, metrics::metric_sum, secs, wait_until};

fn creds(key: &str, secret: &str) -> BybitCredentials {
    BybitCredentials {
        api_key: key.to_owned(),
        api_secret: secret.to_owned().into(),
    }
}

fn fast_policy() -> RestPolicy {
    RestPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        ..RestPolicy::default()
    }
}

fn client(fake: &FakeBybit, clock: ServerClock, policy: RestPolicy) -> RestClient {
    // The process-wide recorder, before the first request is counted.
    let _ = ws_gateway::telemetry::metrics_handle();
    RestClient::new(
        &fake.rest_url().parse().unwrap(),
        Some(creds(FAKE_API_KEY, FAKE_API_SECRET)),
        clock,
        policy,
        CancellationToken::new(),
    )
}

/// One raw signed GET against the fake, with the given timestamp, key and secret.
async fn raw_get(
    fake: &FakeBybit,
    path: &str,
    query: &str,
    ts: u64,
    key: &str,
    secret: &str,
) -> Value {
    let sign = rest_signature(secret, ts, key, 5000, query);
    reqwest::Client::new()
        .get(format!("{}{path}?{query}", fake.rest_url()))
        .header("X-BAPI-API-KEY", key)
        .header("X-BAPI-TIMESTAMP", ts.to_string())
        .header("X-BAPI-RECV-WINDOW", "5000")
        .header("X-BAPI-SIGN", sign)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn fake_rest_checks_key_signature_timestamp_and_window() {
    let fake = FakeBybit::start().await;
    let now = fake.server_time_ms();
    let q = "accountType=UNIFIED";
    let ok = raw_get(
        &fake,
        endpoints::WALLET,
        q,
        now,
        FAKE_API_KEY,
        FAKE_API_SECRET,
    )
    .await;
    assert_eq!(ok["retCode"], 0, "{ok}");
    assert_eq!(ok["result"]["list"][0]["accountType"], "UNIFIED");
    assert!(ok["time"].as_u64().is_some());
    let bad_key = raw_get(&fake, endpoints::WALLET, q, now, "nope", FAKE_API_SECRET).await;
    assert_eq!(bad_key["retCode"], 10003, "{bad_key}");
    let bad_sign = raw_get(&fake, endpoints::WALLET, q, now, FAKE_API_KEY, "wrong").await;
    assert_eq!(bad_sign["retCode"], 10004, "{bad_sign}");
    let stale = raw_get(
        &fake,
        endpoints::WALLET,
        q,
        now - 10_000,
        FAKE_API_KEY,
        FAKE_API_SECRET,
    )
    .await;
    assert_eq!(stale["retCode"], 10002, "{stale}");
    let future = raw_get(
        &fake,
        endpoints::WALLET,
        q,
        now + 5_000,
        FAKE_API_KEY,
        FAKE_API_SECRET,
    )
    .await;
    assert_eq!(future["retCode"], 10002, "{future}");
    // Seven days at most between startTime and endTime, as Bybit.
    let eight_days = 8 * 24 * 3600 * 1000;
    let q = format!(
        "category=linear&startTime={}&endTime={now}",
        now - eight_days
    );
    let wide = raw_get(
        &fake,
        endpoints::EXECUTIONS,
        &q,
        fake.server_time_ms(),
        FAKE_API_KEY,
        FAKE_API_SECRET,
    )
    .await;
    assert_eq!(wide["retCode"], 10001, "{wide}");
    // Server time is public and follows the clock offset.
    fake.set_clock_offset(secs(30));
    let t: Value = reqwest::get(format!("{}/v5/market/time", fake.rest_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let server_s: i64 = t["result"]["timeSecond"].as_str().unwrap().parse().unwrap();
    let drift = server_s - chrono::Utc::now().timestamp();
    assert!((29..=31).contains(&drift), "{t}");
}

#[tokio::test]
async fn signed_calls_are_accepted_and_see_the_account() {
    let fake = FakeBybit::start().await;
    let account = fake.account();
    account.set_balance("USDT", 1000.0);
    let order = account.place_order("linear", "BTCUSDT", "Buy", 0.01, 50_000.0);
    account.fill(&order, 0.004).unwrap();
    let rest = client(&fake, ServerClock::local(), fast_policy());
    let wallet = rest.wallet_balance("UNIFIED").await.unwrap();
    assert_eq!(wallet[0]["coin"][0]["coin"], "USDT");
    let positions = rest
        .positions("linear", &[("settleCoin", "USDT".into())])
        .await
        .unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0]["size"], "0.004");
    let open = rest.open_orders("linear", &[]).await.unwrap();
    assert_eq!(open[0]["orderStatus"], "PartiallyFilled");
    let now = fake.server_time_ms();
    let execs = rest
        .executions("linear", now - 60_000, now + 1)
        .await
        .unwrap();
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0]["orderId"], order.as_str());
    assert!(account.cancel(&order));
    let history = rest
        .order_history("linear", now - 60_000, fake.server_time_ms())
        .await
        .unwrap();
    assert_eq!(history[0]["orderStatus"], "Cancelled");
    assert!(metric_sum("ws_gateway_rest_requests_total", "ret_code=\"0\"") >= 5.0);
}

#[tokio::test]
async fn a_bad_key_is_a_clear_error_without_retries() {
    let fake = FakeBybit::start().await;
    let rest = RestClient::new(
        &fake.rest_url().parse().unwrap(),
        Some(creds("not-the-key", "whatever")),
        ServerClock::local(),
        fast_policy(),
        CancellationToken::new(),
    );
    let err = rest.wallet_balance("UNIFIED").await.unwrap_err();
    assert_eq!(err.ret_code(), Some(10003), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/v5/account/wallet-balance")
            && text.contains("10003")
            && text.contains("API key is invalid"),
        "{text}"
    );
    assert_eq!(fake.rest_requests().len(), 1, "not retried");
    // No credentials at all: refused before any request.
    let anon = RestClient::new(
        &fake.rest_url().parse().unwrap(),
        None,
        ServerClock::local(),
        fast_policy(),
        CancellationToken::new(),
    );
    let err = anon.executions("linear", 0, 1).await.unwrap_err();
    assert!(matches!(err, RestError::NoCredentials { .. }), "{err}");
    assert!(err.to_string().contains("BYBIT_API_KEY"));
}

#[tokio::test]
async fn pagination_and_windows_return_every_item_once() {
    let fake = FakeBybit::start().await;
    let account = fake.account();
    let order = account.place_order("linear", "ETHUSDT", "Sell", 1000.0, 3000.0);
    for _ in 0..250 {
        account.fill(&order, 1.0).unwrap();
    }
    for _ in 0..60 {
        account.place_order("linear", "XRPUSDT", "Buy", 1.0, 2.0);
    }
    let rest = client(&fake, ServerClock::local(), fast_policy());
    let now = fake.server_time_ms();
    let execs = rest
        .executions("linear", now - 60_000, now + 1)
        .await
        .unwrap();
    let mut ids: Vec<&str> = execs
        .iter()
        .map(|e| e["execId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 250);
    assert!(
        execs
            .windows(2)
            .all(|w| w[0]["execTime"].as_str() <= w[1]["execTime"].as_str()),
        "oldest first"
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 250, "no item twice");
    let pages = fake
        .rest_requests()
        .iter()
        .filter(|r| r.path == endpoints::EXECUTIONS)
        .count();
    assert_eq!(pages, 3, "100 per page");
    let orders = rest
        .order_history("linear", now - 60_000, now + 1)
        .await
        .unwrap();
    assert_eq!(orders.len(), 61);
    // 15 days: three windows of at most 7 days, each one request here.
    let before = fake.rest_requests().len();
    let day = 24 * 3600 * 1000;
    let old = rest
        .executions("linear", now - 15 * day, now - 60_000 - 1)
        .await
        .unwrap();
    assert!(old.is_empty());
    let windows: Vec<_> = fake.rest_requests()[before..].to_vec();
    assert_eq!(windows.len(), 3, "{windows:?}");
    assert!(windows.iter().all(|r| r.ret_code == Some(0)), "{windows:?}");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_succeed() {
    let fake = FakeBybit::start().await;
    let rest = client(&fake, ServerClock::local(), fast_policy());
    fake.fail_rest(RestFailure::RateLimited, Some(2));
    rest.wallet_balance("UNIFIED").await.unwrap();
    fake.fail_rest(RestFailure::Http500, Some(3));
    rest.wallet_balance("UNIFIED").await.unwrap();
    fake.fail_rest(RestFailure::Http429, Some(1));
    rest.wallet_balance("UNIFIED").await.unwrap();
    let codes: Vec<_> = fake
        .rest_requests()
        .iter()
        .map(|r| (r.status, r.ret_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (200, Some(10006)),
            (200, Some(10006)),
            (200, Some(0)),
            (500, None),
            (500, None),
            (500, None),
            (200, Some(0)),
            (429, None),
            (200, Some(0)),
        ]
    );
    let wallet = "endpoint=\"/v5/account/wallet-balance\"";
    assert!(
        metric_sum(
            "ws_gateway_rest_requests_total",
            &format!("{wallet},ret_code=\"10006\"")
        ) >= 2.0
    );
    assert!(
        metric_sum(
            "ws_gateway_rest_requests_total",
            &format!("{wallet},ret_code=\"http_500\"")
        ) >= 3.0
    );
}

#[tokio::test]
async fn a_rest_that_keeps_failing_is_given_up_after_the_bounded_attempts() {
    let fake = FakeBybit::start().await;
    let rest = client(&fake, ServerClock::local(), fast_policy());
    fake.fail_rest(RestFailure::Http500, None);
    let err = rest.wallet_balance("UNIFIED").await.unwrap_err();
    assert!(
        matches!(err, RestError::GaveUp { attempts: 4, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("gave up after 4 attempts"),
        "{err}"
    );
    assert_eq!(fake.rest_requests().len(), 4);
    fake.clear_rest_failure();
    fake.fail_rest(RestFailure::RateLimited, None);
    let err = rest.executions("linear", 0, 1).await.unwrap_err();
    assert!(err.to_string().contains("10006"), "{err}");
    assert_eq!(fake.rest_requests().len(), 8);
    // A closed port: transport errors, also bounded.
    let dead = RestClient::new(
        &"http://127.0.0.1:9".parse().unwrap(),
        None,
        ServerClock::local(),
        fast_policy(),
        CancellationToken::new(),
    );
    let err = dead
        .recent_trades("linear", "BTCUSDT", 10)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RestError::GaveUp { attempts: 4, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn recent_trades_keep_the_last_thousand_with_contiguous_ids() {
    let fake = FakeBybit::start().await;
    let tape = fake.trades("linear", "BTCUSDT");
    let (first, _) = tape.push(700);
    let (second, _) = tape.push(700);
    assert_eq!(first.end, second.start, "contiguous");
    let rest = client(&fake, ServerClock::local(), fast_policy());
    let list = rest.recent_trades("linear", "BTCUSDT", 1000).await.unwrap();
    assert_eq!(list.len(), 1000);
    let newest: u64 = list[0]["execId"].as_str().unwrap().parse().unwrap();
    let oldest: u64 = list[999]["execId"].as_str().unwrap().parse().unwrap();
    assert_eq!((newest, oldest), (second.end - 1, second.end - 1000));
    let spot = fake.trades("spot", "BTCUSDT");
    spot.push(100);
    let list = rest.recent_trades("spot", "BTCUSDT", 1000).await.unwrap();
    assert_eq!(list.len(), 60, "spot answers at most 60");
}

#[tokio::test]
async fn the_client_clock_follows_the_server_and_recovers_from_a_refused_timestamp() {
    let fake = FakeBybit::start().await;
    fake.set_clock_offset(secs(30));
    // Signing with the local clock: refused once (10002), resynced, then accepted.
    let clock = ServerClock::local();
    let rest = client(&fake, clock.clone(), fast_policy());
    rest.wallet_balance("UNIFIED").await.unwrap();
    let codes: Vec<_> = fake
        .rest_requests()
        .iter()
        .map(|r| (r.path.clone(), r.ret_code))
        .collect();
    assert_eq!(
        codes[0],
        (endpoints::WALLET.to_owned(), Some(10002)),
        "{codes:?}"
    );
    assert_eq!(codes[1].0, endpoints::TIME);
    assert_eq!(codes[2], (endpoints::WALLET.to_owned(), Some(0)));
    let offset = clock.offset_ms();
    assert!((29_500..=30_500).contains(&offset), "{offset}");
    fake.set_clock_offset_ms(-12_000);
    let offset = rest.sync_clock().await.unwrap();
    assert!((-12_500..=-11_500).contains(&offset), "{offset}");
}

#[tokio::test]
async fn with_the_exchange_clock_30s_ahead_auth_and_rest_succeed_and_the_gauge_shows_it() {
    let fake = FakeBybit::start().await;
    fake.set_clock_offset(secs(30));
    let vars = vec![
        ("BYBIT_WS_URL", fake.base_url()),
        ("BYBIT_REST_URL", fake.rest_url()),
        ("BYBIT_API_KEY", FAKE_API_KEY.to_owned()),
        ("BYBIT_API_SECRET", FAKE_API_SECRET.to_owned()),
        ("WS_GATEWAY_LOG_LEVEL", "info".to_owned()),
    ];
    let bin = Binary::start(&vars, "").await;
    bin.post(
        json!({"channel_type": "order", "category": "linear", "requesting_service": "rest-test"}),
    )
    .await;
    let subscribed = wait_until(secs(15), || {
        let topics = fake.subscribed(PRIVATE);
        async move { (!topics.is_empty()).then_some(topics) }
    })
    .await;
    assert!(
        subscribed.is_some(),
        "private auth and subscribe (only after a good auth): {}",
        bin.log()
    );
    let auths = fake.requests_of(PRIVATE, "auth");
    assert_eq!(auths.len(), 1, "the first auth succeeds: {auths:?}");
    let offset = bin
        .metric("ws_gateway_server_time_offset_seconds", &[])
        .await;
    println!("server time offset gauge with the fake 30 s ahead: {offset:.3} s");
    assert!((29.5..=30.5).contains(&offset), "{offset}");
    assert!(
        bin.metric(
            "ws_gateway_rest_requests_total",
            &[("endpoint", "/v5/market/time"), ("ret_code", "0")]
        )
        .await
            >= 1.0
    );
    // REST from this machine with the synced clock also passes the fake's timestamp check.
    let clock = ServerClock::pending();
    let rest = client(&fake, clock.clone(), fast_policy());
    rest.sync_clock().await.unwrap();
    rest.wallet_balance("UNIFIED").await.unwrap();
    assert!(fake.rest_requests().iter().all(|r| r.ret_code == Some(0)));
}

#[tokio::test]
async fn private_frames_come_from_the_same_account_as_rest() {
    let fake = FakeBybit::start().await;
    let account = fake.account();
    // Produced with no socket connected: kept for REST.
    let order = account.place_order("linear", "BTCUSDT", "Buy", 1.0, 100.0);
    account.fill(&order, 1.0).unwrap();
    assert_eq!(account.executions().len(), 1);
    assert_eq!(account.order_updates().len(), 2);
    assert_eq!(account.positions()[0]["size"], "1");
    let rest = client(&fake, ServerClock::local(), fast_policy());
    let now = fake.server_time_ms();
    let execs = rest
        .executions("linear", now - 60_000, now + 1)
        .await
        .unwrap();
    assert_eq!(execs[0]["execId"], account.executions()[0]["execId"]);
    assert_eq!(fake.connection_count(PRIVATE), 0);
    // Background trading keeps producing with no socket connected.
    let trading = account.keep_trading("linear", "ETHUSDT", Duration::from_millis(5));
    let more = wait_until(secs(5), || {
        let n = account.executions().len();
        async move { (n >= 21).then_some(n) }
    })
    .await;
    trading.stop();
    assert!(more.is_some(), "ten more orders traded");
}

#[tokio::test]
async fn account_frames_reach_the_gateway_over_the_private_socket() {
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = crate::support::spawn_app(crate::support::stack::against(
        &fake,
        &crate::support::sqlite_url(dir.path()),
    ))
    .await;
    let mut events = app.events.subscribe();
    crate::support::http::post(
        &app,
        json!({"channel_type": "execution", "category": "linear", "requesting_service": "rest-test"}),
    )
    .await;
    let up = wait_until(secs(10), || {
        let topics = fake.subscribed(PRIVATE);
        async move { (!topics.is_empty()).then_some(()) }
    })
    .await;
    assert!(up.is_some(), "private topic subscribed");
    let account = fake.account();
    let order = account.place_order("linear", "BTCUSDT", "Buy", 2.0, 100.0);
    let exec_id = account.fill(&order, 2.0).unwrap();
    let got = tokio::time::timeout(secs(10), async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.topic.starts_with("execution") {
                return String::from_utf8_lossy(ev.data()).into_owned();
            }
        }
    })
    .await
    .expect("an execution event");
    assert!(got.contains(&exec_id), "{got}");
    app.shutdown().await.unwrap();
}
