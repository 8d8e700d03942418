//! Logging and metrics set-up, the metric table ([`METRICS`]: every metric the gateway exports)
//! and the in-process counters ([`PipelineStats`]) that stages and sinks share.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod logging;
mod stats;
mod table;

pub use logging::init_tracing;
pub use stats::PipelineStats;
pub use table::*;

/// Installs the Prometheus recorder once per process and returns its handle (for `/metrics`).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .expect("static, non-empty bucket list");
            let handle = builder
                .install_recorder()
                .expect("the recorder is installed once");
            describe();
            register_at_zero();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets without a scrape.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// `install_recorder` runs no upkeep: histogram samples pile up until a scrape renders them,
/// so with nobody scraping `/metrics` memory grows with every event (two samples per
/// published event). A small thread of its own folds them in every [`UPKEEP_INTERVAL`],
/// whatever runtime is (or is not) running.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "Cannot start the metrics upkeep thread; histograms are folded only on scrapes.");
    }
}

/// Latency buckets from 100 µs to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Describes every metric of the table (`# HELP`, unit).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for m in METRICS {
        let unit = if m.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if m.kind == Kind::Counter {
            Some(Unit::Count)
        } else {
            None
        };
        match (m.kind, unit) {
            (Kind::Counter, Some(u)) => describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => describe_counter!(m.name, m.help),
            (Kind::Gauge, Some(u)) => describe_gauge!(m.name, u, m.help),
            (Kind::Gauge, None) => describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => describe_histogram!(m.name, m.help),
        }
    }
}

/// Registers every metric at zero so `/metrics` lists it before its first event (dashboards and
/// alerts see 0, not "no data"), as its [`Zero`] says. Gauges use `increment(0.0)`, which never
/// overwrites a value already set; a histogram handle with no sample renders as an empty
/// histogram (count 0).
fn register_at_zero() {
    const ENDPOINTS: [&str; 5] = ["spot", "linear", "inverse", "option", "private"];
    const CATEGORIES: [&str; 4] = ["spot", "linear", "inverse", "option"];
    for m in METRICS {
        let (label, values): (&'static str, Vec<&'static str>) = match m.zero {
            Zero::Endpoint => ("endpoint", ENDPOINTS.to_vec()),
            Zero::Category => ("category", CATEGORIES.to_vec()),
            Zero::Class => (
                "class",
                crate::event::EventClass::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .collect(),
            ),
            Zero::Unlabelled => {
                zero(m, &[]);
                continue;
            }
        };
        for value in values {
            zero(m, &[metrics::Label::new(label, value)]);
        }
    }
}

fn zero(m: &MetricDef, labels: &[metrics::Label]) {
    let labels = labels.to_vec();
    match m.kind {
        Kind::Counter => metrics::counter!(m.name, labels).increment(0),
        Kind::Gauge => metrics::gauge!(m.name, labels).increment(0.0),
        Kind::Histogram => drop(metrics::histogram!(m.name, labels)),
    }
}

/// The README's metric table (`## Metrics`), rendered from [`METRICS`].
pub fn readme_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in METRICS {
        let labels = if m.labels.is_empty() {
            "–".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn installing_the_recorder_starts_the_upkeep_thread_so_unscraped_histograms_stay_bounded() {
        let _handle = super::metrics_handle();
        let names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("procfs")
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        };
        // A new thread carries its parent's name until it has started and renamed itself.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !names().iter().any(|n| n == "metrics-upkeep") {
            assert!(
                std::time::Instant::now() < deadline,
                "threads: {:?}",
                names()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn the_readme_metric_table_is_the_metric_table() {
        let readme = include_str!("../../README.md");
        let table = super::readme_table();
        assert!(
            readme.contains(&table),
            "README.md's `## Metrics` table differs from telemetry::METRICS; it should read:\n{table}"
        );
    }
}
