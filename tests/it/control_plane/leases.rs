//! Controllers alone on one database: one owner per unit, balance, failover, fencing, moves.

use std::time::{Duration, Instant};

use ws_gateway::{
    cluster::Unit,
    event::{Category, Endpoint},
    subscriptions::TopicKey,
};

use super::*;
use crate::support::TestDatabase;

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
