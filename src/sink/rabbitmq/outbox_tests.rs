use super::*;
use crate::{
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
};

fn trade() -> Arc<Event> {
    let text = include_str!("../../../tests/fixtures/bybit/linear_publicTrade.json");
    let frame = RawFrame::parse(
        Endpoint::Public(Category::Linear),
        1,
        text.trim_end().to_owned(),
    )
    .expect("fixture decodes");
    let decoded = decode(frame);
    Arc::new(Enricher::default().enrich(classify(decoded)))
}

#[tokio::test]
async fn a_pump_blocked_on_a_full_buffer_wakes_once_it_drained_a_stretch_and_nothing_is_lost() {
    let config = BufferConfig {
        capacity: 16,
        when_full: crate::pipeline_file::WhenFull::Block,
    };
    let outbox = Arc::new(Outbox::new(config, 4, None, PipelineStats::default()));
    for _ in 0..16 {
        outbox.push(trade()).await;
    }
    let pump = outbox.clone();
    let waiter = tokio::spawn(async move { pump.push(trade()).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    assert!(outbox.pop().is_some());
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "woken before the resume mark");
    assert!(outbox.pop().is_some());
    waiter.await.expect("pump ends");
    assert_eq!(outbox.market_len(), 15);
    outbox.close();
    let mut left = 0;
    while outbox.pop().is_some() {
        left += 1;
    }
    assert_eq!(left, 15);
    assert!(outbox.is_finished());
}

fn order(e: &mut Enricher) -> Arc<Event> {
    let text = include_str!("../../../tests/fixtures/bybit/order.json");
    let frame =
        RawFrame::parse(Endpoint::Private, 1, text.trim_end().to_owned()).expect("fixture parses");
    Arc::new(e.enrich(classify(decode(frame))))
}

#[tokio::test]
async fn with_the_broker_away_private_events_are_written_ahead_and_a_full_spool_blocks_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Enricher::default();
    let one = order(&mut e);
    let rec = one.json.len() as u64 + 13;
    let spool = Spool::open_bounded(dir.path(), "t", 64 + 3 * rec).unwrap();
    let config = BufferConfig {
        capacity: 16,
        when_full: crate::pipeline_file::WhenFull::DropOldest,
    };
    let outbox = Arc::new(Outbox::new(
        config,
        100,
        Some(spool),
        PipelineStats::default(),
    ));
    outbox.push(one).await;
    outbox.set_write_ahead(true);
    // Memory moves to the spool ahead of newer events; newer ones go straight there.
    assert_eq!(outbox.spill_private(vec![], true).unwrap(), 1);
    outbox.push(order(&mut e)).await;
    outbox.push(order(&mut e)).await;
    assert_eq!(
        Spool::open(dir.path(), "t").unwrap().pending(),
        3,
        "on disk"
    );
    // Full: the fourth waits instead of being dropped.
    let pump = outbox.clone();
    let fourth = order(&mut e);
    let waiter = tokio::spawn(async move { pump.push(fourth).await });
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(!waiter.is_finished(), "the input waits on a full spool");
    let first = outbox.pop().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(!waiter.is_finished(), "read is not confirmed: still full");
    outbox.confirmed(&[first.id]);
    tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
        .await
        .expect("woken once a confirm freed space")
        .unwrap();
    let rest: Vec<u64> = std::iter::from_fn(|| outbox.pop()).map(|e| e.seq).collect();
    assert_eq!(rest, [2, 3, 4]);
}

#[tokio::test]
async fn a_stop_lets_a_private_event_waiting_on_a_full_spool_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = Enricher::default();
    let one = order(&mut e);
    let rec = one.json.len() as u64 + 13;
    let spool = Spool::open_bounded(dir.path(), "t", 64 + rec).unwrap();
    let config = BufferConfig {
        capacity: 16,
        when_full: crate::pipeline_file::WhenFull::DropOldest,
    };
    let stop = CancellationToken::new();
    let outbox = Arc::new(
        Outbox::new(config, 100, Some(spool), PipelineStats::default()).stop_on(stop.clone()),
    );
    outbox.set_write_ahead(true);
    outbox.push(one).await;
    let pump = outbox.clone();
    let second = order(&mut e);
    let waiter = tokio::spawn(async move { pump.push(second).await });
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(!waiter.is_finished(), "full: the input waits");
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(2), waiter)
        .await
        .expect("the stop lets it through")
        .unwrap();
    assert_eq!(outbox.sync_spool(), 2, "both on disk");
}
