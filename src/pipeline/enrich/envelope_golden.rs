//! The envelope bytes, byte for byte, for every data fixture of `tests/fixtures/bybit/`
//! (`*.json` with a `topic`, and every line of the `recording_*.jsonl` files).
//!
//! The goldens in `tests/fixtures/envelopes/` were captured from the serde-based decode path
//! before the single-parse rewrite; `id` and `trace_id` are replaced by fixed values, and
//! `received_at` is a fixed instant, so the rest (class, topic, category, symbol, type,
//! exchange_ts, the received_at format, seq, key, recovered, data) must match exactly (`key` and
//! `recovered` were added to the goldens after the capture, nothing else changed).
//! `UPDATE_ENVELOPE_GOLDENS=1 cargo test --lib envelope_golden` rewrites them.

use std::path::{Path, PathBuf};

use chrono::TimeZone;

use super::*;
use crate::{
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode},
};

const FIXED_ID: &str = "00000000-0000-7000-8000-000000000000";
const FIXED_TRACE: &str = "0123456789abcdef0123456789abcdef";

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

/// The endpoint a fixture arrived on, from its name and topic.
fn endpoint_of(name: &str, topic: &str) -> Endpoint {
    if crate::subscriptions::class_of(topic).is_private() || topic == "greeks" {
        return Endpoint::Private;
    }
    let name = name.trim_start_matches("recording_");
    let category = if name.starts_with("liquidation_legacy") || name.starts_with("inverse_") {
        Category::Inverse
    } else if name.starts_with("spot_") {
        Category::Spot
    } else if name.starts_with("option_") {
        Category::Option
    } else {
        Category::Linear
    };
    Endpoint::Public(category)
}

fn frame(endpoint: Endpoint, text: &str, n: u32) -> RawFrame {
    let mut frame = RawFrame::parse(endpoint, 1, text.to_owned()).expect("a data frame");
    // Whole seconds, micros, and a sub-micro part that must be cut, not rounded.
    frame.received_at = chrono::Utc
        .timestamp_opt(1_758_844_800 + i64::from(n), 123_456_789 + n * 1000)
        .unwrap();
    frame
}

/// The envelope of one frame with the two random fields pinned.
fn envelope(e: &mut Enricher, endpoint: Endpoint, text: &str, n: u32) -> String {
    let ev = e.enrich(classify(decode(frame(endpoint, text, n))));
    let json = std::str::from_utf8(&ev.json).unwrap().to_owned();
    let id = ev.id.hyphenated().to_string();
    assert!(json.starts_with(&format!(
        "{{\"id\":\"{id}\",\"trace_id\":\"{}\"",
        ev.trace_id
    )));
    json.replacen(&id, FIXED_ID, 1)
        .replacen(ev.trace_id.as_str(), FIXED_TRACE, 1)
}

fn topic_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("topic")?.as_str().map(str::to_owned)
}

#[test]
fn envelope_golden_every_data_fixture_byte_for_byte() {
    let update = std::env::var_os("UPDATE_ENVELOPE_GOLDENS").is_some();
    let mut names: Vec<_> = std::fs::read_dir(dir("bybit"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json") || n.ends_with(".jsonl"))
        .collect();
    names.sort();
    let mut checked = 0;
    for name in names {
        let text = std::fs::read_to_string(dir("bybit").join(&name)).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let Some(topic) = lines.first().and_then(|l| topic_of(l)) else {
            continue;
        };
        let endpoint = endpoint_of(&name, &topic);
        let mut e = Enricher::default();
        let mut out = String::new();
        for (n, line) in lines.iter().enumerate() {
            out.push_str(&envelope(&mut e, endpoint, line, n as u32));
            out.push('\n');
        }
        let golden = dir("envelopes").join(&name);
        if update {
            std::fs::write(&golden, &out).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(out, want, "{name}");
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} data fixtures");
}
