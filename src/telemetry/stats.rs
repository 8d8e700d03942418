//! Counters of one pipeline instance, readable in-process (tests, the load program) without a
//! metrics recorder. The Prometheus metrics of `telemetry` are recorded alongside.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

#[derive(Debug, Default)]
struct Inner {
    events: AtomicU64,
    published: AtomicU64,
    confirmed: AtomicU64,
    retried: AtomicU64,
    market_dropped: AtomicU64,
    spooled: AtomicU64,
}

/// Shared counters; clones count into the same totals.
#[derive(Debug, Clone, Default)]
pub struct PipelineStats {
    inner: Arc<Inner>,
}

macro_rules! counter {
    ($($field:ident, $add:ident, $doc:literal;)*) => {
        impl PipelineStats {
            $(
                #[doc = $doc]
                pub fn $field(&self) -> u64 {
                    self.inner.$field.load(Ordering::Relaxed)
                }
                pub(crate) fn $add(&self, n: u64) {
                    self.inner.$field.fetch_add(n, Ordering::Relaxed);
                }
            )*
        }
    };
}

counter! {
    events, add_events, "Events built by enrich.";
    published, add_published, "Messages handed to the broker (retries included).";
    confirmed, add_confirmed, "Events confirmed by the broker.";
    retried, add_retried, "Messages re-sent after a NACK, a return or a lost connection.";
    market_dropped, add_market_dropped, "Market-data events dropped oldest-first by the publish buffer.";
    spooled, add_spooled, "Private events written to the on-disk spool.";
}
