//! Decode: a frame → the envelope fields the pipeline needs. The source's one parse
//! ([`crate::wire::parse`]) already located them and the frame carries them
//! ([`RawFrame::head`]), so decode reads nothing again: it is the typed view the later stages
//! use, and it cannot fail (malformed frames never leave the source).
//!
//! A Bybit v5 data push looks like (linear publicTrade, `tests/fixtures/bybit/linear_publicTrade.json`,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>):
//!
//! ```json
//! {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1758844800135,"data":[{"T":1758844800133,…}]}
//! ```
//!
//! Private pushes carry `id, topic, creationTime, data`; see [`crate::wire`] for the shapes.

use std::ops::Range;

use crate::{buffer::Droppable, event::RawFrame};

/// A decoded frame: the frame and its located envelope fields, with `data` as a byte range of
/// the frame text (so it can cross a channel without copying).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The frame, unchanged.
    pub frame: RawFrame,
}

impl Decoded {
    /// Bybit topic.
    pub fn topic(&self) -> &str {
        self.frame.topic()
    }

    /// Bybit `type`.
    pub fn kind(&self) -> Option<&str> {
        self.frame.kind()
    }

    /// `ts` (ms).
    pub fn ts(&self) -> Option<i64> {
        self.frame.head().ts
    }

    /// `creationTime` (ms).
    pub fn creation_time(&self) -> Option<i64> {
        self.frame.head().creation_time
    }

    /// Byte range of `data` in the frame text.
    pub fn data_range(&self) -> Range<usize> {
        self.frame.head().data_range()
    }

    /// The frame's `data`, as sent.
    pub fn data(&self) -> &str {
        self.frame.data()
    }
}

impl Droppable for Decoded {
    fn must_keep(&self) -> bool {
        crate::event::EventClass::Other.must_keep(self.frame.endpoint)
    }
}

/// Decodes one frame: its fields were located by the source's parse.
// Inlined into the caller so the frame is not copied into a new place per stage.
#[inline(always)]
pub fn decode(frame: RawFrame) -> Decoded {
    Decoded { frame }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{Category, Endpoint};

    /// A frame of `text` from `endpoint`, received now.
    pub(crate) fn frame(endpoint: Endpoint, text: &str) -> RawFrame {
        RawFrame::parse(endpoint, 1, text.to_owned()).expect("a data frame")
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
            let d = decode(frame(case.endpoint, case.input.trim_end()));
            assert_eq!(d.topic(), case.topic, "{}", case.name);
            assert_eq!(d.kind(), case.kind, "{}", case.name);
            if case.ts.is_some() {
                assert_eq!(d.ts(), case.ts, "{}", case.name);
            }
            if case.creation_time.is_some() {
                assert_eq!(d.creation_time(), case.creation_time, "{}", case.name);
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
    fn malformed_and_control_frames_never_become_frames() {
        for text in [
            "",
            "not json",
            "{\"topic\":1}",
            include_str!("../../tests/fixtures/bybit/pong_spot.json"),
        ] {
            assert!(
                RawFrame::parse(Endpoint::Private, 1, text).is_err(),
                "{text}"
            );
        }
    }
}
