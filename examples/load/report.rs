//! The results: one table row per measured phase, the table, the gateway ÷ raw ratio, and
//! the quantile helpers they use.

/// One measured phase, a table row.
#[derive(Debug, Default)]
pub struct Row {
    pub who: &'static str,
    pub frames_in: f64,
    pub confirmed: f64,
    pub loss: i64,
    pub dup: u64,
    pub out_of_order: u64,
    pub lat: [f64; 3],
    /// receive → confirm inside the gateway, p50 and p99 (bucket bounds of its histogram).
    pub confirm_lat: [f64; 2],
    /// publish → confirm, p50 and p99 (gateway: bucket bounds of its histogram; raw: exact).
    pub publish_confirm: [f64; 2],
    pub cpu_pct: f64,
    pub rss_mib: f64,
    pub broker_cpu_pct: f64,
    /// This process (fake Bybit and consumer).
    pub world_cpu_pct: f64,
}

impl Row {
    /// One markdown table line.
    fn print(&self, rate: &str) {
        let dash = |show: bool, v: String| if show { v } else { "–".into() };
        let g = self.who == "gateway";
        println!(
            "| {} | {rate} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {:.0} |",
            self.who,
            dash(g, format!("{:.0}", self.frames_in)),
            self.confirmed,
            dash(g, self.loss.to_string()),
            dash(g, self.dup.to_string()),
            dash(g, self.out_of_order.to_string()),
            dash(g, format!("{:.2}", self.lat[0])),
            dash(g, format!("{:.2}", self.lat[1])),
            dash(g, format!("{:.2}", self.lat[2])),
            dash(
                g,
                format!("≤ {} / ≤ {}", self.confirm_lat[0], self.confirm_lat[1])
            ),
            if g {
                format!(
                    "≤ {} / ≤ {}",
                    self.publish_confirm[0], self.publish_confirm[1]
                )
            } else {
                format!(
                    "{:.2} / {:.2}",
                    self.publish_confirm[0], self.publish_confirm[1]
                )
            },
            self.cpu_pct,
            dash(g, format!("{:.1}", self.rss_mib)),
            self.broker_cpu_pct,
            self.world_cpu_pct,
        );
    }
}

/// The upper bound (ms) of the bucket holding quantile `p` of the samples added between two
/// reads of a cumulative histogram.
pub fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    delta
        .iter()
        .find(|(_, n)| *n >= p * total)
        .map_or(f64::NAN, |(le, _)| le * 1000.0)
}

/// The median (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `p` quantile of sorted samples in µs, in ms (NaN when empty).
pub fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The table of every phase's row.
pub fn print_table(rows: &[Row], rate_label: &str) {
    println!();
    println!(
        "| publisher | rate target | frames in/s | confirmed/s | loss | dup | out of order | p50 ms | p99 ms | p99.9 ms | receive→confirm p50 / p99 ms | publish→confirm p50 / p99 ms | CPU % | peak RSS MiB | broker CPU % | fake + consumer CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        r.print(rate_label);
    }
}

/// At max rate: the gateway's confirmed rate as a share of the raw publisher's, per round
/// (rows come in gateway, raw pairs) and of the medians.
pub fn print_ratio(rows: &[Row], window: usize) {
    let each: Vec<String> = rows
        .chunks(2)
        .map(|p| format!("{:.1} %", 100.0 * p[0].confirmed / p[1].confirmed))
        .collect();
    let median_of = |who: &str| {
        median(
            rows.iter()
                .filter(|r| r.who == who)
                .map(|r| r.confirmed)
                .collect(),
        )
    };
    let (g, r) = (median_of("gateway"), median_of("raw amqprs"));
    println!();
    println!(
        "gateway ÷ raw ceiling (same messages, exchange, queues, window {window}): per round {}; median gateway {g:.0}/s ÷ median raw {r:.0}/s = {:.1} %",
        each.join(", "),
        100.0 * g / r
    );
}
