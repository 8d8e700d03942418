//! One round's two measured phases: the gateway (frames from the fake Bybit, confirms counted
//! on its `/metrics`, deliveries verified by the consumer) and the raw publisher through the
//! same exchange into the same queues.

use std::time::{Duration, Instant};

use crate::{
    RECEIVE_TO_CONFIRM,
    args::RunArgs,
    consumer::Consumer,
    fake::FakeThread,
    gateway::Gateway,
    raw,
    report::{Row, bucket_quantile, pct},
    usage::proc_usage,
};

/// What a phase needs: the options, the running pieces, the broker's process if local.
pub struct World<'a> {
    pub args: &'a RunArgs,
    pub prefix: &'a str,
    pub frames: &'a [String],
    pub driver: &'a FakeThread,
    pub consumer: &'a Consumer,
    pub gateway: &'a Gateway,
    pub broker: Option<u32>,
}

impl World<'_> {
    /// The gateway: frames sent for `--seconds`, then confirms awaited (until all are in, or
    /// nothing moved for 10 s), then the consumer's count.
    pub async fn gateway_phase(&self) -> Row {
        let (gateway, broker) = (self.gateway, self.broker);
        self.consumer.new_phase().await;
        let (g0, b0, w0) = (
            proc_usage(gateway.pid()),
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let c0 = gateway.metric("ws_gateway_events_confirmed_total").await;
        let h0 = gateway.buckets(RECEIVE_TO_CONFIRM).await;
        let p0 = gateway.buckets("ws_gateway_publish_confirm_seconds").await;
        let start = Instant::now();
        let (sent, send_secs) = self
            .driver
            .drive(self.frames.to_vec(), self.args.rate, self.args.seconds)
            .await;
        // Confirms: poll until all are in, or nothing moved for 10 s.
        let mut last = (c0, Instant::now());
        let confirm_secs = loop {
            let c = gateway.metric("ws_gateway_events_confirmed_total").await;
            if c - c0 >= sent as f64 {
                last = (c, Instant::now());
                break start.elapsed().as_secs_f64();
            }
            if c != last.0 {
                last = (c, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(10) {
                break start.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (g1, b1, w1) = (
            proc_usage(gateway.pid()),
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let h1 = gateway.buckets(RECEIVE_TO_CONFIRM).await;
        let p1 = gateway.buckets("ws_gateway_publish_confirm_seconds").await;

        self.consumer.settle(sent, Duration::from_secs(5)).await;
        let got = self.consumer.delivered();
        Row {
            who: "gateway",
            frames_in: sent as f64 / send_secs,
            confirmed: (last.0 - c0) / confirm_secs,
            loss: sent as i64 - got.distinct as i64,
            dup: got.total - got.distinct,
            out_of_order: got.out_of_order,
            lat: [0.5, 0.99, 0.999].map(|p| pct(&got.lat_us, p)),
            confirm_lat: [0.5, 0.99].map(|p| bucket_quantile(&h0, &h1, p)),
            publish_confirm: [0.5, 0.99].map(|p| bucket_quantile(&p0, &p1, p)),
            cpu_pct: 100.0 * (g1.cpu - g0.cpu) / confirm_secs,
            rss_mib: g1.hwm_kib as f64 / 1024.0,
            broker_cpu_pct: 100.0 * (b1.cpu - b0.cpu) / confirm_secs,
            world_cpu_pct: 100.0 * (w1.cpu - w0.cpu) / confirm_secs,
        }
    }

    /// The raw publisher, through the same exchange into the same queues.
    pub async fn raw_phase(&self) -> Row {
        let (args, broker) = (self.args, self.broker);
        self.consumer.new_phase().await;
        let (b0, w0) = (
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let raw = raw::run(
            &args.me,
            &args.url,
            self.prefix,
            (args.seconds, args.rate),
            args.window,
            args.topics,
        )
        .await;
        let (b1, w1) = (
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        self.consumer
            .settle(raw.confirmed, Duration::from_secs(5))
            .await;
        Row {
            who: "raw amqprs",
            confirmed: raw.confirmed as f64 / raw.seconds,
            cpu_pct: 100.0 * raw.cpu / raw.seconds,
            publish_confirm: raw.confirm_ms,
            broker_cpu_pct: 100.0 * (b1.cpu - b0.cpu) / raw.seconds,
            world_cpu_pct: 100.0 * (w1.cpu - w0.cpu) / raw.seconds,
            ..Row::default()
        }
    }
}
