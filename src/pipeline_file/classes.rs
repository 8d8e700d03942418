//! `[classes.<class>]`: how each event class is kept on RabbitMQ: its queue type
//! ([`QueueType`]) and an optional stream with its retention ([`StreamConfig`]), whose sizes are
//! read by [`parse_bytes`].

use std::time::Duration;

use serde::Deserialize;

/// The RabbitMQ queue type of a class queue (and of the class's per-service queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueType {
    /// One node holds the queue (fast; unavailable while that node is down).
    #[default]
    Classic,
    /// Replicated over the cluster (Raft); the recommended type for private classes on a
    /// cluster.
    Quorum,
}

impl QueueType {
    /// `classic` / `quorum`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

/// `[classes.<class>]`: how a class is kept on RabbitMQ.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    /// Type of `<prefix>.<class>` and of `<prefix>.<class>.<service>`.
    pub queue_type: QueueType,
    /// An optional stream `<prefix>.<class>.stream` bound like the class queue.
    pub stream: Option<StreamConfig>,
}

/// `stream = { max_age = "24h", max_bytes = "10GB" }`: a stream's retention (whichever is hit
/// first; RabbitMQ removes whole segments).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Age past which segments are removed (`x-max-age`); none when absent.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Size past which the oldest segments are removed (`x-max-length-bytes`): bytes, or a
    /// number with `KB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB`.
    #[serde(default, deserialize_with = "de_bytes")]
    pub max_bytes: Option<u64>,
}

/// `"10GB"`, `"512MiB"`, `"1000"` or a TOML integer → bytes.
fn de_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::N(n)) => Ok(Some(n)),
        Some(Raw::S(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Parses a byte size: `"10GB"`, `"512 MiB"`, `"1000"`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (expected e.g. \"10GB\" or \"512MiB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{event::EventClass, pipeline_file::PipelineFile};

    #[test]
    fn classes_take_a_queue_type_and_an_optional_stream() {
        let text = "[classes.orders]\nqueue_type = \"quorum\"\n\
                    [classes.executions]\nqueue_type = \"quorum\"\n\
                    stream = { max_age = \"24h\", max_bytes = \"10GB\" }\n\
                    [classes.trades]\nqueue_type = \"classic\"\n";
        let file = PipelineFile::parse(text).unwrap();
        assert_eq!(file.class(EventClass::Orders).queue_type, QueueType::Quorum);
        assert_eq!(file.class(EventClass::Orders).stream, None);
        let ex = file.publish.class(EventClass::Executions);
        assert_eq!(ex.queue_type, QueueType::Quorum);
        let stream = ex.stream.unwrap();
        assert_eq!(stream.max_age, Some(Duration::from_secs(86_400)));
        assert_eq!(stream.max_bytes, Some(10_000_000_000));
        assert_eq!(
            file.class(EventClass::Trades).queue_type,
            QueueType::Classic
        );
        assert_eq!(file.class(EventClass::Klines), ClassConfig::default());
        for (bad, named) in [
            ("[classes.order]\nqueue_type = \"quorum\"\n", "order"),
            ("[classes.orders]\nqueue_type = \"stream\"\n", "stream"),
            ("[classes.orders]\nqueu_type = \"quorum\"\n", "queu_type"),
            (
                "[classes.orders]\nstream = { max_bytes = \"10XB\" }\n",
                "10XB",
            ),
            (
                "[classes.orders]\nstream = { max_age = \"forever\" }\n",
                "forever",
            ),
        ] {
            let err = PipelineFile::parse(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
    }
}
