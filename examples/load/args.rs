//! The command line: `--name value` pairs (see the crate doc for the list), read once.

use std::path::{Path, PathBuf};

/// The broker both publishers and the consumer use unless `--url` says otherwise.
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// A numeric option; panics naming it when it is not a number.
pub fn num<T: std::str::FromStr>(name: &str, default: &str) -> T {
    arg(name, default)
        .parse()
        .unwrap_or_else(|_| panic!("{name} takes a number"))
}

/// `--queue-type classic|quorum`: the type of the `trades` queues (both publishers, the
/// consumer's declare, and the gateway's `[classes.trades]`).
pub fn queue_type() -> ws_gateway::pipeline_file::QueueType {
    match arg("--queue-type", "classic").as_str() {
        "quorum" => ws_gateway::pipeline_file::QueueType::Quorum,
        "classic" => ws_gateway::pipeline_file::QueueType::Classic,
        other => panic!("--queue-type takes classic or quorum, not {other:?}"),
    }
}

/// `--persistent`: messages with `delivery_mode=2` (as private events are) in both publishers.
pub fn persistent() -> bool {
    std::env::args().any(|a| a == "--persistent")
}

/// The queue options as passed on to the raw publisher.
pub fn queue_flags() -> Vec<String> {
    let mut out = vec!["--queue-type".to_owned(), queue_type().as_str().to_owned()];
    if persistent() {
        out.push("--persistent".to_owned());
    }
    out
}

/// Whether this process is the raw publisher (`--role raw`).
pub fn is_raw_role() -> bool {
    arg("--role", "run") == "raw"
}

/// The options of a load run (the driving process).
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub url: String,
    /// Frames per second; 0 = as fast as the gateway takes them.
    pub rate: u64,
    pub seconds: u64,
    pub topics: usize,
    pub window: usize,
    pub rounds: usize,
    pub capacity: usize,
    pub per_service: bool,
    /// This program (started again as the raw publisher).
    pub me: PathBuf,
    /// The gateway binary.
    pub binary: PathBuf,
}

impl RunArgs {
    /// Reads the command line; panics when the gateway binary is missing.
    pub fn parse() -> Self {
        let me = std::env::current_exe().expect("own path");
        let binary = match arg("--gateway", "") {
            p if !p.is_empty() => PathBuf::from(p),
            _ => me
                .parent()
                .and_then(Path::parent)
                .map(|d| d.join("ws-gateway"))
                .expect("target dir"),
        };
        assert!(
            binary.exists(),
            "{} not found: cargo build --release --bin ws-gateway --example load",
            binary.display()
        );
        Self {
            url: arg("--url", DEFAULT_URL),
            rate: num("--rate", "10000"),
            seconds: num("--seconds", "10"),
            topics: num("--topics", "10"),
            window: num("--window", "256"),
            rounds: num("--rounds", "1"),
            capacity: num("--publish-capacity", "10000"),
            per_service: std::env::args().any(|a| a == "--per-service"),
            me,
            binary,
        }
    }

    /// `max` for rate 0, else the rate.
    pub fn rate_label(&self) -> String {
        if self.rate == 0 {
            "max".to_owned()
        } else {
            self.rate.to_string()
        }
    }
}

/// The options of the raw publisher (`--role raw`), as [`crate::raw::run`] passes them.
#[derive(Debug, Clone)]
pub struct RawArgs {
    pub url: String,
    pub prefix: String,
    pub seconds: u64,
    pub window: usize,
    pub topics: usize,
    pub rate: u64,
}

impl RawArgs {
    pub fn parse() -> Self {
        Self {
            url: arg("--url", DEFAULT_URL),
            prefix: arg("--prefix", "ws-gateway"),
            seconds: num("--seconds", "10"),
            window: num("--window", "256"),
            topics: num("--topics", "10"),
            rate: num("--rate", "0"),
        }
    }
}
