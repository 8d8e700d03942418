//! Issue 12, fuzzing (proptest: cargo-fuzz needs a nightly toolchain, and only stable is
//! installed). Two targets, fed arbitrary text and mutations of the real Bybit fixtures:
//!
//! - the frame path: text → `RawFrame::parse` → decode → classify → enrich never panics, and
//!   whenever it yields an event, the envelope is valid JSON whose `data` is the input's `data`,
//!   byte for byte;
//! - the `/ws` client message parser: any text gets a command or an error reply, never a panic,
//!   and every reply is JSON (the allocation bound is in `fuzz_alloc.rs`, alone in its binary).
//!
//! `cargo test` runs 64 cases per property; `.ci/run` sets `PROPTEST_CASES` for a longer run.

use std::sync::LazyLock;

use proptest::{prelude::*, test_runner::Config};
use serde_json::Value;
use ws_gateway::{
    downstream::protocol::{self, Command},
    event::{Category, Endpoint, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
};

/// `PROPTEST_CASES` when set, else 64 (the quick run of a plain `cargo test`).
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    config.failure_persistence = None;
    config
}

/// Every Bybit fixture frame (one per `.json` file, each line of the recordings).
static FIXTURES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bybit");
    let mut frames = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => frames.push(text.trim().to_owned()),
            Some("jsonl") => frames.extend(text.lines().take(50).map(str::to_owned)),
            _ => {}
        }
    }
    assert!(frames.len() > 40, "fixtures found: {}", frames.len());
    frames
});

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        Just(Endpoint::Private),
        prop::sample::select(Category::ALL.to_vec()).prop_map(Endpoint::Public),
    ]
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
    Duplicate(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let token = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"data\":".to_owned()),
        Just("\"topic\":".to_owned()),
        Just("\\u0000".to_owned()),
        Just("\\ud800".to_owned()),
        Just("é€😀".to_owned()),
        Just("null".to_owned()),
        Just("1e999".to_owned()),
        ".{0,8}",
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<prop::sample::Index>(), token).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<prop::sample::Index>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Edit::Truncate),
        (any::<prop::sample::Index>(), 1usize..32).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Flip(i, b) => {
                if !bytes.is_empty() {
                    let i = i.index(len);
                    bytes[i] = *b;
                }
            }
            Edit::Insert(i, s) => {
                let i = i.index(len + 1).min(bytes.len());
                bytes.splice(i..i, s.bytes());
            }
            Edit::Delete(i, n) => {
                let i = i.index(len).min(bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Truncate(i) => bytes.truncate(i.index(len + 1)),
            Edit::Duplicate(i, n) => {
                let i = i.index(len).min(bytes.len());
                let end = (i + n).min(bytes.len());
                let copy = bytes[i..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A fixture frame with 1 to 8 edits.
fn mutated_fixture() -> impl Strategy<Value = String> {
    (
        prop::sample::select(FIXTURES.clone()),
        prop::collection::vec(edit(), 1..8),
    )
        .prop_map(|(text, edits)| apply(&text, &edits))
}

/// Arbitrary JSON values, shallow enough to print.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Well-formed data frames with arbitrary topics and data: the path that yields events.
fn data_frame() -> impl Strategy<Value = String> {
    let topic = prop_oneof![
        prop::sample::select(vec![
            "publicTrade.BTCUSDT",
            "orderbook.50.BTCUSDT",
            "tickers.ETHUSDT",
            "kline.1.BTCUSDT",
            "allLiquidation.BTCUSDT",
            "wallet",
            "order",
            "execution.fast",
            "position",
            "greeks",
        ])
        .prop_map(str::to_owned),
        ".{0,24}",
    ];
    (
        topic,
        prop::option::of(prop::sample::select(vec!["snapshot", "delta"])),
        prop::option::of(any::<i64>()),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(topic, kind, ts, data, private_shape)| {
            let mut frame = serde_json::Map::new();
            frame.insert("topic".into(), Value::from(topic));
            if let Some(kind) = kind {
                frame.insert("type".into(), Value::from(kind));
            }
            if let Some(ts) = ts {
                let key = if private_shape { "creationTime" } else { "ts" };
                frame.insert(key.into(), Value::from(ts));
            }
            frame.insert("data".into(), data);
            Value::Object(frame).to_string()
        })
}

/// Any text the frame path may see.
fn frame_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => mutated_fixture(),
        2 => data_frame(),
        1 => any::<String>(),
        1 => prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Runs the frame path on `text`; checks the envelope when an event comes out. Returns whether
/// one did.
fn frame_path(endpoint: Endpoint, text: &str) -> Result<bool, TestCaseError> {
    let Ok(frame) = RawFrame::parse(endpoint, 1, text.to_owned()) else {
        return Ok(false);
    };
    let input_data = frame.data().to_owned();
    let event = Enricher::default().enrich(classify(decode(frame)));
    prop_assert_eq!(event.data(), input_data.as_bytes(), "data byte for byte");
    // The gateway's head (everything but `data`) is always JSON.
    let mut head = event.json[..event.data.start].to_vec();
    head.extend_from_slice(b"null");
    head.extend_from_slice(&event.json[event.data.end..]);
    let head: Value = serde_json::from_slice(&head).map_err(|e| {
        TestCaseError::fail(format!(
            "the envelope around data is not JSON ({e}): {}",
            String::from_utf8_lossy(&event.json)
        ))
    })?;
    prop_assert_eq!(head["topic"].as_str(), Some(event.topic.as_str()));
    // The source's one parse only locates `data`; it does not validate it. A frame that is not
    // strict JSON (a lone surrogate escape such as `\ud800`, which the JSON grammar allows and
    // serde_json refuses) is passed through as sent; every frame that is strict JSON gives an
    // envelope that is strict JSON.
    if serde_json::from_str::<Value>(text).is_err() {
        return Ok(true);
    }
    let envelope: Value = serde_json::from_slice(&event.json).map_err(|e| {
        TestCaseError::fail(format!(
            "the envelope of a strict JSON frame is not JSON ({e}): {}",
            String::from_utf8_lossy(&event.json)
        ))
    })?;
    let data: Value = serde_json::from_str(&input_data)
        .map_err(|e| TestCaseError::fail(format!("data is not JSON ({e}): {input_data}")))?;
    prop_assert_eq!(&envelope["data"], &data);
    prop_assert_eq!(envelope["topic"].as_str(), Some(event.topic.as_str()));
    prop_assert_eq!(envelope["seq"].as_u64(), Some(1));
    Ok(true)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_frame_path_never_panics_and_keeps_data_byte_for_byte(
        endpoint in endpoint(),
        text in frame_text(),
    ) {
        frame_path(endpoint, &text)?;
    }

    #[test]
    fn the_ws_client_parser_answers_anything(text in client_text()) {
        match protocol::parse(&text) {
            Command::Invalid(reply) => {
                let reply: Value = serde_json::from_str(&reply)
                    .map_err(|e| TestCaseError::fail(format!("reply is not JSON: {e}")))?;
                prop_assert!(reply.get("success") == Some(&Value::Bool(false))
                    || reply.get("type") == Some(&Value::from("error")));
                prop_assert!(reply.to_string().len() <= text.len() * 2 + 512);
            }
            Command::Op { .. } | Command::Action(_) => {}
        }
    }
}

/// Client messages: arbitrary text, and both dialects' messages with random edits.
fn client_text() -> impl Strategy<Value = String> {
    let seeds = vec![
        r#"{"op":"subscribe","topics":["publicTrade.BTCUSDT"],"category":"linear"}"#.to_owned(),
        r#"{"op":"unsubscribe","topics":["publicTrade.BTCUSDT","wallet"]}"#.to_owned(),
        r#"{"op":"ping","req_id":"7"}"#.to_owned(),
        r#"{"action":"subscribe","symbols":["BTCUSDT","ETHUSDT"]}"#.to_owned(),
        r#"{"action":"unsubscribe","symbols":["btcusdt"]}"#.to_owned(),
        r#"{"action":"ping"}"#.to_owned(),
    ];
    prop_oneof![
        2 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..8))
            .prop_map(|(text, edits)| apply(&text, &edits)),
        1 => any::<String>(),
        1 => json_value().prop_map(|v| v.to_string()),
    ]
}

/// The real fixtures themselves yield events (so the property above is not vacuous).
#[test]
fn every_data_fixture_goes_through_the_frame_path() {
    let mut events = 0;
    for text in FIXTURES.iter() {
        let endpoint = if text.contains("\"creationTime\"") {
            Endpoint::Private
        } else {
            Endpoint::Public(Category::Linear)
        };
        if frame_path(endpoint, text).unwrap() {
            events += 1;
        }
    }
    assert!(events > 30, "{events} fixtures yielded events");
}
