//! The source stage driven directly: `source::spawn` against the fake Bybit with its own
//! registry, board and supervisor; its output stream is observed by the test.

use std::{sync::Arc, time::Duration};

use fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit};
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    config::{BybitCredentials, BybitEnvironment, BybitSettings},
    event::{Category, Endpoint, RawFrame},
    health::HealthBoard,
    pipeline_file::SourceConfig,
    shutdown::Supervisor,
    source::{self, SourceParams},
    subscriptions::{SubscriptionHandle, SubscriptionRegistry, TopicKey},
};

use super::secs;

/// `source::spawn` against a fake, with its own registry, board and supervisor.
pub struct Harness {
    pub fake: FakeBybit,
    pub registry: SubscriptionHandle,
    pub health: Arc<HealthBoard>,
    pub frames: ReceiverStream<RawFrame>,
    pub stop: CancellationToken,
    pub supervisor: Supervisor,
}

impl Harness {
    pub async fn start(config: SourceConfig, secret: Option<&str>) -> Self {
        super::init_test_log();
        let _ = ws_gateway::telemetry::metrics_handle();
        let fake = FakeBybit::start().await;
        let registry = SubscriptionRegistry::new_handle();
        let health = Arc::new(HealthBoard::default());
        let supervisor = Supervisor::new(CancellationToken::new());
        let stop = CancellationToken::new();
        let bybit = BybitSettings {
            environment: BybitEnvironment::Mainnet,
            ws_url: fake.base_url().parse().unwrap(),
            rest_url: "http://127.0.0.1:9".parse().unwrap(),
            credentials: secret.map(|s| BybitCredentials {
                api_key: FAKE_API_KEY.to_owned(),
                api_secret: s.to_owned().into(),
            }),
        };
        let frames = source::spawn(
            SourceParams {
                bybit,
                config,
                registry: registry.clone(),
                rest: None,
                health: health.clone(),
                capacity: 1024,
                clock: ws_gateway::rest::ServerClock::local(),
                catchup: None,
                ownership: ws_gateway::cluster::Ownership::solo("test"),
            },
            &supervisor,
            stop.clone(),
        );
        Self {
            fake,
            registry,
            health,
            frames,
            stop,
            supervisor,
        }
    }

    pub async fn with_credentials(config: SourceConfig) -> Self {
        Self::start(config, Some(FAKE_API_SECRET)).await
    }

    pub fn acquire(&self, endpoint: Endpoint, topic: &str) -> TopicKey {
        let key = TopicKey::new(endpoint, topic);
        self.registry.acquire(&key, "test");
        key
    }

    /// The next output frame's text, or `None` after `deadline`.
    pub async fn next_text(&mut self, deadline: Duration) -> Option<String> {
        tokio::time::timeout(deadline, self.frames.next())
            .await
            .ok()
            .flatten()
            .map(|f| f.text().to_owned())
    }

    /// Stops the source and checks the stream ends and every task finishes.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(secs(5), async {
            while self.frames.next().await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the frame stream ends after stop");
        self.supervisor.shutdown.cancel();
        self.supervisor.tracker.close();
        let done = tokio::time::timeout(secs(5), self.supervisor.tracker.wait()).await;
        assert!(
            done.is_ok(),
            "unfinished: {:?}",
            self.supervisor.unfinished()
        );
    }
}

pub fn linear() -> Endpoint {
    Endpoint::Public(Category::Linear)
}
