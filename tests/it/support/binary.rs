//! The real `ws-gateway` binary in its own process, for what an in-process app cannot show
//! (its own metrics registry, SIGTERM, the exit status).

use std::time::Duration;

use serde_json::Value;

use fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit};

use super::{TEST_API_KEY, http, metrics, secs, wait_until};

/// The environment of a binary against `fake` with private credentials, publishing to `amqp`
/// under the exchange/queue prefix `prefix`.
pub fn gateway_vars(fake: &FakeBybit, amqp: String, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BYBIT_WS_URL", fake.base_url()),
        ("BYBIT_REST_URL", fake.rest_url()),
        ("BYBIT_API_KEY", FAKE_API_KEY.into()),
        ("BYBIT_API_SECRET", FAKE_API_SECRET.into()),
        ("AMQP_URL", amqp),
        ("WS_GATEWAY_SERVICE_NAME", prefix.into()),
        ("WS_GATEWAY_LOG_LEVEL", "info".into()),
    ]
}

/// The real `ws-gateway` binary in its own process (its own metrics registry), on a port the
/// test picked, logging to a file in its temp dir.
#[derive(Debug)]
pub struct Binary {
    pub child: std::process::Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Binary {
    /// Starts the binary with `vars` (plus host, port, API key, pipeline file) and waits until
    /// `/health` answers.
    pub async fn start(vars: &[(&str, String)], pipeline_toml: &str) -> Self {
        let bin = Self::launch(vars, pipeline_toml);
        let up = wait_until(secs(30), || {
            let url = format!("{}/health", bin.base);
            async move { reqwest::get(url).await.ok().map(|_| ()) }
        })
        .await;
        assert!(up.is_some(), "the binary serves /health");
        bin
    }

    /// Starts the binary as [`Binary::start`] does, without waiting for anything.
    pub fn launch(vars: &[(&str, String)], pipeline_toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(&pipeline, pipeline_toml).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ws-gateway"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WS_GATEWAY_PIPELINE", &pipeline)
            .env("WS_GATEWAY_HOST", "127.0.0.1")
            .env("WS_GATEWAY_PORT", port.to_string())
            .env("WS_GATEWAY_API_KEY", TEST_API_KEY)
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the binary");
        let base = format!("http://127.0.0.1:{port}");
        Self { child, base, dir }
    }

    /// Waits (at most `deadline`) for the process to exit on its own.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if started.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /api/v1/subscriptions`.
    pub async fn post(&self, body: Value) -> Value {
        let resp = http::client()
            .post(format!("{}/api/v1/subscriptions", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json().await.unwrap()
    }

    /// Sum of `name` samples matching `labels` on this process's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metrics::scrape(&self.base).await.sum(name, labels)
    }

    /// Sends SIGTERM and waits (at most `deadline`) for the exit status.
    pub async fn sigterm(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if started.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
