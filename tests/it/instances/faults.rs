//! An owner lost: `kill -9` during traffic (five runs, failover measured), `kill -STOP` for 10 s
//! then `kill -CONT` (fenced: nothing published under its lost leases), and PostgreSQL cut for
//! one instance only (it stops owning at its deadline, the others take over).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use fake_bybit::PRIVATE;

use crate::catchup::exec_id;

use super::{
    A, B, C, Traffic, epochs_of, expected, ms, private_missing, stale_after_takeover,
    stop_and_collect, symbols, three_started, trade_gaps,
};
use crate::support::{
    instances::{Cluster, Msg, Recorder, epoch_regressions, owned_counts, p50_max, repeats},
    secs,
};

type Owners = BTreeMap<(String, String), String>;

/// Three instances on 30 public topics and the private stream, settled.
async fn three(n_topics: usize) -> (Cluster, Vec<String>, BTreeSet<(String, String)>, Owners) {
    let syms = symbols(n_topics);
    let want = expected(&syms, true);
    let c = three_started(&syms, true).await;
    let Some(map) = c.wait_upstream(&[A, B, C], &want, secs(60)).await else {
        let views = futures::future::join_all([A, B, C].map(|id| c.cluster_view(id))).await;
        let logs: Vec<String> = [A, B, C].iter().map(|id| c.get(id).log_tail(20)).collect();
        c.finish().await;
        panic!(
            "three instances never settled: {views:?}\n{}",
            logs.join("\n---\n")
        );
    };
    (c, syms, want, map)
}

/// The topics `victim` owns in `map`.
fn owned_by(map: &Owners, victim: &str) -> Vec<(String, String)> {
    map.iter()
        .filter(|(_, o)| o.as_str() == victim)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Polls the fake until each of `topics` is held upstream by an instance other than
/// `victim`; returns the time each took from `t0` (`None`: not within `deadline`).
async fn takeover(
    c: &Cluster,
    victim: &str,
    topics: &[(String, String)],
    t0: Instant,
    deadline: Duration,
) -> BTreeMap<(String, String), Option<Duration>> {
    let mut out: BTreeMap<(String, String), Option<Duration>> =
        topics.iter().map(|k| (k.clone(), None)).collect();
    while t0.elapsed() < deadline && out.values().any(Option::is_none) {
        let up = c.upstream();
        for (k, t) in out.iter_mut().filter(|(_, t)| t.is_none()) {
            if up
                .get(k)
                .is_some_and(|who| who.iter().any(|w| w != victim && w != "?"))
            {
                *t = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

/// The slowest takeover, or `None` if one did not happen.
fn slowest(times: &BTreeMap<(String, String), Option<Duration>>) -> Option<Duration> {
    times
        .values()
        .try_fold(Duration::ZERO, |m, t| t.map(|t| m.max(t)))
}

/// The epochs of `victim`'s messages so far, over every recorder.
fn old_epochs(rec: &BTreeMap<String, Recorder>, victim: &str) -> BTreeMap<String, u64> {
    let all: Vec<_> = rec.values().flat_map(Recorder::msgs).collect();
    epochs_of(&all, victim)
}

/// `/api/v1/cluster` on each instance agrees with the fake on every owner.
/// Stops the traffic, lets the queues settle and checks what a takeover from `victim` must
/// keep: nothing of it under its old epochs (`old`) after the new owner's first message, no
/// lower epoch after a higher one, no private event lost. Returns the executions, orders and
/// trades received.
async fn after_takeover(
    c: &Cluster,
    traffic: &mut Traffic,
    rec: &BTreeMap<String, Recorder>,
    victim: &str,
    old: &BTreeMap<String, u64>,
    fails: &mut Vec<String>,
) -> (Vec<Msg>, Vec<Msg>, Vec<Msg>) {
    let (execs, orders, trades) = stop_and_collect(traffic, rec).await;
    for (class, msgs) in [
        ("executions", &execs),
        ("orders", &orders),
        ("trades", &trades),
    ] {
        let stale = stale_after_takeover(msgs, victim, old);
        if !stale.is_empty() {
            fails.push(format!(
                "{class}: {} messages of {victim} under its old epoch after the new owner's first: {:?}",
                stale.len(),
                &stale[..stale.len().min(5)]
            ));
        }
        let back = epoch_regressions(msgs);
        if !back.is_empty() {
            fails.push(format!(
                "{class}: a lower epoch after a higher one: {:?}",
                &back[..back.len().min(5)]
            ));
        }
    }
    let (missing_exec, missing_orders, n_exec, _) = private_missing(&c.fake, &execs, &orders);
    if !missing_exec.is_empty() || !missing_orders.is_empty() {
        fails.push(format!(
            "private loss: executions missing {} of {n_exec}, orders without their latest state {}",
            missing_exec.len(),
            missing_orders.len()
        ));
    }
    let gaps = trade_gaps(&traffic.produced(), &trades);
    eprintln!(
        "after {victim}'s leases were taken: {} symbols had trades no connection received live (recovered from the trade marks)",
        gaps.values().filter(|(_, unheld)| *unheld > 0).count()
    );
    no_trade_missing(&gaps, fails);
    (execs, orders, trades)
}

/// The lost owner's public trades are recovered by the next owner from the lease's trade
/// mark: none is missing after the first one received.
fn no_trade_missing(gaps: &BTreeMap<String, (Vec<u64>, usize)>, fails: &mut Vec<String>) {
    let missing: usize = gaps.values().map(|(m, _)| m.len()).sum();
    if missing > 0 {
        fails.push(format!(
            "public trades missing: {missing} over {} symbols (symbol, missing, first): {:?}",
            gaps.len(),
            gaps.iter()
                .filter(|(_, (m, _))| !m.is_empty())
                .map(|(s, (m, _))| (s, m.len(), m.first()))
                .collect::<Vec<_>>()
        ));
    }
}

async fn view_agrees(c: &Cluster, want: &BTreeSet<(String, String)>, fails: &mut Vec<String>) {
    if c.wait_settled(&[A, B, C], want, secs(10)).await.is_none() {
        fails.push(format!(
            "/api/v1/cluster does not list the three with the owners the fake sees: {:?}",
            c.cluster_view(A).await
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn kill_9_of_the_private_owner_fails_over_within_5_s() {
    let (mut c, syms, want, _) = three(30).await;
    let rec = c.record(&["trades", "executions", "orders"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(200), true);
    let mut fails = Vec::new();
    let mut figures = Vec::new();
    let mut kills = Vec::new();
    for run in 0..5 {
        let Some(map) = c.wait_upstream(&[A, B, C], &want, secs(60)).await else {
            fails.push(format!("run {run}: not settled before the kill"));
            break;
        };
        let victim = map[&(PRIVATE.to_owned(), "execution".to_owned())].clone();
        let topics = owned_by(&map, &victim);
        tokio::time::sleep(secs(1)).await;
        kills.push(c.fake.server_time_ms());
        let t0 = Instant::now();
        c.kill9(&victim);
        let times = takeover(&c, &victim, &topics, t0, secs(30)).await;
        match slowest(&times) {
            Some(t) => {
                eprintln!(
                    "kill -9 run {run}: {victim} owned {} topics (private stream included), all subscribed upstream by others after {} ms",
                    topics.len(),
                    ms(t)
                );
                figures.push(t);
                if t > secs(5) {
                    fails.push(format!("run {run}: failover took {} ms (> 5 s)", ms(t)));
                }
            }
            None => fails.push(format!(
                "run {run}: {victim}'s topics not taken within 30 s: {:?}",
                times
                    .iter()
                    .filter(|(_, t)| t.is_none())
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            )),
        }
        // Back as a member before the next run.
        c.start(&victim).await;
    }
    if c.wait_upstream(&[A, B, C], &want, secs(60)).await.is_none() {
        fails.push("not every topic upstream once after the last restart".into());
    }
    view_agrees(&c, &want, &mut fails).await;
    tokio::time::sleep(secs(2)).await;
    let (execs, orders, trades) = stop_and_collect(&mut traffic, &rec).await;
    let (missing_exec, missing_orders, n_exec, n_orders) =
        private_missing(&c.fake, &execs, &orders);
    if !missing_exec.is_empty() || !missing_orders.is_empty() {
        // When, relative to the kills, the missing executions happened: kill index (-1:
        // before the first) → (count, earliest and latest ms after that kill).
        let mut when: BTreeMap<i64, (usize, u64, u64)> = BTreeMap::new();
        for e in c.fake.account().executions() {
            if !missing_exec.contains(&exec_id(&e)) {
                continue;
            }
            let Some(t) = e["execTime"].as_str().and_then(|t| t.parse::<u64>().ok()) else {
                continue;
            };
            let (i, base) = match kills.iter().rposition(|k| *k <= t) {
                Some(i) => (i as i64, kills[i]),
                None => (-1, t),
            };
            let w = when.entry(i).or_insert((0, u64::MAX, 0));
            w.0 += 1;
            w.1 = w.1.min(t - base);
            w.2 = w.2.max(t - base);
        }
        fails.push(format!(
            "private loss: executions missing {} of {n_exec} (first {:?}; per kill: count, ms after it {when:?}), orders without their latest state {} of {n_orders}",
            missing_exec.len(),
            &missing_exec[..missing_exec.len().min(5)],
            missing_orders.len()
        ));
    }
    let gaps = trade_gaps(&traffic.produced(), &trades);
    let (p50, max) = p50_max(&figures);
    eprintln!(
        "kill -9 failover over {} runs: p50 {} ms, max {} ms; repeats (same event_key): executions {} of {}, orders {} of {}, trades {} of {}; executions produced {n_exec}; trade ids missing after the first received: {} over {} symbols",
        figures.len(),
        ms(p50),
        ms(max),
        repeats(&execs),
        execs.len(),
        repeats(&orders),
        orders.len(),
        repeats(&trades),
        trades.len(),
        gaps.values().map(|(m, _)| m.len()).sum::<usize>(),
        gaps.len(),
    );
    no_trade_missing(&gaps, &mut fails);
    let mut fenced = Vec::new();
    for id in [A, B, C] {
        let n = c
            .metric(
                id,
                "ws_gateway_stage_dropped_total",
                &[("reason", "fenced")],
            )
            .await;
        fenced.push(format!("{id} {n}"));
    }
    eprintln!("fenced drops since each instance's last start: {fenced:?}");
    // The private stream's story on each instance, for a failure.
    let story: Vec<String> = [A, B, C]
        .iter()
        .flat_map(|id| {
            c.get(id)
                .log()
                .lines()
                .filter(|l| {
                    [
                        "atch-up",
                        "\"private\"",
                        "cursor",
                        "fenced",
                        "ERROR",
                        "WARN",
                    ]
                    .iter()
                    .any(|w| l.contains(w))
                })
                .map(|l| format!("{id}: {}", l.chars().take(400).collect::<String>()))
                .collect::<Vec<_>>()
        })
        .collect();
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n{}", story.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn a_paused_owner_publishes_nothing_under_its_lost_leases() {
    let (mut c, syms, want, map) = three(30).await;
    let rec = c.record(&["trades", "executions", "orders"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(200), true);
    let mut fails = Vec::new();
    tokio::time::sleep(secs(2)).await;
    let victim = map[&(PRIVATE.to_owned(), "execution".to_owned())].clone();
    let topics = owned_by(&map, &victim);
    let old = old_epochs(&rec, &victim);
    let t0 = Instant::now();
    c.pause(&victim);
    let times = takeover(&c, &victim, &topics, t0, secs(10)).await;
    match slowest(&times) {
        Some(t) => eprintln!(
            "kill -STOP of {victim} ({} topics): all taken by others after {} ms",
            topics.len(),
            ms(t)
        ),
        None => fails.push(format!(
            "{victim} paused: not all of its topics taken within 10 s: {:?}",
            times
                .iter()
                .filter(|(_, t)| t.is_none())
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        )),
    }
    tokio::time::sleep(secs(10).saturating_sub(t0.elapsed())).await;
    c.resume(&victim);
    // It wakes up past its deadline: whatever it still had buffered must not be published.
    tokio::time::sleep(secs(5)).await;
    let rejoined = c.wait_upstream(&[A, B, C], &want, secs(60)).await;
    if rejoined.is_none() {
        fails.push(format!(
            "{victim} resumed: no agreed ownership with every topic upstream once within 60 s (it must drop its stale upstream subscriptions): {:?}",
            c.upstream()
                .into_iter()
                .filter(|(_, w)| w.len() != 1)
                .collect::<Vec<_>>()
        ));
    }
    // A normal member again: listed, healthy, given work.
    view_agrees(&c, &want, &mut fails).await;
    let owns = crate::support::wait_until(secs(30), || {
        let c = &c;
        let victim = victim.clone();
        async move {
            let view = c.cluster_view(A).await?;
            owned_counts(&view).get(&victim).copied().filter(|n| *n > 0)
        }
    })
    .await;
    if owns.is_none() {
        fails.push(format!(
            "{victim} owns nothing 30 s after resuming: {:?}",
            c.cluster_view(A).await
        ));
    }
    tokio::time::sleep(secs(2)).await;
    let (execs, orders, trades) =
        after_takeover(&c, &mut traffic, &rec, &victim, &old, &mut fails).await;
    eprintln!(
        "kill -STOP 10 s: repeats executions {} of {}, orders {} of {}, trades {} of {}",
        repeats(&execs),
        execs.len(),
        repeats(&orders),
        orders.len(),
        repeats(&trades),
        trades.len()
    );
    let log = c.get(&victim).log_tail(30);
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n--- {victim}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn postgres_cut_for_one_instance_moves_its_topics() {
    let (c, syms, want, map) = three(30).await;
    let rec = c.record(&["trades", "executions", "orders"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(200), true);
    let mut fails = Vec::new();
    tokio::time::sleep(secs(2)).await;
    let victim = map[&(PRIVATE.to_owned(), "execution".to_owned())].clone();
    let topics = owned_by(&map, &victim);
    let old = old_epochs(&rec, &victim);
    let t0 = Instant::now();
    c.get(&victim).db_proxy.cut();
    // It lets go at its own deadline: none of its connections holds a topic any more.
    let dropped = crate::support::wait_until(secs(20), || {
        let held = c
            .upstream()
            .values()
            .filter(|w| w.iter().any(|x| x == &victim))
            .count();
        async move { (held == 0).then(|| t0.elapsed()) }
    })
    .await;
    let times = takeover(&c, &victim, &topics, t0, secs(20)).await;
    match (dropped, slowest(&times)) {
        (Some(d), Some(t)) => {
            eprintln!(
                "PostgreSQL cut for {victim} ({} topics): it held nothing upstream after {} ms; others held all after {} ms",
                topics.len(),
                ms(d),
                ms(t)
            );
            if t > secs(5) {
                fails.push(format!("takeover after the cut took {} ms (> 5 s)", ms(t)));
            }
        }
        (d, t) => fails.push(format!(
            "PostgreSQL cut for {victim}: it let go after {d:?}, others took over after {t:?}"
        )),
    }
    c.get(&victim).db_proxy.restore();
    if c.wait_upstream(&[A, B, C], &want, secs(60)).await.is_none() {
        fails.push(format!(
            "{victim}: not every topic upstream once 60 s after PostgreSQL returned"
        ));
    }
    view_agrees(&c, &want, &mut fails).await;
    after_takeover(&c, &mut traffic, &rec, &victim, &old, &mut fails).await;
    let log = c.get(&victim).log_tail(30);
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n--- {victim}\n{log}");
}
