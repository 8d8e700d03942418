//! Enrich's unit tests: ids, times, sequence numbers and the envelope it writes.

use super::*;
use crate::{
    event::EventClass,
    pipeline::{classify::classify, decode::decode, decode::tests::frame},
};

fn event(e: &mut Enricher, endpoint: Endpoint, text: &str) -> Event {
    e.enrich(classify(decode(frame(endpoint, text.trim_end()))))
}

#[test]
fn the_envelope_has_the_spec_keys_in_order_and_data_byte_for_byte() {
    let text = include_str!("../../../tests/fixtures/bybit/linear_publicTrade.json").trim_end();
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
        "\"key\"",
        "\"recovered\"",
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
    assert_eq!(
        v["key"],
        "linear:publicTrade.BTCUSDT:2a74ac78-691c-5b54-9dbe-5aafe8364627"
    );
    assert_eq!(v["recovered"], false);
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
    let text = include_str!("../../../tests/fixtures/bybit/wallet.json");
    let ev = event(&mut Enricher::default(), Endpoint::Private, text);
    let v: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
    assert_eq!(ev.class, EventClass::Balances);
    assert_eq!(v["exchange_ts"], 1_699_764_599_844_i64);
    assert!(v["category"].is_null() && v["symbol"].is_null() && v["type"].is_null());
    assert_eq!(ev.routing_key(), "balances.private");
}

#[test]
fn the_formatted_second_gives_the_same_unix_ms_and_text_as_chrono() {
    let mut ids = Generators::default();
    let base = DateTime::parse_from_rfc3339("2026-11-27T12:59:59.999999Z")
        .unwrap()
        .to_utc();
    for micros in [0, 1, 1_000, 999_999, 1_000_000, 1_000_001, 86_400_000_000] {
        let t = base + chrono::TimeDelta::microseconds(micros);
        let before = ids.unix_ms(t);
        let mut buf = Vec::new();
        ids.write_rfc3339(&mut buf, t);
        assert_eq!(before, t.timestamp_millis(), "{t}");
        assert_eq!(ids.unix_ms(t), t.timestamp_millis(), "{t}");
        assert_eq!(
            buf,
            t.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes()
        );
    }
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
