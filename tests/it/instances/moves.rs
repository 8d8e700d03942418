//! Planned moves: a rolling restart of all three (SIGTERM one at a time, each back before the
//! next) and a fourth instance joining. Make-before-break: per topic, from the fake's log of
//! every connection's subscriptions, some connection holds it at every moment of the move; no
//! private loss, no public trade missing, no epoch going back.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use fake_bybit::{PRIVATE, TopicChange};

use super::{
    A, B, C, D, HOSTS, Traffic, expected, ms, pipeline, private_missing, stop_and_collect, symbols,
    three_started, trade_gaps,
};
use crate::support::{
    instances::{Cluster, epoch_regressions, owned_counts, repeats},
    secs,
};

/// Per (path, topic) of `want`: the moments after `from` at which no connection held it
/// (make-before-break broken), from the fake's topic log.
fn unheld_moments(
    log: &[TopicChange],
    want: &BTreeSet<(String, String)>,
    from: Instant,
) -> BTreeMap<(String, String), usize> {
    let mut held: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for ch in log {
        let k = (ch.path.clone(), ch.topic.clone());
        if !want.contains(&k) {
            continue;
        }
        let n = held.entry(k.clone()).or_insert(0);
        *n += if ch.held { 1 } else { -1 };
        if *n == 0 && ch.at >= from {
            *out.entry(k).or_insert(0) += 1;
        }
    }
    out
}

/// The checks after a planned move: private complete, epochs forward, no trade missing.
async fn after_move(
    c: &Cluster,
    traffic: &mut Traffic,
    rec: &BTreeMap<String, crate::support::instances::Recorder>,
    want: &BTreeSet<(String, String)>,
    from: Instant,
    what: &str,
    fails: &mut Vec<String>,
) {
    let (execs, orders, trades) = stop_and_collect(traffic, rec).await;
    let (missing_exec, missing_orders, n_exec, _) = private_missing(&c.fake, &execs, &orders);
    if !missing_exec.is_empty() || !missing_orders.is_empty() {
        fails.push(format!(
            "{what}: private loss: executions missing {} of {n_exec}, orders without their latest state {}",
            missing_exec.len(),
            missing_orders.len()
        ));
    }
    for (class, msgs) in [
        ("executions", &execs),
        ("orders", &orders),
        ("trades", &trades),
    ] {
        let back = epoch_regressions(msgs);
        if !back.is_empty() {
            fails.push(format!(
                "{what}: {class}: a lower epoch after a higher one: {:?}",
                &back[..back.len().min(5)]
            ));
        }
    }
    let gaps = trade_gaps(&traffic.produced(), &trades);
    let missing: usize = gaps.values().map(|(m, _)| m.len()).sum();
    let unheld: usize = gaps.values().map(|(_, u)| *u).sum();
    if missing > 0 {
        fails.push(format!(
            "{what}: {missing} trade ids never reached the queue: {:?}",
            gaps.iter().take(5).collect::<Vec<_>>()
        ));
    }
    let breaks = unheld_moments(&c.fake.topic_log(), want, from);
    if !breaks.is_empty() {
        fails.push(format!(
            "{what}: break-before-make, topics with a moment held by no connection: {breaks:?}"
        ));
    }
    eprintln!(
        "{what}: repeats (same event_key) executions {} of {}, orders {} of {}, trades {} of {}; trades produced while nobody held the topic upstream {unheld}; trade ids missing {missing}",
        repeats(&execs),
        execs.len(),
        repeats(&orders),
        orders.len(),
        repeats(&trades),
        trades.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn rolling_restart_loses_nothing() {
    let syms = symbols(30);
    let want = expected(&syms, true);
    let mut c = three_started(&syms, true).await;
    assert!(
        c.wait_upstream(&[A, B, C], &want, secs(60)).await.is_some(),
        "settled: {:?}",
        c.cluster_view(A).await
    );
    let rec = c.record(&["trades", "executions", "orders"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(100), true);
    let mut fails = Vec::new();
    tokio::time::sleep(secs(2)).await;
    let from = Instant::now();
    for id in [A, B, C] {
        let t0 = Instant::now();
        match c.sigterm(id, secs(30)).await {
            Some(s) if s.success() => {}
            other => fails.push(format!("{id}: SIGTERM gave {other:?}")),
        }
        let stopped = t0.elapsed();
        c.start(id).await;
        // Back as a member with work of its own before the next one stops.
        let working = crate::support::wait_until(secs(30), || {
            let holds = c.upstream().values().any(|w| w.iter().any(|x| x == id));
            async move { holds.then_some(()) }
        })
        .await;
        if working.is_none() {
            fails.push(format!("{id}: holds no topic 30 s after its restart"));
        }
        match c.wait_upstream(&[A, B, C], &want, secs(60)).await {
            Some(_) => eprintln!(
                "rolling restart: {id} stopped in {} ms, back and settled after {} ms",
                ms(stopped),
                ms(t0.elapsed())
            ),
            None => fails.push(format!("{id}: not settled within 60 s of its restart")),
        }
    }
    if c.wait_settled(&[A, B, C], &want, secs(10)).await.is_none() {
        fails.push(format!(
            "/api/v1/cluster does not agree with the fake after the rolling restart: {:?}",
            c.cluster_view(A).await
        ));
    }
    after_move(
        &c,
        &mut traffic,
        &rec,
        &want,
        from,
        "rolling restart",
        &mut fails,
    )
    .await;
    let logs: Vec<String> = [A, B, C]
        .iter()
        .map(|id| format!("--- {id}\n{}", c.get(id).log_tail(15)))
        .collect();
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n{}", logs.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn a_fourth_instance_joins_make_before_break() {
    let syms = symbols(60);
    let want = expected(&syms, true);
    let mut c = Cluster::new(&pipeline(&syms, true)).await;
    for (id, host) in HOSTS {
        c.add(id, host).await;
    }
    c.start_together(&[A, B, C]).await;
    let before = c.wait_upstream(&[A, B, C], &want, secs(60)).await;
    assert!(before.is_some(), "settled: {:?}", c.cluster_view(A).await);
    let before = before.unwrap();
    let rec = c.record(&["trades", "executions", "orders"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(200), true);
    let mut fails = Vec::new();
    tokio::time::sleep(secs(2)).await;
    let from = Instant::now();
    c.start(D).await;
    let got_work = crate::support::wait_until(secs(60), || {
        let c = &c;
        let want = &want;
        async move {
            let map = c.wait_upstream(&[A, B, C, D], want, secs(1)).await?;
            map.values().any(|o| o == D).then_some(map)
        }
    })
    .await;
    match got_work {
        None => fails.push(format!(
            "{D} joined: no settled ownership giving it topics within 60 s: {:?}",
            c.cluster_view(D).await
        )),
        Some(after) => {
            let moved = after
                .iter()
                .filter(|(k, o)| before.get(*k).is_some_and(|b| b != *o))
                .count();
            // Share of 60 topics + the private stream over four, plus a small slack; moves are
            // make-before-break (each waits for the taker's upstream ack), so the balance is
            // read once the moves are done.
            let cap = (want.len() - 1).div_ceil(4) as u64 + 3;
            let mut counts = BTreeMap::new();
            let balanced_by = Instant::now() + secs(15);
            while Instant::now() < balanced_by {
                let view = c.cluster_view(A).await.unwrap_or_default();
                counts = owned_counts(&view);
                if counts.len() == 4 && counts.values().all(|n| *n <= cap) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if counts.values().any(|n| *n > cap) {
                fails.push(format!(
                    "after the join some instance owns more than {cap}: {counts:?}"
                ));
            }
            eprintln!(
                "fourth instance: settled with topics of its own after {} ms; {moved} topics moved; owned {counts:?}; private stream on {}",
                ms(from.elapsed()),
                after[&(PRIVATE.to_owned(), "execution".to_owned())]
            );
        }
    }
    if c.wait_settled(&[A, B, C, D], &want, secs(10))
        .await
        .is_none()
    {
        fails.push(format!(
            "/api/v1/cluster does not list the four with the owners the fake sees: {:?}",
            c.cluster_view(D).await
        ));
    }
    after_move(
        &c,
        &mut traffic,
        &rec,
        &want,
        from,
        "fourth joins",
        &mut fails,
    )
    .await;
    let log = c.get(D).log_tail(20);
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n--- {D}\n{log}");
}
