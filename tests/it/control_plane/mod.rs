//! The cluster control plane (issue 14, spec section 11) in process: several controllers on one
//! fresh PostgreSQL database, each with its own `Ownership` handle, short timings. Exactly one
//! owner per unit, balance, epochs up on every change of owner, takeover after a silent death,
//! the fencing deadline before anyone else takes over, planned moves and a clean leave.
//!
//! `leases`: controllers alone (balance, failover, fencing, moves); `apps`: whole apps in
//! cluster mode; `fenced_writes`: the statements only an owner's writes pass (cursor, statuses,
//! trade marks).

mod apps;
mod fenced_writes;
mod leases;

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
