//! The one buffer's policies, and a hand-run throughput measurement of a stage hop.

use super::*;

#[derive(Debug, PartialEq)]
struct Item(u32, bool);
impl Droppable for Item {
    fn must_keep(&self) -> bool {
        self.1
    }
}

fn config(capacity: usize, when_full: WhenFull) -> BufferConfig {
    BufferConfig {
        capacity,
        when_full,
    }
}

#[tokio::test]
async fn a_full_buffer_drops_its_oldest_market_item_and_keeps_private_ones() {
    let buf = Bounded::new(config(3, WhenFull::DropOldest), "test");
    assert!(buf.push(Item(1, true)).await.is_none());
    assert!(buf.push(Item(2, false)).await.is_none());
    assert!(buf.push(Item(3, false)).await.is_none());
    assert_eq!(buf.push(Item(4, false)).await, Some(Item(2, false)));
    buf.close();
    let mut got = vec![];
    while let Some(Item(n, _)) = buf.pop().await {
        got.push(n);
    }
    assert_eq!(got, [1, 3, 4]);
}

#[tokio::test]
async fn a_private_item_waits_for_room_in_a_buffer_full_of_private_items() {
    let buf = Arc::new(Bounded::new(config(1, WhenFull::DropOldest), "test"));
    buf.push(Item(1, true)).await;
    let b2 = buf.clone();
    let waiter = tokio::spawn(async move { b2.push(Item(2, true)).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    assert_eq!(buf.pop().await, Some(Item(1, true)));
    assert!(waiter.await.unwrap().is_none());
    assert_eq!(buf.pop().await, Some(Item(2, true)));
}

#[tokio::test]
async fn a_blocked_producer_wakes_once_a_stretch_drained_and_nothing_is_lost() {
    let buf = Arc::new(Bounded::new(config(16, WhenFull::Block), "test"));
    buf.push_batch((0..16).map(|n| Item(n, false)).collect())
        .await;
    let b2 = buf.clone();
    let waiter = tokio::spawn(async move { b2.push(Item(16, false)).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    assert!(buf.try_pop().is_some());
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "woken before the resume mark");
    assert!(buf.try_pop().is_some());
    assert!(waiter.await.unwrap().is_none());
    buf.close();
    let mut got = vec![];
    loop {
        let batch = buf.pop_batch(4).await;
        if batch.is_empty() {
            break;
        }
        got.extend(batch.into_iter().map(|Item(n, _)| n));
    }
    assert_eq!(got, (2..=16).collect::<Vec<_>>());
}

#[test]
fn force_push_never_waits_and_evicts_the_oldest_droppable_item_first() {
    let buf = Bounded::new(config(2, WhenFull::Block), "test");
    assert!(buf.force_push(Item(1, true)).is_none());
    assert!(buf.force_push(Item(2, false)).is_none());
    assert_eq!(buf.force_push(Item(3, true)), Some(Item(2, false)));
    assert_eq!(buf.force_push(Item(4, true)), Some(Item(1, true)));
    assert_eq!(buf.len(), 2);
}

/// Throughput of a stage hop (`cargo test --release --lib buffer::tests::stage_hop -- --ignored
/// --nocapture`): the one buffer against a bounded `mpsc` of batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand in release"]
async fn stage_hop_throughput() {
    use tokio_stream::wrappers::ReceiverStream;
    const N: u32 = 5_000_000;
    let supervisor = Supervisor::new(tokio_util::sync::CancellationToken::new());
    let cfg = config(1024, WhenFull::Block);
    let t = std::time::Instant::now();
    let input = futures::stream::iter((0..N).map(|n| Item(n, false)));
    let out = buffer(input, cfg, "bench", &supervisor);
    let n = out.fold(0u32, |n, _| async move { n + 1 }).await;
    assert_eq!(n, N);
    let bounded = t.elapsed();
    let t = std::time::Instant::now();
    let input = futures::stream::iter((0..N).map(|n| Item(n, false)));
    let (tx, rx) = tokio::sync::mpsc::channel(1024 / CHUNK);
    tokio::spawn(async move {
        let mut input = std::pin::pin!(input.ready_chunks(CHUNK));
        while let Some(batch) = input.next().await {
            if tx.send(batch).await.is_err() {
                break;
            }
        }
    });
    let out = ReceiverStream::new(rx).flat_map(futures::stream::iter);
    let n = out.fold(0u32, |n, _| async move { n + 1 }).await;
    assert_eq!(n, N);
    let mpsc = t.elapsed();
    println!("{N} items: Bounded {bounded:?}, mpsc of batches {mpsc:?}");
}
