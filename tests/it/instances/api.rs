//! Any instance serves the API: a subscription created through A is subscribed upstream by its
//! owner within 1 s, and B and C list it, with the status its owner writes.

use std::time::{Duration, Instant};

use fake_bybit::LINEAR;
use serde_json::{Value, json};

use super::{A, B, C, expected, ms, symbols, three_started};
use crate::support::{
    http,
    instances::{owners, p50_max},
    secs,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "several gateway processes: .ci/run's instances step"]
async fn a_subscription_made_through_a_is_upstream_on_its_owner_within_1_s() {
    let syms = symbols(6);
    let want = expected(&syms, false);
    let c = three_started(&syms, false).await;
    assert!(
        c.wait_upstream(&[A, B, C], &want, secs(60)).await.is_some(),
        "every topic upstream once: {:?}",
        c.upstream()
    );
    let mut fails = Vec::new();
    let mut figures = Vec::new();
    let client = http::client();
    for n in 0..5 {
        let symbol = format!("API{n}USDT");
        let topic = format!("publicTrade.{symbol}");
        let t0 = Instant::now();
        let resp = client
            .post(format!("{}/api/v1/subscriptions", c.get(A).base()))
            .json(&json!({"channel_type": "trades", "symbol": symbol, "requesting_service": "inst-api"}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            fails.push(format!("POST through {A}: {status} {body}"));
            continue;
        }
        let t_post = t0.elapsed();
        let held = crate::support::wait_until(secs(10), || {
            let who = c
                .upstream()
                .get(&(LINEAR.to_owned(), topic.clone()))
                .cloned();
            async move { who.map(|w| (w, t0.elapsed())) }
        })
        .await;
        let Some((who, t)) = held else {
            fails.push(format!("{topic} never subscribed upstream (10 s)"));
            continue;
        };
        let after_post = t.saturating_sub(t_post);
        figures.push(after_post);
        if after_post > secs(1) {
            fails.push(format!(
                "{topic}: upstream {} ms after the POST answered (> 1 s)",
                ms(after_post)
            ));
        }
        // Held once, by the owner every instance names.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut named = Vec::new();
        for id in [A, B, C] {
            let view = c.cluster_view(id).await.unwrap_or_default();
            named.push(
                owners(&view)
                    .get(&(LINEAR.to_owned(), topic.clone()))
                    .map(|(o, _)| o.clone()),
            );
        }
        let now = c
            .upstream()
            .get(&(LINEAR.to_owned(), topic.clone()))
            .cloned()
            .unwrap_or_default();
        if named.iter().any(|o| o.as_ref() != now.first()) || now.len() != 1 {
            fails.push(format!(
                "{topic}: first held by {who:?}, now by {now:?}; owners named by A, B, C: {named:?}"
            ));
        }
    }
    // A topic already live upstream (a pipeline-file topic, owned by whoever holds it) gets a
    // row through A: its owner writes the row's status, which no instance's own registry has.
    let resp = client
        .post(format!("{}/api/v1/subscriptions", c.get(A).base()))
        .json(&json!({"channel_type": "trades", "symbol": syms[0], "requesting_service": "inst-api-live"}))
        .send()
        .await
        .unwrap();
    if !resp.status().is_success() {
        fails.push(format!(
            "POST of a live topic through {A}: {}",
            resp.status()
        ));
    }
    // Lists are the same on every instance, statuses included: each topic's owner writes them.
    let lists = crate::support::wait_until(secs(5), || {
        let client = client.clone();
        let bases: Vec<String> = [A, B, C].iter().map(|id| c.get(id).base()).collect();
        async move {
            let mut lists = Vec::new();
            for base in bases {
                lists.push(api_subscriptions(&client, &base).await);
            }
            let settled = lists[0].len() == 6
                && lists.iter().all(|l| l == &lists[0])
                && lists[0].iter().all(|(_, status)| status == "active");
            settled.then_some(lists)
        }
    })
    .await;
    if lists.is_none() {
        let mut seen = Vec::new();
        for id in [A, B, C] {
            seen.push(api_subscriptions(&client, &c.get(id).base()).await);
        }
        fails.push(format!(
            "after 5 s, A, B and C do not all list the 6 subscriptions as active: {seen:?}"
        ));
    }
    let (p50, max) = p50_max(&figures);
    eprintln!(
        "subscription through {A} → upstream on its owner: p50 {} ms, max {} ms over {} subscriptions",
        ms(p50),
        ms(max),
        figures.len()
    );
    c.finish().await;
    assert!(fails.is_empty(), "{fails:#?}");
}

/// `(id, status)` of the test's subscriptions as one instance lists them, sorted by id.
async fn api_subscriptions(client: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let body: Value = match client
        .get(format!("{base}/api/v1/subscriptions"))
        .send()
        .await
    {
        Ok(resp) => resp.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    };
    let mut out: Vec<(String, String)> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            s["requesting_service"]
                .as_str()
                .is_some_and(|r| r.starts_with("inst-api"))
        })
        .filter_map(|s| {
            Some((
                s["id"].as_str()?.to_owned(),
                s["status"].as_str()?.to_owned(),
            ))
        })
        .collect();
    out.sort();
    out
}
