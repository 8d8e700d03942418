//! The envelope `key` (spec section 5): the same text whichever process, instance or restart
//! enriched the same exchange event, so consumers can drop repeats.
//!
//! - public frames: `<category>:<topic>:<marker>`, the marker being
//!   - publicTrade: the first trade's id `i` (else `ts`),
//!   - orderbook: `u` (else `ts`), plus `:s` for a snapshot,
//!   - tickers: `cs`, else `ts`,
//!   - kline: `<start>:<ts>` (`start` of the first item),
//!   - anything else (allLiquidation, liquidation, insurance, …): `ts`;
//! - private frames: Bybit's frame `id` as is; without one, `<topic>:<creationTime>` (the private
//!   endpoint has no category, so no category part);
//! - recovered frames: the key the catch-up gave ([`crate::event::RawFrame::recovered`]).
//!
//! A number that is missing is spelled `null`; `ts` is the envelope's `exchange_ts`.
//!
//! Everything is read from what the source's one parse located ([`DataHead`]); nothing is
//! parsed again. A [`Key`] is the list of its pieces (borrowed from the frame text, the topic and
//! the numbers' [`KeyNumbers`]), so enrich writes it straight into the envelope buffer without
//! building it first.

use crate::{
    event::{Endpoint, EventClass},
    wire::DataHead,
};

/// Where the numbers of one key are formatted (on the stack).
#[derive(Default)]
pub struct KeyNumbers {
    a: itoa::Buffer,
    b: itoa::Buffer,
}

impl std::fmt::Debug for KeyNumbers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyNumbers")
    }
}

/// A key as the concatenation of its pieces.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    parts: [&'a str; 7],
    /// Whether no piece has a byte JSON must escape (`"`, `\`, a control character).
    plain: bool,
}

/// Whether serde_json would write `s` without escapes.
fn plain(s: &str) -> bool {
    !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

impl<'a> Key<'a> {
    /// A key given whole (a recovered frame's).
    pub fn given(key: &'a str) -> Self {
        Self {
            parts: [key, "", "", "", "", "", ""],
            plain: plain(key),
        }
    }

    /// The key of a live frame: `topic`, `kind` and `head` are the frame's (`text` the frame
    /// text `head` locates in), `exchange_ts` the envelope's.
    #[allow(clippy::too_many_arguments)]
    pub fn live(
        nums: &'a mut KeyNumbers,
        endpoint: Endpoint,
        class: EventClass,
        text: &'a str,
        head: &'a DataHead,
        topic: &'a str,
        kind: Option<&str>,
        exchange_ts: Option<i64>,
    ) -> Self {
        let KeyNumbers { a, b } = nums;
        let ts = |buf: &'a mut itoa::Buffer| -> &'a str {
            match exchange_ts {
                Some(ts) => buf.format(ts),
                None => "null",
            }
        };
        let parts = match endpoint {
            Endpoint::Private => match head.id(text) {
                Some(id) => [id, "", "", "", "", "", ""],
                None => [topic, ":", ts(a), "", "", "", ""],
            },
            Endpoint::Public(category) => {
                let (m1, sep, m2) = match class {
                    EventClass::Trades => match head.first_trade_id(text) {
                        Some(i) => (i, "", ""),
                        None => (ts(a), "", ""),
                    },
                    EventClass::Orderbook => {
                        let u = match head.u {
                            Some(u) => a.format(u),
                            None => ts(a),
                        };
                        (u, "", if kind == Some("snapshot") { ":s" } else { "" })
                    }
                    EventClass::Tickers => match head.cs {
                        Some(cs) => (a.format(cs), "", ""),
                        None => (ts(a), "", ""),
                    },
                    EventClass::Klines => {
                        let start = match head.first_start {
                            Some(s) => a.format(s),
                            None => "null",
                        };
                        (start, ":", ts(b))
                    }
                    _ => (ts(a), "", ""),
                };
                [category.as_str(), ":", topic, ":", m1, sep, m2]
            }
        };
        let mut key = Self { parts, plain: true };
        // Strings located in place in the frame text carry nothing to escape.
        if !head.strings_in_place() {
            key.plain = key.parts.iter().all(|p| plain(p));
        }
        key
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the key can be written between quotes as is.
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    /// Appends the key's bytes (unescaped).
    #[inline]
    pub fn write(&self, buf: &mut Vec<u8>) {
        for p in self.parts {
            // Most keys have empty pieces: no copy for them.
            if !p.is_empty() {
                buf.extend_from_slice(p.as_bytes());
            }
        }
    }

    /// The key as an owned string (the rare keys the envelope escapes).
    pub fn to_text(&self) -> String {
        self.parts.concat()
    }
}

#[cfg(test)]
mod tests;
