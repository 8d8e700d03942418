//! The cluster control plane (issue 14, spec section 11) in process: several controllers on one
//! fresh PostgreSQL database, each with its own `Ownership` handle, short timings. Exactly one
//! owner per unit, balance, epochs up on every change of owner, takeover after a silent death,
//! the fencing deadline before anyone else takes over, planned moves and a clean leave.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    cluster::{
        Ownership, Unit,
        controller::{self, ControllerParams},
    },
    event::{Category, Endpoint},
    pipeline_file::ClusterConfig,
    subscriptions::{SubscriptionRegistry, TopicKey},
};

use crate::support::TestDatabase;

fn config() -> ClusterConfig {
    ClusterConfig {
        renew_interval: Duration::from_millis(200),
        lease_ttl: Duration::from_millis(1000),
        poll_interval: Duration::from_millis(200),
        ..ClusterConfig::default()
    }
}

struct Member {
    ownership: Ownership,
    stop: CancellationToken,
    leave: CancellationToken,
    left: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn member(db: &TestDatabase, id: &str, keys: &[TopicKey]) -> Member {
    let conn = db.migrated().await;
    let registry = SubscriptionRegistry::new_handle();
    for k in keys {
        registry.acquire(k, "pipeline");
    }
    let ownership = Ownership::member(id);
    let stop = CancellationToken::new();
    let (leave, left) = (CancellationToken::new(), CancellationToken::new());
    let params = ControllerParams {
        leave: leave.clone(),
        left: left.clone(),
        db: conn,
        url: SecretString::from(db.url.clone()),
        config: config(),
        ownership: ownership.clone(),
        registry: Some(registry),
        api_addr: format!("127.0.0.1:{}", 4400),
    };
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let _ = controller::run(params, s).await;
    });
    Member {
        ownership,
        stop,
        leave,
        left,
        task,
    }
}

fn keys(n: usize) -> Vec<TopicKey> {
    (0..n)
        .map(|i| {
            TopicKey::new(
                Endpoint::Public(Category::ALL[i % 2]),
                format!("publicTrade.S{i:02}"),
            )
        })
        .chain([TopicKey::new(Endpoint::Private, "order")])
        .collect()
}

/// unit → (owner index, epoch) over the members given, failing on a unit owned twice.
fn owners(members: &[&Member]) -> BTreeMap<Unit, (usize, u64)> {
    let mut out = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for (u, e) in m.ownership.owned() {
            if let Some((j, _)) = out.insert(u.clone(), (i, e)) {
                panic!("{u:?} owned by members {j} and {i} at once");
            }
        }
    }
    out
}

async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {limit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_unit_balance_failover_fencing_and_moves() {
    let db = TestDatabase::postgres().await;
    let all = keys(30);
    let units: Vec<Unit> = {
        let mut u: Vec<Unit> = all.iter().map(Unit::of).collect();
        u.dedup();
        u
    };
    assert_eq!(units.len(), 31);
    // Each member wants every topic (the same pipeline file), plus one topic only a wants.
    let only_a = TopicKey::new(Endpoint::Public(Category::Spot), "tickers.ONLYA");
    let mut a_keys = all.clone();
    a_keys.push(only_a.clone());
    let a = member(&db, "a", &a_keys).await;
    let b = member(&db, "b", &all).await;
    let c = member(&db, "c", &all).await;

    let took = wait_for(
        "every unit owned, balanced",
        Duration::from_secs(20),
        || {
            let o = owners(&[&a, &b, &c]);
            let mut load = [0usize; 3];
            for (i, _) in o.values() {
                load[*i] += 1;
            }
            o.len() == 32 && load.iter().all(|n| *n <= 11)
        },
    )
    .await;
    eprintln!("three members: all 31 units owned, balanced, after {took:?}");
    // Steady: no flapping over a few renewals.
    let before = owners(&[&a, &b, &c]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(before, owners(&[&a, &b, &c]), "ownership flapped");
    let topic = &all[0];
    let admitted: Vec<Option<u64>> = [&a, &b, &c]
        .iter()
        .map(|m| m.ownership.admit(topic, Instant::now()))
        .collect();
    assert_eq!(admitted.iter().flatten().count(), 1, "{admitted:?}");

    // kill -9 of a: its task stops without leaving; its handle fences at its deadline.
    let mut a_units: BTreeMap<Unit, u64> = a.ownership.owned();
    assert!(!a_units.is_empty());
    a.task.abort();
    // The topic only a wanted is wanted by no live instance once a is dead.
    a_units.remove(&Unit::of(&only_a));
    let killed = Instant::now();
    let a_deadline = a.ownership.deadline().expect("a renewed");
    let mut first_takeover: Option<Instant> = None;
    let took = wait_for("a's units taken over", Duration::from_secs(10), || {
        let o = owners(&[&b, &c]);
        for u in a_units.keys() {
            if o.contains_key(u) && first_takeover.is_none() {
                first_takeover = Some(Instant::now());
            }
        }
        // While a is fenced (past its deadline) it admits nothing.
        if Instant::now() >= a_deadline {
            assert!(a.ownership.owned().is_empty());
            assert_eq!(a.ownership.admit(topic, Instant::now()), None);
        }
        a_units.keys().all(|u| o.contains_key(u))
    })
    .await;
    eprintln!(
        "kill: a's {} units owned by b/c after {took:?}",
        a_units.len()
    );
    assert!(
        first_takeover.unwrap() >= a_deadline,
        "taken over before a's own deadline"
    );
    let o = owners(&[&b, &c]);
    for (u, e) in &a_units {
        assert!(o[u].1 > *e, "{u:?}: epoch {} not above {e}", o[u].1);
    }
    assert!(killed.elapsed() < Duration::from_secs(5));
    assert_eq!(
        owners(&[&b, &c]).len(),
        31,
        "a's own topic is not taken over"
    );

    // A new member joins: planned moves bring everyone under the new cap, epochs go up.
    let epochs_before = owners(&[&b, &c]);
    let d = member(&db, "d", &all).await;
    let took = wait_for("rebalanced with d", Duration::from_secs(20), || {
        let o = owners(&[&b, &c, &d]);
        let mut load = [0usize; 3];
        for (i, _) in o.values() {
            load[*i] += 1;
        }
        o.len() == 31 && load.iter().all(|n| *n <= 11) && load[2] > 0
    })
    .await;
    eprintln!("join: rebalanced after {took:?}");
    let o = owners(&[&b, &c, &d]);
    for (u, (owner, epoch)) in &o {
        if let Some((was, e)) = epochs_before.get(u) {
            let same_owner = (*was == 0 && *owner == 0) || (*was == 1 && *owner == 1);
            if !same_owner {
                assert!(epoch > e, "{u:?} moved without a new epoch");
            }
        }
    }

    // SIGTERM of b: it stops counting as live and keeps its leases until c and d, subscribed,
    // are ready; then hands each over (make-before-break) and has left.
    let b_units = b.ownership.owned();
    let c_before = c.ownership.owned().len() + d.ownership.owned().len();
    b.leave.cancel();
    let left_at = Instant::now();
    let mut taken_while_b_held = false;
    while !b.left.is_cancelled() {
        assert!(
            left_at.elapsed() < Duration::from_secs(5),
            "b left within its bound"
        );
        // Some unit held by b is already incoming on c or d (subscribed before b lets go).
        for u in b.ownership.owned().keys() {
            if let Unit::Topic(k) = u
                && (c.ownership.owns(k) || d.ownership.owns(k))
            {
                taken_while_b_held = true;
            }
        }
        let _ = owners(&[&b, &c, &d]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "leave: b handed over and left after {:?}",
        left_at.elapsed()
    );
    let _ = b.task.await;
    assert!(taken_while_b_held || b_units.keys().all(|u| *u == Unit::Private) || c_before == 0);
    let took = wait_for("b's units taken over", Duration::from_secs(5), || {
        let o = owners(&[&c, &d]);
        b_units.keys().all(|u| o.contains_key(u))
    })
    .await;
    eprintln!("leave: b's units owned by c/d {took:?} after b left");

    c.stop.cancel();
    d.stop.cancel();
    let _ = c.task.await;
    let _ = d.task.await;
    db.drop_database().await;
}

/// Two real apps in process, in cluster mode on one database and one fake Bybit: every
/// pipeline-file topic is subscribed upstream by exactly one of them; both answer
/// `GET /api/v1/cluster` with the same owners; after one stops (SIGTERM), the other subscribes
/// all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_share_the_topics_and_one_takes_over_when_the_other_stops() {
    use crate::support::{TEST_API_KEY, TestConfig, http, spawn_app};
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
    let started = Instant::now();
    while !once(&fake) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "each topic subscribed once: {:?}",
            fake.subscribed("/v5/public/linear")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "two apps: each topic subscribed once after {:?}",
        started.elapsed()
    );

    let cluster = |base: String| async move {
        let v: serde_json::Value = http::client()
            .get(format!("{base}/api/v1/cluster"))
            .header("X-API-Key", TEST_API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
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
        let (va, vb) = (cluster(a.http()).await, cluster(b.http()).await);
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
    let settled = Instant::now();
    while !once(&fake) {
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "each topic once after the moves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health: serde_json::Value = http::client()
        .get(format!("{}/health", a.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["components"]["cluster"], "up", "{health}");

    // A subscription created through a is upstream (once) within 1 s; cancelled through b, it
    // is no longer upstream anywhere.
    let posted = Instant::now();
    let created: serde_json::Value = http::client()
        .post(format!("{}/api/v1/subscriptions", a.http()))
        .header("X-API-Key", TEST_API_KEY)
        .json(&serde_json::json!({
            "channel_type": "trades", "symbol": "APIUSDT", "category": "linear",
            "requesting_service": "alpha"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created").to_owned();
    while fake.push_topic("publicTrade.APIUSDT", r#"{"op":"pong"}"#) != 1 {
        assert!(
            posted.elapsed() < Duration::from_secs(3),
            "API topic upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "two apps: API subscription via a upstream after {:?}",
        posted.elapsed()
    );
    let cancelled = http::client()
        .delete(format!("{}/api/v1/subscriptions/{id}", b.http()))
        .header("X-API-Key", TEST_API_KEY)
        .send()
        .await
        .unwrap();
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    let cancel_at = Instant::now();
    while fake.push_topic("publicTrade.APIUSDT", r#"{"op":"pong"}"#) != 0 {
        assert!(
            cancel_at.elapsed() < Duration::from_secs(5),
            "cancel through b ends it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "two apps: cancelled via b, unsubscribed after {:?}",
        cancel_at.elapsed()
    );

    // SIGTERM of a: b subscribes every topic, each once.
    a.shutdown().await.unwrap();
    let stopped = Instant::now();
    while !once(&fake) {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "b took over: {:?}",
            fake.subscribed("/v5/public/linear")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "stop: b subscribed every topic {:?} after a stopped",
        stopped.elapsed()
    );
    b.shutdown().await.unwrap();
    db.drop_database().await;
}

/// The catch-up cursor is written only by the holder of the private lease at its epoch (the
/// fence is in the statement), and never moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_cursor_is_written_only_under_the_private_lease_at_its_epoch() {
    use ws_gateway::{cluster::store, store::cursors};

    let db = TestDatabase::postgres().await;
    let conn = db.migrated().await;
    let ttl = Duration::from_secs(5);
    store::register(&conn, "x", "127.0.0.1:1").await.unwrap();
    let epoch = store::claim(&conn, &Unit::Private, "x", ttl)
        .await
        .unwrap()
        .expect("a free lease is claimed")
        .epoch;
    assert_eq!(epoch, 1);
    assert_eq!(
        store::claim(&conn, &Unit::Private, "y", ttl).await.unwrap(),
        None
    );
    let mut c = cursors::Cursor::default();
    c.advance(100, "a");
    assert!(
        cursors::save_fenced(&conn, "execution", &c, "x", 1)
            .await
            .unwrap()
    );
    c.advance(200, "b");
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "x", 0)
            .await
            .unwrap()
    );
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "y", 1)
            .await
            .unwrap()
    );
    let older = {
        let mut o = cursors::Cursor::default();
        o.advance(50, "z");
        o
    };
    assert!(
        !cursors::save_fenced(&conn, "execution", &older, "x", 1)
            .await
            .unwrap()
    );
    // Released and taken by y at epoch 2: x's writes are refused, y's land.
    store::release(&conn, &Unit::Private, "x").await.unwrap();
    assert_eq!(
        store::claim(&conn, &Unit::Private, "y", ttl)
            .await
            .unwrap()
            .map(|c| c.epoch),
        Some(2)
    );
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "x", 1)
            .await
            .unwrap()
    );
    assert!(
        cursors::save_fenced(&conn, "execution", &c, "y", 2)
            .await
            .unwrap()
    );
    let stored = cursors::load(&conn).await.unwrap();
    assert_eq!(stored["execution"].ts, 200);
    let _ = conn.close().await;
    db.drop_database().await;
}

/// Statuses and trade marks are the owner's to write: they land only under a live lease of the
/// writer at its epoch; a time-only mark never replaces a trade; the next claim after the
/// owner's death brings the mark, a release forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_trade_marks_are_written_only_by_the_owner_at_its_epoch() {
    use sea_orm::ConnectionTrait;
    use ws_gateway::{cluster::marks::Mark, cluster::store, subscriptions::TopicStatus};

    let db = TestDatabase::postgres().await;
    let conn = db.migrated().await;
    let key = TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT");
    let unit = Unit::of(&key);
    let ttl = Duration::from_secs(5);
    store::register(&conn, "x", "127.0.0.1:1").await.unwrap();
    store::register(&conn, "y", "127.0.0.1:2").await.unwrap();
    let epoch = store::claim(&conn, &unit, "x", ttl)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    // Two services' rows of the topic, created (say) through two other instances.
    for service in ["svc-1", "svc-2"] {
        conn.execute_unprepared(&format!(
            "INSERT INTO subscriptions (id, channel_type, category, symbol, topic, endpoint, \
             requesting_service, is_active, status, created_at, updated_at) VALUES \
             (gen_random_uuid(), 'trades', 'linear', 'BTCUSDT', 'publicTrade.BTCUSDT', 'linear', \
             '{service}', TRUE, 'pending', now(), now())"
        ))
        .await
        .unwrap();
    }
    let statuses = |conn: &sea_orm::DatabaseConnection| {
        let rows = query(
            conn,
            "SELECT status FROM subscriptions ORDER BY requesting_service",
        );
        async move {
            let rows = rows.await;
            rows.iter()
                .map(|r| r.try_get::<String>("", "status").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let active = [(key.clone(), epoch, TopicStatus::Active)];
    // Not the owner, or not its epoch: nothing lands.
    assert_eq!(store::write_statuses(&conn, "y", &active).await.unwrap(), 0);
    let stale = [(key.clone(), epoch + 1, TopicStatus::Active)];
    assert_eq!(store::write_statuses(&conn, "x", &stale).await.unwrap(), 0);
    assert_eq!(statuses(&conn).await, ["pending", "pending"]);
    // The owner at its epoch: every row of the topic; again, nothing to change.
    assert_eq!(store::write_statuses(&conn, "x", &active).await.unwrap(), 2);
    assert_eq!(store::write_statuses(&conn, "x", &active).await.unwrap(), 0);
    assert_eq!(statuses(&conn).await, ["active", "active"]);

    let mark = |id: &str, time: u64| Mark {
        id: id.to_owned(),
        time,
    };
    let lease_mark = |conn: &sea_orm::DatabaseConnection| {
        let rows = query(
            conn,
            "SELECT trade_mark_id, trade_mark_time FROM cluster_leases",
        );
        async move {
            let rows = rows.await;
            (
                rows[0]
                    .try_get::<Option<String>>("", "trade_mark_id")
                    .unwrap(),
                rows[0]
                    .try_get::<Option<i64>>("", "trade_mark_time")
                    .unwrap(),
            )
        }
    };
    // A time-only mark lands where there is none; it never replaces a trade.
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("", 1_000))])
        .await
        .unwrap();
    assert_eq!(lease_mark(&conn).await, (Some(String::new()), Some(1_000)));
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("77", 2_000))])
        .await
        .unwrap();
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("", 3_000))])
        .await
        .unwrap();
    store::write_trade_marks(&conn, "y", &[(unit.clone(), epoch, mark("99", 4_000))])
        .await
        .unwrap();
    assert_eq!(lease_mark(&conn).await, (Some("77".into()), Some(2_000)));
    // x dies (its lease expires): y's claim brings x's last trade.
    conn.execute_unprepared("UPDATE cluster_leases SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
    let claimed = store::claim(&conn, &unit, "y", ttl).await.unwrap().unwrap();
    assert_eq!(claimed.epoch, epoch + 1);
    assert_eq!(claimed.trade_mark, Some(mark("77", 2_000)));
    // x's late writes no longer land.
    let pending = [(key.clone(), epoch, TopicStatus::Pending)];
    assert_eq!(
        store::write_statuses(&conn, "x", &pending).await.unwrap(),
        0
    );
    // Released (nobody wants it): the mark goes with it; the next claim brings none.
    store::release(&conn, &unit, "y").await.unwrap();
    let claimed = store::claim(&conn, &unit, "x", ttl).await.unwrap().unwrap();
    assert_eq!(claimed.trade_mark, None);
    let _ = conn.close().await;
    db.drop_database().await;
}

/// The rows `sql` returns.
fn query(
    conn: &sea_orm::DatabaseConnection,
    sql: &str,
) -> impl std::future::Future<Output = Vec<sea_orm::QueryResult>> + use<> {
    use sea_orm::ConnectionTrait;
    let (conn, sql) = (conn.clone(), sql.to_owned());
    async move {
        let stmt = sea_orm::Statement::from_string(conn.get_database_backend(), sql);
        conn.query_all_raw(stmt).await.expect("query")
    }
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
