//! The gateway under test: the real binary in its own process, its pipeline file, its REST
//! API and its `/metrics`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use crate::{API_KEY, SERVICE, WARM_SYMBOL, field};

/// Writes the gateway's pipeline file into `dir`. The load topics (and the warm-up topic,
/// last) are held from startup by the pipeline file, so events go to the class queue only;
/// `--per-service` adds a REST subscription per topic, so each event is routed to the
/// per-service queue as well.
pub fn write_pipeline(dir: &Path, symbols: &[String], capacity: usize, window: usize) -> PathBuf {
    let pipeline = dir.join("pipeline.toml");
    let mut toml = format!(
        "[stages.publish]\ncapacity = {capacity}\nwhen_full = \"block\"\n\n\
         [publish]\nconfirm_window = {window}\nspool_dir = {:?}\npersistent_market_data = {}\n\n\
         [classes.trades]\nqueue_type = \"{}\"\n",
        dir.join("spool"),
        crate::args::persistent(),
        crate::args::queue_type().as_str(),
    );
    for s in symbols.iter().map(String::as_str).chain([WARM_SYMBOL]) {
        toml.push_str(&format!(
            "\n[[subscriptions]]\nchannel_type = \"trades\"\ncategory = \"linear\"\n\
             symbol = \"{s}\"\nrequesting_service = \"{SERVICE}\"\n"
        ));
    }
    std::fs::write(&pipeline, toml).expect("pipeline file");
    pipeline
}

/// The running gateway process.
pub struct Gateway {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts `binary` in `dir` on a free port with `vars` (and `TOKIO_WORKER_THREADS` passed
    /// through), logging to `dir/gateway.log`.
    pub fn start(binary: &Path, dir: &Path, vars: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("WS_GATEWAY_HOST", "127.0.0.1")
            .env("WS_GATEWAY_PORT", port.to_string())
            .env("WS_GATEWAY_API_KEY", API_KEY)
            .env("WS_GATEWAY_LOG_LEVEL", "warn")
            .current_dir(dir)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        // Runtime tuning of the gateway under test, passed through.
        if let Ok(n) = std::env::var("TOKIO_WORKER_THREADS") {
            cmd.env("TOKIO_WORKER_THREADS", n);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    /// Waits (at most 30 s) until `/health` answers.
    pub async fn wait_healthy(&self) {
        for _ in 0..300 {
            if self
                .http
                .get(format!("{}/health", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not serve /health within 30 s");
    }

    /// `POST /api/v1/subscriptions`: linear trades of `symbol` for the load service.
    pub async fn subscribe(&self, symbol: &str) {
        let resp = self
            .http
            .post(format!("{}/api/v1/subscriptions", self.base))
            .header("X-API-Key", API_KEY)
            .json(&serde_json::json!({
                "channel_type": "trades", "category": "linear", "symbol": symbol,
                "requesting_service": SERVICE,
            }))
            .send()
            .await
            .expect("POST /api/v1/subscriptions");
        assert!(
            resp.status().is_success(),
            "subscribe {symbol}: {}",
            resp.status()
        );
    }

    /// Sum of a counter's samples on `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Cumulative buckets `(le, count)` of a histogram on `/metrics`, summed over labels.
    pub async fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return vec![];
        };
        let text = resp.text().await.unwrap_or_default();
        let prefix = format!("{name}_bucket{{");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let le = field(line, "le=\"").and_then(|v| {
                if v == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    v.parse().ok()
                }
            });
            let n = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(le), Some(n)) = (le, n) {
                match out.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, c)) => *c += n,
                    None => out.push((le, n)),
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status (killed after 30 s).
    pub async fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        "killed after 30 s".into()
    }
}
