//! End to end: the real app against the fake Bybit, with the real RabbitMQ and PostgreSQL.
//! Each test drives the gateway the way its users do (REST, `/ws`, queues) and checks what
//! arrives at the far end.

mod upstream;

use std::time::Duration;

use crate::{
    fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit},
    helpers::TestConfig,
    source::fast_config,
};

pub const LINEAR: &str = "/v5/public/linear";
pub const PRIVATE: &str = "/v5/private";

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An app configuration against `fake` with working credentials and quick reconnects.
pub fn against(fake: &FakeBybit, database_url: &str) -> TestConfig {
    let mut config = TestConfig::default()
        .var("BYBIT_WS_URL", fake.base_url())
        .var("DATABASE_URL", database_url)
        .var("BYBIT_API_KEY", FAKE_API_KEY)
        .var("BYBIT_API_SECRET", FAKE_API_SECRET);
    config.pipeline.source = fast_config(secs(20), secs(10));
    config
}
