//! The harness itself, on one instance: upstream connections attributed to it through its proxy,
//! `kill -STOP`/`-CONT`, SIGTERM and a restart in its own directory, `kill -9`, recorders.

use std::time::Duration;

use fake_bybit::LINEAR;

use super::{A, HOSTS, Traffic, pipeline, symbols};
use crate::support::{instances::Cluster, secs, wait_until};

/// Waits until `topic` is held upstream by exactly `who`.
async fn held_by(c: &Cluster, topic: &str, who: &[&str]) -> bool {
    wait_until(secs(20), || {
        let now = c
            .upstream()
            .get(&(LINEAR.to_owned(), topic.to_owned()))
            .cloned()
            .unwrap_or_default();
        let ok = now == who;
        async move { ok.then_some(()) }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn the_instances_harness_drives_one_process() {
    let syms = symbols(2);
    let topic = format!("publicTrade.{}", syms[0]);
    let mut c = Cluster::new(&pipeline(&syms, false)).await;
    let (id, host) = HOSTS[0];
    c.add(id, host).await;
    c.start(A).await;
    assert!(held_by(&c, &topic, &[A]).await, "{}", c.get(A).log_tail(20));
    let rec = c.record(&["trades"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(100), false);
    c.pause(A);
    tokio::time::sleep(secs(1)).await;
    assert!(
        held_by(&c, &topic, &[A]).await,
        "a paused process keeps its sockets"
    );
    c.resume(A);
    let status = c.sigterm(A, secs(30)).await.expect("exits on SIGTERM");
    assert!(status.success(), "{}", c.get(A).log_tail(20));
    assert!(
        held_by(&c, &topic, &[]).await,
        "nothing held once it stopped"
    );
    c.start(A).await;
    assert!(
        held_by(&c, &topic, &[A]).await,
        "held again after the restart"
    );
    tokio::time::sleep(secs(2)).await;
    c.kill9(A);
    assert!(held_by(&c, &topic, &[]).await, "nothing held after kill -9");
    traffic.stop();
    rec["trades"].settle(secs(1), secs(10)).await;
    assert!(!rec["trades"].is_empty(), "the recorder saw the trades");
    assert_eq!(c.get(A).starts, 2);
    drop(rec);
    c.finish().await;
}
