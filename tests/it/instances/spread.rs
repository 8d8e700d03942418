//! Three instances started at the same moment on an empty database share 60 public topics and
//! the private stream: each topic subscribed upstream exactly once across the cluster, no
//! instance above 25, the same owners on every instance's `/api/v1/cluster`, every message with
//! the `instance` (its owner) and `epoch` headers.

use std::time::Duration;

use super::{A, B, C, Traffic, expected, symbols, three_started};
use crate::support::{
    instances::{epoch_regressions, instance_ids, owned_counts, owners, path_of, without_headers},
    secs,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn sixty_topics_once_each_across_three_instances() {
    let syms = symbols(60);
    let want = expected(&syms, true);
    let c = three_started(&syms, true).await;
    let mut fails = Vec::new();

    let settled = c.wait_settled(&[A, B, C], &want, secs(60)).await;
    match &settled {
        None => fails.push(format!(
            "no agreed ownership with every topic upstream exactly once within 60 s; views: {:?}; upstream twice or more: {:?}",
            futures::future::join_all([A, B, C].map(|id| c.cluster_view(id))).await,
            c.upstream()
                .into_iter()
                .filter(|(_, v)| v.len() != 1)
                .take(5)
                .collect::<Vec<_>>()
        )),
        Some(map) => {
            for id in [A, B, C] {
                let view = c.cluster_view(id).await.unwrap_or_default();
                let listed = instance_ids(&view);
                if listed.len() != 3 {
                    fails.push(format!("{id} lists {listed:?}"));
                }
                for (inst, n) in owned_counts(&view) {
                    if n > 25 {
                        fails.push(format!("{id}: {inst} owns {n} topics (> 25)"));
                    }
                }
                let by_topic = owners(&view);
                let mut per_owner = std::collections::BTreeMap::<String, usize>::new();
                for k in want.iter().filter(|(p, _)| p != fake_bybit::PRIVATE) {
                    *per_owner.entry(by_topic[k].0.clone()).or_default() += 1;
                }
                if per_owner.values().any(|n| *n > 25) {
                    fails.push(format!("{id}: public topics per owner {per_owner:?}"));
                }
                let health = c.health(id).await.unwrap_or_default();
                if health["status"] != "healthy" {
                    fails.push(format!("{id}: started with the others, not healthy: {health}"));
                }
                if health["components"]["cluster"].is_null() {
                    fails.push(format!("{id}: /health without components.cluster: {health}"));
                }
            }
            let mut count = std::collections::BTreeMap::<&str, usize>::new();
            for (owner, _) in map.values() {
                *count.entry(owner.as_str()).or_default() += 1;
            }
            eprintln!("60 topics + private stream over three instances: {count:?}");
            // Nothing upstream that nobody wants, nothing twice.
            for ((path, topic), who) in c.upstream() {
                if who.len() != 1 || !want.contains(&(path.clone(), topic.clone())) {
                    fails.push(format!("upstream {path} {topic} held by {who:?}"));
                }
            }
        }
    }

    // Messages carry their owner's id and the lease epoch.
    let rec = c.record(&["trades"]).await;
    let mut traffic = Traffic::start(&c.fake, &syms, Duration::from_millis(200), false);
    tokio::time::sleep(secs(3)).await;
    traffic.stop();
    rec["trades"].settle(secs(1), secs(10)).await;
    let msgs = rec["trades"].msgs();
    if msgs.is_empty() {
        fails.push("no trade reached the trades queue".into());
    }
    let missing = without_headers(&msgs);
    if missing > 0 {
        fails.push(format!(
            "{missing} of {} messages without instance/epoch",
            msgs.len()
        ));
    }
    if let Some(map) = &settled {
        let wrong: Vec<_> = msgs
            .iter()
            .filter(|m| {
                let k = (
                    path_of("linear").to_owned(),
                    m.topic.clone().unwrap_or_default(),
                );
                map.get(&k)
                    .is_some_and(|(o, e)| m.instance.as_ref() != Some(o) || m.epoch != Some(*e))
            })
            .map(|m| (m.topic.clone(), m.instance.clone(), m.epoch))
            .take(5)
            .collect();
        if !wrong.is_empty() {
            fails.push(format!(
                "messages not under their owner's id and epoch: {wrong:?}"
            ));
        }
    }
    let regress = epoch_regressions(&msgs);
    if !regress.is_empty() {
        fails.push(format!("epoch went back: {regress:?}"));
    }
    let logs: Vec<String> = [A, B, C]
        .iter()
        .map(|id| format!("--- {id}\n{}", c.get(id).log_tail(15)))
        .collect();
    drop(rec);
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}\n{}", logs.join("\n"));
}
