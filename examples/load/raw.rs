//! The raw ceiling: a bare amqprs publisher with confirms, in its own process (this program
//! again, `--role raw`), sending the gateway's own messages through the same exchange into the
//! same queues.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return,
    callbacks::ChannelCallback,
    channel::{BasicPublishArguments, Channel, ConfirmSelectArguments},
};
use tokio::sync::Notify;
use ws_gateway::{
    event::{Category, Endpoint, Event, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
    sink::rabbitmq::{properties, topology},
};

use crate::{args::RawArgs, open, report::pct, symbol, trade_frame, usage::proc_usage};

/// What the raw publisher process reports.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct RawReport {
    pub confirmed: u64,
    pub seconds: f64,
    pub cpu: f64,
    pub hwm_kib: u64,
    /// publish → confirm, p50 and p99 (ms).
    pub confirm_ms: [f64; 2],
}

/// Runs this program again as the raw publisher (`--role raw`) and reads its report.
pub async fn run(
    me: &Path,
    url: &str,
    prefix: &str,
    (seconds, rate): (u64, u64),
    window: usize,
    topics: usize,
) -> RawReport {
    let out = tokio::process::Command::new(me)
        .args(["--role", "raw", "--url", url, "--prefix", prefix])
        .args(["--seconds", &seconds.to_string()])
        .args(["--window", &window.to_string()])
        .args(["--topics", &topics.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(crate::args::queue_flags())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the raw publisher");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("raw publisher said {text:?}: {e}"))
}

/// Unconfirmed delivery tags with their send time; confirm latencies (µs) so far.
#[derive(Debug, Default)]
struct Outstanding {
    sent: BTreeMap<u64, Instant>,
    lat_us: Vec<u64>,
}

impl Outstanding {
    fn confirm(&mut self, tag: u64, multiple: bool) {
        let done = if multiple {
            let rest = self.sent.split_off(&(tag + 1));
            std::mem::replace(&mut self.sent, rest)
        } else {
            self.sent.remove_entry(&tag).into_iter().collect()
        };
        let now = Instant::now();
        self.lat_us.extend(
            done.values()
                .map(|t| u64::try_from(now.duration_since(*t).as_micros()).unwrap_or(0)),
        );
    }
}

struct RawConfirms {
    outstanding: Arc<Mutex<Outstanding>>,
    freed: Arc<Notify>,
}

#[async_trait::async_trait]
impl ChannelCallback for RawConfirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, a: bool) -> Result<bool, amqprs::error::Error> {
        Ok(a)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.outstanding
            .lock()
            .expect("outstanding")
            .confirm(ack.delivery_tag(), ack.mutiple());
        self.freed.notify_one();
    }
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// One event per load topic, as the gateway builds it from the fixture.
fn sample_events(topics: usize) -> Vec<Event> {
    let mut enricher = Enricher::default();
    (0..topics)
        .map(|i| {
            let frame = RawFrame::parse(
                Endpoint::Public(Category::Linear),
                1,
                trade_frame(&symbol(i)),
            )
            .expect("fixture decodes");
            enricher.enrich(classify(decode(frame)))
        })
        .collect()
}

/// `--role raw`: a bare amqprs publisher with confirms (one channel, `--window` in flight)
/// sending the gateway's messages (body, properties with a fresh message id, routing keys,
/// `mandatory`) to the gateway's exchange for `--seconds`. Prints a [`RawReport`] as JSON.
pub async fn publisher() {
    let RawArgs {
        url,
        prefix,
        seconds,
        window,
        topics,
        rate,
    } = RawArgs::parse();
    let exchange = topology::exchange_name(&prefix);
    let events = sample_events(topics);
    let (conn, ch) = open(&url).await;
    let outstanding = Arc::new(Mutex::new(Outstanding::default()));
    let freed = Arc::new(Notify::new());
    ch.register_callback(RawConfirms {
        outstanding: outstanding.clone(),
        freed: freed.clone(),
    })
    .await
    .expect("callback");
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .expect("confirms");
    let cpu0 = proc_usage(std::process::id()).cpu;
    let start = Instant::now();
    let dur = Duration::from_secs(seconds);
    let mut tag = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < dur {
        if rate > 0 && tag >= (start.elapsed().as_secs_f64() * rate as f64) as u64 {
            tick.tick().await;
            continue;
        }
        while outstanding.lock().expect("outstanding").sent.len() >= window {
            freed.notified().await;
        }
        let e = &events[tag as usize % events.len()];
        tag += 1;
        outstanding
            .lock()
            .expect("outstanding")
            .sent
            .insert(tag, Instant::now());
        let mut props = properties(e, crate::args::persistent());
        props.with_message_id(&uuid::Uuid::now_v7().to_string());
        let args = BasicPublishArguments::new(&exchange, &e.routing_key())
            .mandatory(true)
            .finish();
        ch.basic_publish(props, e.json.to_vec(), args)
            .await
            .expect("publish");
    }
    while !outstanding.lock().expect("outstanding").sent.is_empty() {
        freed.notified().await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut outstanding.lock().expect("outstanding").lat_us);
    lat.sort_unstable();
    let usage = proc_usage(std::process::id());
    let _ = ch.close().await;
    let _ = conn.close().await;
    let report = RawReport {
        confirmed: tag,
        seconds,
        cpu: usage.cpu - cpu0,
        hwm_kib: usage.hwm_kib,
        confirm_ms: [pct(&lat, 0.5), pct(&lat, 0.99)],
    };
    println!("{}", serde_json::to_string(&report).expect("report"));
}
