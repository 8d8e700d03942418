use super::*;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn ack(req_id: &str, success: bool, ret_msg: &str) -> Ack {
    Ack {
        req_id: Some(req_id.to_owned()),
        success,
        ret_msg: ret_msg.to_owned(),
        success_topics: None,
        fail_topics: None,
    }
}

#[test]
fn twenty_five_spot_topics_become_three_requests_of_at_most_ten() {
    let want: BTreeSet<String> = (0..25)
        .map(|i| format!("publicTrade.S{i:02}USDT"))
        .collect();
    let mut l = Ledger::new("c1-");
    let reqs = l.plan(&want, 10, Instant::now());
    assert_eq!(reqs.len(), 3);
    assert!(
        reqs.iter()
            .all(|r| r.topics.len() <= 10 && r.op == Op::Subscribe)
    );
    let ids: BTreeSet<_> = reqs.iter().map(|r| r.req_id.clone()).collect();
    assert_eq!(ids.len(), 3, "unique req_ids");
    assert!(
        l.plan(&want, 10, Instant::now()).is_empty(),
        "in flight is not resent"
    );
    for r in &reqs {
        l.on_ack(&ack(&r.req_id, true, "subscribe")).unwrap();
    }
    assert_eq!(l.confirmed(), &want);
    assert!(l.plan(&want, 10, Instant::now()).is_empty());
}

#[test]
fn unwanted_topics_are_unsubscribed_and_a_rejected_named_topic_fails_alone() {
    let mut l = Ledger::new("c-");
    let now = Instant::now();
    let r = l.plan(&set(&["a", "b", "bad"]), 10, now);
    let out = l
        .on_ack(&ack(
            &r[0].req_id,
            false,
            "error:handler not found,topic:bad",
        ))
        .unwrap();
    assert_eq!(
        out.failed,
        vec![(
            "bad".to_owned(),
            "error:handler not found,topic:bad".to_owned()
        )]
    );
    assert_eq!(out.retry, vec!["a".to_owned(), "b".to_owned()]);
    // The caller drops failed topics from `want`; the others are sent again.
    let r = l.plan(&set(&["a", "b"]), 10, now);
    assert_eq!(r[0].topics, vec!["a".to_owned(), "b".to_owned()]);
    l.on_ack(&ack(&r[0].req_id, true, "")).unwrap();
    let r = l.plan(&set(&["b"]), 10, now);
    assert_eq!(
        (r[0].op, r[0].topics.clone()),
        (Op::Unsubscribe, vec!["a".to_owned()])
    );
    let out = l.on_ack(&ack(&r[0].req_id, true, "")).unwrap();
    assert_eq!(out.unsubscribed, vec!["a".to_owned()]);
}

#[test]
fn already_subscribed_counts_as_success_and_unnamed_rejections_fail_the_request() {
    let mut l = Ledger::new("c-");
    let now = Instant::now();
    let r = l.plan(&set(&["x"]), 10, now);
    let out = l
        .on_ack(&ack(
            &r[0].req_id,
            false,
            "error:already subscribed,topic:x",
        ))
        .unwrap();
    assert_eq!(out.activated, vec!["x".to_owned()]);
    let r = l.plan(&set(&["x", "y"]), 10, now);
    let out = l.on_ack(&ack(&r[0].req_id, false, "Params Error")).unwrap();
    assert_eq!(out.failed.len(), 1);
    assert!(
        l.on_ack(&ack("c-999", true, "")).is_none(),
        "unknown req_id is ignored"
    );
}

#[test]
fn option_acks_are_matched_by_topics_and_split_success_from_failure() {
    let mut l = Ledger::new("c-");
    let r = l.plan(&set(&["t1", "t2"]), 10, Instant::now());
    assert_eq!(r.len(), 1);
    let out = l
        .on_ack(&Ack {
            req_id: None,
            success: false,
            ret_msg: String::new(),
            success_topics: Some(vec!["t1".into()]),
            fail_topics: Some(vec!["t2".into()]),
        })
        .unwrap();
    assert_eq!(out.activated, vec!["t1".to_owned()]);
    assert_eq!(out.failed[0].0, "t2");
}

#[test]
fn unanswered_requests_expire_after_the_ack_timeout_and_are_planned_again() {
    let mut l = Ledger::new("c-");
    let t0 = Instant::now();
    let want = set(&["a"]);
    l.plan(&want, 10, t0);
    assert!(
        l.expire(t0 + Duration::from_secs(1), Duration::from_secs(5))
            .is_empty()
    );
    assert_eq!(
        l.expire(t0 + Duration::from_secs(5), Duration::from_secs(5))
            .len(),
        1
    );
    assert_eq!(l.plan(&want, 10, t0).len(), 1);
}

#[test]
fn resync_unsubscribes_and_resubscribes_one_topic() {
    let mut l = Ledger::new("c-");
    let now = Instant::now();
    let r = l.plan(&set(&["orderbook.1.A", "orderbook.1.B"]), 10, now);
    l.on_ack(&ack(&r[0].req_id, true, "")).unwrap();
    let r = l.resync("orderbook.1.A", now);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].op, r[1].op), (Op::Unsubscribe, Op::Subscribe));
    assert!(
        r.iter()
            .all(|r| r.topics == vec!["orderbook.1.A".to_owned()])
    );
    assert!(
        l.plan(&set(&["orderbook.1.A", "orderbook.1.B"]), 10, now)
            .is_empty()
    );
}

#[test]
fn shards_fill_to_the_character_limit_and_topics_keep_their_shard() {
    let desired: BTreeSet<String> = (0..10).map(|i| format!("tickers.SYM{i}")).collect();
    // Each topic is 12 chars + 3 = 15; 40 fits two per shard.
    let shards = assign_shards(&desired, &HashMap::new(), 40, usize::MAX);
    assert_eq!(shards.len(), 5);
    assert!(shards.iter().all(|s| s.len() == 2));
    let mut current = HashMap::new();
    current.insert("tickers.SYM9".to_owned(), 0usize);
    let shards = assign_shards(&set(&["tickers.SYM9"]), &current, 40, usize::MAX);
    assert!(shards[0].contains("tickers.SYM9"));
    let big = assign_shards(&desired, &HashMap::new(), 21_000, usize::MAX);
    assert_eq!(big.len(), 1);
}

#[test]
fn options_shards_hold_at_most_their_args_limit() {
    // Bybit: 2,000 args per options connection, whatever their length.
    let desired: BTreeSet<String> = (0..4_500).map(|i| format!("tickers.O{i}")).collect();
    let shards = assign_shards(&desired, &HashMap::new(), usize::MAX, 2_000);
    let sizes: Vec<usize> = shards.iter().map(BTreeSet::len).collect();
    assert_eq!(sizes, [2_000, 2_000, 500]);
}

#[test]
fn topic_names_are_parsed_from_ret_msg() {
    assert_eq!(
        named_topics("error:handler not found,topic:orderbook.1.X"),
        vec!["orderbook.1.X"]
    );
    assert!(named_topics("args size >10").is_empty());
}
