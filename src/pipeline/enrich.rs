//! Enrich: a classified frame → an [`Event`] with id, trace id, per-topic seq and the section 5
//! envelope serialised once.
//!
//! The envelope is written by hand in the spec's key order; string fields go through serde_json
//! for escaping, and `data` is the raw slice of the frame, copied byte for byte (never parsed
//! and re-serialised). `Event.data` records where it sits in `Event.json`.

use std::{collections::HashMap, io::Write};

use bytes::Bytes;
use chrono::SecondsFormat;
use rand::RngCore;
use uuid::Uuid;

use crate::{
    event::{Category, Endpoint, Event},
    pipeline::classify::Classified,
};

/// The enrich stage's state: one seq counter per (category, topic).
#[derive(Debug, Default)]
pub struct Enricher {
    /// Index 0..4 by category, 4 for no category; keyed by topic so lookups need no allocation.
    seqs: [HashMap<String, u64>; 5],
}

/// 32 lowercase hex characters from 16 random bytes (never all zero, as W3C requires).
pub fn trace_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    if bytes == [0; 16] {
        bytes[15] = 1;
    }
    hex::encode(bytes)
}

impl Enricher {
    /// The next seq of (category, topic), from 1.
    pub fn next_seq(&mut self, category: Option<Category>, topic: &str) -> u64 {
        let map = &mut self.seqs[category.map_or(4, |c| c as usize)];
        if let Some(n) = map.get_mut(topic) {
            *n += 1;
            return *n;
        }
        map.insert(topic.to_owned(), 1);
        1
    }

    /// Builds the event of one classified frame.
    pub fn enrich(&mut self, c: Classified) -> Event {
        let Classified {
            decoded,
            class,
            category,
            symbol,
        } = c;
        let seq = self.next_seq(category, &decoded.topic);
        let id = Uuid::now_v7();
        let trace_id = trace_id();
        let exchange_ts = if decoded.frame.endpoint == Endpoint::Private {
            decoded.creation_time.or(decoded.ts)
        } else {
            decoded.ts.or(decoded.creation_time)
        };
        let received_at = decoded.frame.received_at;
        let raw = decoded.data();

        let mut buf = Vec::with_capacity(raw.len() + 320);
        let mut uuid_buf = Uuid::encode_buffer();
        buf.extend_from_slice(b"{\"id\":\"");
        buf.extend_from_slice(id.hyphenated().encode_lower(&mut uuid_buf).as_bytes());
        buf.extend_from_slice(b"\",\"trace_id\":\"");
        buf.extend_from_slice(trace_id.as_bytes());
        buf.extend_from_slice(b"\",\"class\":\"");
        buf.extend_from_slice(class.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"topic\":");
        write_str(&mut buf, &decoded.topic);
        buf.extend_from_slice(b",\"category\":");
        match category {
            Some(c) => {
                buf.push(b'"');
                buf.extend_from_slice(c.as_str().as_bytes());
                buf.push(b'"');
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"symbol\":");
        write_opt_str(&mut buf, symbol.as_deref());
        buf.extend_from_slice(b",\"type\":");
        write_opt_str(&mut buf, decoded.kind.as_deref());
        buf.extend_from_slice(b",\"exchange_ts\":");
        match exchange_ts {
            Some(ts) => {
                let _ = write!(buf, "{ts}");
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"received_at\":\"");
        buf.extend_from_slice(
            received_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_bytes(),
        );
        let _ = write!(buf, "\",\"seq\":{seq},\"data\":");
        let start = buf.len();
        buf.extend_from_slice(raw.as_bytes());
        let end = buf.len();
        buf.push(b'}');

        Event {
            id,
            trace_id,
            class,
            topic: decoded.topic,
            endpoint: decoded.frame.endpoint,
            category,
            symbol,
            kind: decoded.kind,
            exchange_ts,
            received_at,
            received_mono: decoded.frame.received_mono,
            seq,
            json: Bytes::from(buf),
            data: start..end,
        }
    }
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, s);
}

fn write_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::EventClass,
        pipeline::{classify::classify, decode::decode, decode::tests::frame},
    };

    fn event(e: &mut Enricher, endpoint: Endpoint, text: &str) -> Event {
        e.enrich(classify(decode(frame(endpoint, text.trim_end())).unwrap()))
    }

    #[test]
    fn the_envelope_has_the_spec_keys_in_order_and_data_byte_for_byte() {
        let text = include_str!("../../tests/fixtures/bybit/linear_publicTrade.json").trim_end();
        let ev = event(
            &mut Enricher::default(),
            Endpoint::Public(Category::Linear),
            text,
        );
        let json = std::str::from_utf8(&ev.json).unwrap();
        let keys = [
            "\"id\"",
            "\"trace_id\"",
            "\"class\"",
            "\"topic\"",
            "\"category\"",
            "\"symbol\"",
            "\"type\"",
            "\"exchange_ts\"",
            "\"received_at\"",
            "\"seq\"",
            "\"data\"",
        ];
        let positions: Vec<_> = keys.iter().map(|k| json.find(k).unwrap()).collect();
        assert!(positions.is_sorted(), "{json}");
        let v: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
        assert_eq!(v["class"], "trades");
        assert_eq!(v["category"], "linear");
        assert_eq!(v["symbol"], "BTCUSDT");
        assert_eq!(v["type"], "snapshot");
        assert_eq!(v["exchange_ts"], 1_758_841_135_824_i64);
        assert_eq!(v["seq"], 1);
        assert_eq!(v["id"].as_str().unwrap(), ev.id.to_string());
        let start = text.find("\"data\":").unwrap() + 7;
        assert_eq!(ev.data(), &text.as_bytes()[start..text.len() - 1]);
        assert_eq!(ev.trace_id.len(), 32);
        assert!(
            ev.trace_id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(ev.routing_key(), "trades.linear.BTCUSDT");
    }

    #[test]
    fn private_events_use_creation_time_and_null_category_and_symbol() {
        let text = include_str!("../../tests/fixtures/bybit/wallet.json");
        let ev = event(&mut Enricher::default(), Endpoint::Private, text);
        let v: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
        assert_eq!(ev.class, EventClass::Balances);
        assert_eq!(v["exchange_ts"], 1_699_764_599_844_i64);
        assert!(v["category"].is_null() && v["symbol"].is_null() && v["type"].is_null());
        assert_eq!(ev.routing_key(), "balances.private");
    }

    #[test]
    fn seq_counts_per_category_and_topic_from_one() {
        let mut e = Enricher::default();
        assert_eq!(e.next_seq(Some(Category::Linear), "a"), 1);
        assert_eq!(e.next_seq(Some(Category::Linear), "a"), 2);
        assert_eq!(e.next_seq(Some(Category::Spot), "a"), 1);
        assert_eq!(e.next_seq(None, "a"), 1);
        assert_eq!(e.next_seq(Some(Category::Linear), "b"), 1);
    }
}

#[cfg(test)]
#[path = "envelope_golden_tests.rs"]
mod envelope_golden;
