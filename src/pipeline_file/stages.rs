//! `[stages]`: the buffers between pipeline stages, each with a capacity and, where the policy
//! is not fixed by what it protects, a [`WhenFull`] policy ([`BufferConfig`], [`CapacityConfig`]).

use serde::Deserialize;

/// What a bounded buffer does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: backpressure travels up to the source.
    #[default]
    Block,
    /// Drop the oldest item and count it. Never applied to private classes.
    DropOldest,
}

/// One buffer between stages.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Items the buffer holds.
    pub capacity: usize,
    /// What happens when it is full.
    #[serde(default)]
    pub when_full: WhenFull,
}

impl BufferConfig {
    const fn new(capacity: usize, when_full: WhenFull) -> Self {
        Self {
            capacity,
            when_full,
        }
    }
}

/// A buffer whose when-full behaviour is fixed by what it protects, so it has no `when_full`
/// key (`stages.decode` always blocks, `stages.tee` never does).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityConfig {
    /// Items the buffer holds.
    pub capacity: usize,
}

/// Buffers between stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagesConfig {
    /// Source → decode: the source's output channel. Always `block`: backpressure reaches the
    /// sockets (a frame cannot be judged droppable before it is decoded).
    pub decode: CapacityConfig,
    /// Decode → classify.
    pub classify: BufferConfig,
    /// Classify → enrich.
    pub enrich: BufferConfig,
    /// Tee → persistence sink: never blocks the main path; past `capacity` (twice: the tee's
    /// buffer and the channel behind it) the oldest non-private event is dropped.
    pub tee: CapacityConfig,
    /// Enrich → publish (market data; private classes always block and spool).
    pub publish: BufferConfig,
}

impl Default for StagesConfig {
    fn default() -> Self {
        Self {
            decode: CapacityConfig { capacity: 1024 },
            classify: BufferConfig::new(1024, WhenFull::Block),
            enrich: BufferConfig::new(1024, WhenFull::Block),
            tee: CapacityConfig { capacity: 10_000 },
            publish: BufferConfig::new(10_000, WhenFull::DropOldest),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pipeline_file::PipelineFile;

    #[test]
    fn when_full_is_refused_where_the_policy_is_fixed() {
        for stage in ["decode", "tee"] {
            let text = format!("[stages.{stage}]\ncapacity = 10\nwhen_full = \"block\"\n");
            let err = PipelineFile::parse(&text).unwrap_err();
            assert!(err.contains("when_full"), "{stage}: {err}");
        }
    }
}
