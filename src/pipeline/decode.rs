//! Decode: the raw frame text → the few envelope fields the pipeline needs, borrowed.
//!
//! A Bybit v5 data push looks like (linear publicTrade, `tests/fixtures/bybit/linear_publicTrade.json`,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>):
//!
//! ```json
//! {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1758844800135,"data":[{"T":1758844800133,…}]}
//! ```
//!
//! Private pushes carry `id, topic, creationTime, data`. Key order differs by market, so the
//! frame is parsed with serde (order-free) into [`BybitMessage`], with `data` kept as a
//! [`RawValue`]: it is never parsed, only located, and later copied byte for byte.

use std::{borrow::Cow, ops::Range};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{buffer::Droppable, event::RawFrame};

/// The envelope of a Bybit data push, borrowed from the frame text.
#[derive(Debug, Deserialize)]
pub struct BybitMessage<'a> {
    /// `publicTrade.BTCUSDT`, `order`, `execution.fast`, …
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    /// `snapshot` / `delta` where Bybit sends one.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// Server time of the push (ms); public frames.
    #[serde(default)]
    pub ts: Option<i64>,
    /// Creation time (ms); private frames.
    #[serde(rename = "creationTime", default)]
    pub creation_time: Option<i64>,
    /// The payload, unparsed.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// A decoded frame: the frame itself plus the envelope fields, with `data` as a byte range of
/// the frame text (so it can cross a channel without copying).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The frame, unchanged.
    pub frame: RawFrame,
    /// Bybit topic.
    pub topic: String,
    /// Bybit `type`.
    pub kind: Option<String>,
    /// `ts` (ms).
    pub ts: Option<i64>,
    /// `creationTime` (ms).
    pub creation_time: Option<i64>,
    /// Byte range of `data` in `frame.text`.
    pub data: Range<usize>,
}

impl Decoded {
    /// The frame's `data`, as sent.
    pub fn data(&self) -> &str {
        &self.frame.text[self.data.clone()]
    }
}

impl Droppable for Decoded {
    fn must_keep(&self) -> bool {
        crate::event::EventClass::Other.must_keep(self.frame.endpoint)
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not a data push (no `topic` / `data`).
    #[error("malformed frame")]
    MalformedJson {
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes one frame.
pub fn decode(frame: RawFrame) -> Result<Decoded, DecodeError> {
    let text: &str = &frame.text;
    let msg: BybitMessage<'_> =
        serde_json::from_str(text).map_err(|source| DecodeError::MalformedJson { source })?;
    let raw = msg.data.get();
    // `raw` is a sub-slice of `text` (serde_json borrows it), so its offset is the pointer
    // difference; no unsafe code is involved.
    let start = (raw.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let data = start..start + raw.len();
    debug_assert_eq!(text.get(data.clone()), Some(raw));
    let topic = msg.topic.into_owned();
    let kind = msg.kind.map(Cow::into_owned);
    let (ts, creation_time) = (msg.ts, msg.creation_time);
    Ok(Decoded {
        frame,
        topic,
        kind,
        ts,
        creation_time,
        data,
    })
}

/// The first `max` characters of a payload, for DEBUG logs of bad frames.
pub fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{Category, Endpoint};

    /// A frame of `text` from `endpoint`, received now.
    pub(crate) fn frame(endpoint: Endpoint, text: &str) -> RawFrame {
        RawFrame {
            endpoint,
            connection_id: 1,
            received_at: chrono::Utc::now(),
            received_mono: std::time::Instant::now(),
            text: text.to_owned().into(),
        }
    }

    fn fixture_data(text: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        serde_json::to_string(&v["data"]).unwrap()
    }

    struct TestCase {
        name: &'static str,
        endpoint: Endpoint,
        input: &'static str,
        topic: &'static str,
        kind: Option<&'static str>,
        ts: Option<i64>,
        creation_time: Option<i64>,
    }

    #[test]
    fn fixtures_decode_in_any_key_order_with_data_located_byte_for_byte() {
        let linear = Endpoint::Public(Category::Linear);
        let cases = [
            // TC0: linear trade, keys topic, type, ts, data
            TestCase {
                name: "linear_publicTrade",
                endpoint: linear,
                input: include_str!("../../tests/fixtures/bybit/linear_publicTrade.json"),
                topic: "publicTrade.BTCUSDT",
                kind: Some("snapshot"),
                ts: Some(1_758_841_135_824),
                creation_time: None,
            },
            // TC1: kline, keys topic, data, ts, type
            TestCase {
                name: "kline",
                endpoint: linear,
                input: include_str!("../../tests/fixtures/bybit/kline.json"),
                topic: "kline.1.BTCUSDT",
                kind: Some("snapshot"),
                ts: Some(1_719_667_601_380),
                creation_time: None,
            },
            // TC2: private wallet, keys id, topic, creationTime, data
            TestCase {
                name: "wallet",
                endpoint: Endpoint::Private,
                input: include_str!("../../tests/fixtures/bybit/wallet.json"),
                topic: "wallet",
                kind: None,
                ts: None,
                creation_time: Some(1_699_764_599_844),
            },
        ];
        for case in cases {
            let d = decode(frame(case.endpoint, case.input.trim_end())).expect(case.name);
            assert_eq!(d.topic, case.topic, "{}", case.name);
            assert_eq!(d.kind.as_deref(), case.kind, "{}", case.name);
            if case.ts.is_some() {
                assert_eq!(d.ts, case.ts, "{}", case.name);
            }
            if case.creation_time.is_some() {
                assert_eq!(d.creation_time, case.creation_time, "{}", case.name);
            }
            let reparsed: serde_json::Value = serde_json::from_str(d.data()).unwrap();
            assert_eq!(
                serde_json::to_string(&reparsed).unwrap(),
                fixture_data(case.input)
            );
            assert!(case.input.contains(d.data()), "{}", case.name);
        }
    }

    #[test]
    fn malformed_and_control_frames_are_errors_not_panics() {
        for text in [
            "",
            "not json",
            "{\"topic\":1}",
            include_str!("../../tests/fixtures/bybit/pong_spot.json"),
        ] {
            assert!(decode(frame(Endpoint::Private, text)).is_err(), "{text}");
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncated("héllo", 2), "hé");
        assert_eq!(truncated("hi", 10), "hi");
    }
}
