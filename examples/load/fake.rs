//! The exchange side: the dev-only `fake-bybit` server on a thread of its own, and the
//! driver that sends trade frames to the gateway's linear connection at the target rate.

use std::time::{Duration, Instant};

use fake_bybit::{FakeBybit, Feed, LINEAR};

/// Sends frames for `seconds`: `rate` per second (paced per millisecond), or with `rate` 0 as
/// fast as the gateway reads them (the fake's queue and the socket fill, then it waits).
/// Returns frames sent and seconds taken.
async fn drive(feed: &Feed, frames: &[String], rate: u64, seconds: u64) -> (u64, f64) {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent = 0u64;
    if rate == 0 {
        while Instant::now() < end {
            for _ in 0..64 {
                feed.send(&frames[sent as usize % frames.len()]).await;
                sent += 1;
            }
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while Instant::now() < end {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                feed.send(&frames[sent as usize % frames.len()]).await;
                sent += 1;
            }
        }
    }
    (sent, start.elapsed().as_secs_f64())
}

type DriveJob = (
    Vec<String>,
    u64,
    u64,
    tokio::sync::oneshot::Sender<(u64, f64)>,
);

/// The fake Bybit's server tasks and the frame driver run on a current-thread runtime of
/// their own thread: the consumer's bursts on the main runtime never delay a tick.
pub struct FakeThread {
    jobs: tokio::sync::mpsc::Sender<DriveJob>,
}

impl FakeThread {
    /// Starts the fake Bybit on its thread; returns a handle to it and the frame driver.
    pub async fn start() -> (FakeBybit, Self) {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<DriveJob>(1);
        std::thread::Builder::new()
            .name("fake-bybit".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake runtime");
                rt.block_on(async move {
                    let fake = FakeBybit::start().await;
                    let _ = ready_tx.send(fake.clone());
                    while let Some((frames, rate, seconds, reply)) = rx.recv().await {
                        let feed = fake.feed(LINEAR);
                        let _ = reply.send(drive(&feed, &frames, rate, seconds).await);
                    }
                });
            })
            .expect("fake thread");
        (ready_rx.await.expect("fake started"), Self { jobs })
    }

    /// Runs [`drive`] on the fake's thread.
    pub async fn drive(&self, frames: Vec<String>, rate: u64, seconds: u64) -> (u64, f64) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((frames, rate, seconds, tx))
            .await
            .expect("fake thread runs");
        rx.await.expect("drive finishes")
    }
}
