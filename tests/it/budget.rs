//! The cluster-wide Bybit connection budget of issue 14 (spec section 11, "shared limits"),
//! against the real PostgreSQL: several handles (as instances) hammering one database never
//! get more than the budget within the window, waiters are granted as the window slides, and
//! with PostgreSQL cut an instance keeps to its local share.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use secrecy::SecretString;
use ws_gateway::cluster::budget::{BudgetConfig, ConnectBudget};

use ws_gateway::pipeline_file::SourceConfig;

use crate::support::{
    TestDatabase, fast_config, init_test_log, proxy::TcpProxy, secs, source::Harness,
};

async fn handles(db_url: &str, n: usize, config: &BudgetConfig) -> Vec<ConnectBudget> {
    let mut out = Vec::new();
    for i in 0..n {
        let db = ws_gateway::store::connect(&SecretString::from(db_url.to_owned()))
            .await
            .expect("database");
        out.push(ConnectBudget::new(db, format!("inst-{i}"), config.clone()));
    }
    out
}

/// Grant times (ms since the epoch, database clock), oldest first.
async fn grant_times(db_url: &str) -> Vec<i64> {
    let db = Database::connect(db_url).await.expect("database");
    db.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT (EXTRACT(EPOCH FROM granted_at) * 1000)::bigint AS t \
         FROM connect_grants ORDER BY granted_at",
    ))
    .await
    .expect("grants")
    .iter()
    .map(|r| r.try_get::<i64>("", "t").expect("t"))
    .collect()
}

#[tokio::test]
async fn instances_hammering_one_database_never_get_more_than_the_budget_in_the_window() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let config = BudgetConfig {
        budget: 25,
        window: Duration::from_secs(600),
        ..BudgetConfig::default()
    };
    let instances = handles(&test_db.url, 4, &config).await;
    let mut tasks = Vec::new();
    for h in &instances {
        for _ in 0..3 {
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = 0u32;
                for _ in 0..20 {
                    if h.try_grant().await.is_ok() {
                        granted += 1;
                    }
                }
                granted
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 25, "240 asks, exactly the budget granted");
    assert_eq!(grant_times(&test_db.url).await.len(), 25);
    // Spent: the next ask says to wait about the window.
    let wait = instances[0].try_grant().await.expect_err("spent");
    assert!(wait > Duration::from_secs(500), "{wait:?}");
    test_db.drop_database().await;
}

#[tokio::test]
async fn waiters_are_granted_as_the_window_slides_and_never_above_the_budget() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let window = Duration::from_secs(2);
    let config = BudgetConfig {
        budget: 4,
        window,
        ..BudgetConfig::default()
    };
    let instances = handles(&test_db.url, 3, &config).await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for h in &instances {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..4 {
                h.acquire().await;
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("every waiter granted in time")
            .expect("task");
    }
    let elapsed = started.elapsed();
    let times = grant_times(&test_db.url).await;
    assert_eq!(times.len(), 12);
    // Sliding window: any `budget` + 1 consecutive grants span at least the window.
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    for w in times.windows(5) {
        assert!(
            w[4] - w[0] >= window_ms,
            "five grants within the window: {w:?}"
        );
    }
    assert!(elapsed >= 2 * window, "12 grants of 4 per 2 s: {elapsed:?}");
    eprintln!("12 grants at 4 per 2 s over 3 instances took {elapsed:?}");
    test_db.drop_database().await;
}

#[tokio::test]
async fn with_postgres_cut_an_instance_keeps_to_its_local_share() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let mut url = url::Url::parse(&test_db.url).expect("database URL");
    let upstream = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = TcpProxy::start(&upstream).await;
    url.set_port(Some(proxy.addr.port())).expect("port");
    let config = BudgetConfig {
        budget: 100,
        window: Duration::from_secs(600),
        fallback_share: 3,
        db_timeout: Duration::from_secs(1),
        ..BudgetConfig::default()
    };
    let h = handles(url.as_str(), 1, &config).await.remove(0);
    assert!(h.try_grant().await.is_ok(), "shared grant");
    proxy.cut();
    for i in 0..3 {
        assert!(h.try_grant().await.is_ok(), "local grant {i}");
    }
    let wait = h.try_grant().await.expect_err("the local share is spent");
    assert!(wait > Duration::from_secs(500), "{wait:?}");
    proxy.restore();
    let mut back = false;
    for _ in 0..20 {
        if h.try_grant().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(back, "shared grants again once PostgreSQL answers");
    assert_eq!(
        grant_times(&test_db.url).await.len(),
        2,
        "local grants are not written"
    );
    test_db.drop_database().await;
}

#[tokio::test]
async fn two_sources_in_a_reconnect_storm_stay_within_the_shared_budget() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let config = BudgetConfig {
        budget: 6,
        window: Duration::from_secs(600),
        ..BudgetConfig::default()
    };
    let budgets = handles(&test_db.url, 2, &config).await;
    // The local bucket alone would allow about a connect every 100 ms.
    let source = SourceConfig {
        connect_burst: 100,
        connect_refill: Duration::from_millis(10),
        ..fast_config(secs(5), secs(5))
    };
    let mut harnesses = Vec::new();
    for b in &budgets {
        let h = Harness::start_with_budget(source.clone(), None, Some(b.clone())).await;
        h.fake.refuse_connections(true);
        h.acquire(crate::support::source::linear(), "publicTrade.BTCUSDT");
        harnesses.push(h);
    }
    let attempts = |hs: &[Harness]| -> u64 {
        hs.iter()
            .flat_map(|h| h.health.snapshot().connections)
            .map(|c| c.connect_attempts)
            .sum()
    };
    let full = crate::support::wait_until(secs(30), || {
        let n = attempts(&harnesses);
        async move { (n >= 6).then_some(()) }
    })
    .await;
    assert!(full.is_some(), "the budget is used up by the storm");
    // Several reconnect periods later: still the budget, nothing more.
    tokio::time::sleep(secs(3)).await;
    let total = attempts(&harnesses);
    assert_eq!(
        total, 6,
        "connect attempts of both sources within the budget"
    );
    assert_eq!(grant_times(&test_db.url).await.len(), 6);
    for h in harnesses {
        h.stop().await;
    }
    test_db.drop_database().await;
}

#[tokio::test]
async fn a_weighted_budget_of_another_kind_counts_weight_and_leaves_the_connect_budget_alone() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let rest = BudgetConfig {
        kind: "rest".to_owned(),
        budget: 100,
        window: Duration::from_secs(600),
        ..BudgetConfig::default()
    };
    let instances = handles(&test_db.url, 3, &rest).await;
    let mut tasks = Vec::new();
    for h in &instances {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut weight = 0u32;
            for _ in 0..10 {
                if h.try_grant_weight(7).await.is_ok() {
                    weight += 7;
                }
            }
            weight
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(
        total, 98,
        "14 grants of weight 7 fit in 100, the 15th does not"
    );
    let connect = handles(&test_db.url, 1, &BudgetConfig::default()).await;
    assert!(
        connect[0].try_grant().await.is_ok(),
        "another kind, its own budget"
    );
    test_db.drop_database().await;
}

#[tokio::test]
async fn rest_clients_of_two_instances_share_one_rest_budget() {
    init_test_log();
    let test_db = TestDatabase::postgres().await;
    let fake = fake_bybit::FakeBybit::start().await;
    let rest = BudgetConfig {
        kind: "rest".to_owned(),
        budget: 5,
        window: Duration::from_secs(600),
        ..BudgetConfig::default()
    };
    let budgets = handles(&test_db.url, 2, &rest).await;
    let clients: Vec<_> = budgets
        .iter()
        .map(|b| {
            ws_gateway::rest::RestClient::new(
                &fake.rest_url().parse().expect("url"),
                None,
                ws_gateway::rest::ServerClock::local(),
                ws_gateway::rest::RestPolicy::default(),
                tokio_util::sync::CancellationToken::new(),
            )
            .with_budget(b.clone())
        })
        .collect();
    for i in 0..5 {
        clients[i % 2]
            .get(ws_gateway::rest::endpoints::TIME, &[], false)
            .await
            .expect("within the budget");
    }
    // The sixth request of the cluster waits for the window (it is still waiting after 1 s).
    let sixth = tokio::time::timeout(
        Duration::from_secs(1),
        clients[1].get(ws_gateway::rest::endpoints::TIME, &[], false),
    )
    .await;
    assert!(
        sixth.is_err(),
        "the sixth request waits for the shared REST budget"
    );
    test_db.drop_database().await;
}
