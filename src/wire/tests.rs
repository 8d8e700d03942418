use super::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/bybit/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_pong_shape_is_a_pong() {
    for name in [
        "pong_spot.json",
        "pong_spot_with_req_id.json",
        "pong_linear.json",
        "pong_option.json",
        "private_pong.json",
        "private_pong_with_req_id.json",
    ] {
        assert_eq!(parse(&fixture(name)), Frame::Pong, "{name}");
    }
}

#[test]
fn every_ack_shape_is_an_ack_with_its_outcome() {
    // TC0: (fixture, success)
    for (name, success) in [
        ("subscribe_success_spot.json", true),
        ("subscribe_success_linear.json", true),
        ("subscribe_success_private.json", true),
        ("subscribe_success_private_with_req_id.json", true),
        ("subscribe_success_option.json", true),
        ("unsubscribe_success.json", true),
        ("subscribe_failure.json", false),
        ("subscribe_failure_spot_args_size.json", false),
    ] {
        match parse(&fixture(name)) {
            Frame::Ack(ack) => assert_eq!(ack.success, success, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let Frame::Ack(ack) = parse(&fixture("subscribe_failure_spot_args_size.json")) else {
        unreachable!()
    };
    assert_eq!(ack.ret_msg, "args size >10");
    let Frame::Ack(ack) = parse(&fixture("subscribe_success_option.json")) else {
        unreachable!()
    };
    assert_eq!(
        ack.success_topics.unwrap(),
        ["orderbook.100.BTC-6JAN23-18000-C"]
    );
}

#[test]
fn auth_answers_data_frames_and_garbage_are_told_apart() {
    assert!(matches!(
        parse(&fixture("auth_success.json")),
        Frame::AuthAck { success: true, .. }
    ));
    assert!(matches!(
        parse(&fixture("auth_failure.json")),
        Frame::AuthAck { success: false, .. }
    ));
    let wallet = fixture("wallet.json");
    assert!(matches!(parse(&wallet), Frame::Data(h) if h.topic(&wallet) == "wallet"));
    assert_eq!(parse("not json{"), Frame::Malformed { data: false });
    assert_eq!(parse(r#"{"hello":1}"#), Frame::Malformed { data: false });
    assert_eq!(parse("[1,2]"), Frame::Malformed { data: false });
    assert_eq!(
        parse(r#"{"topic":"x","ts":1}"#),
        Frame::Malformed { data: true }
    );
    assert_eq!(
        parse(r#"{"topic":"x","ts":1.5,"data":1}"#),
        Frame::Malformed { data: true }
    );
}

#[test]
fn the_head_locates_topic_type_times_data_and_u() {
    let text = fixture("linear_orderbook_1_delta.json");
    let text = text.trim_end();
    let Frame::Data(head) = parse(text) else {
        panic!("not data")
    };
    assert_eq!(head.topic(text), "orderbook.1.BTCUSDT");
    assert_eq!(head.kind(text), Some("delta"));
    assert_eq!(head.ts, Some(1_682_092_584_425));
    assert_eq!(head.creation_time, None);
    assert!(head.data(text).starts_with("{\"s\":\"BTCUSDT\""));
    assert!(head.data(text).ends_with('}'));
    assert!(head.u.is_some());
    let wallet = fixture("wallet.json");
    let head = parse_data(&wallet).unwrap();
    assert_eq!(head.creation_time, Some(1_699_764_599_844));
    assert_eq!(head.u, None);
}

/// Every fixture frame and recording line.
fn every_fixture_frame() -> Vec<String> {
    let dir = format!("{}/tests/fixtures/bybit", env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            let text = std::fs::read_to_string(path).unwrap();
            out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
    }
    out
}

/// Odd but valid and invalid texts the scanner must answer like serde.
const EDGE_CASES: &[&str] = &[
    r#"{"topic":"a.b","data":{}}"#,
    r#" { "topic" : "a.b" , "type" : null , "ts" : null , "data" : [ ] } "#,
    r#"{"topic":"a\u002eb","data":1}"#,
    r#"{"topic":"a","type":"d\"x","data":1}"#,
    r#"{"top\u0069c":"a","data":1}"#,
    r#"{"topic":"a","topic":"b","data":1}"#,
    r#"{"topic":"a","data":1,"data":2}"#,
    r#"{"topic":"a","ts":-0,"data":1}"#,
    r#"{"topic":"a","ts":01,"data":1}"#,
    r#"{"topic":"a","ts":1e3,"data":1}"#,
    r#"{"topic":"a","ts":99999999999999999999,"data":1}"#,
    r#"{"topic":"a","ts":"1","data":1}"#,
    r#"{"topic":"a","creationTime":5,"data":null}"#,
    r#"{"topic":"a","data":{"u":1,"u":2}}"#,
    r#"{"topic":"a","data":{"u":-1}}"#,
    r#"{"topic":"a","data":{"u":1.0}}"#,
    r#"{"topic":"a","data":{"\u0075":7}}"#,
    r#"{"topic":"a","data":{"x":{"u":3},"u":4}}"#,
    r#"{"topic":"a","data":"\ud800"}"#,
    r#"{"topic":"a","data":"tab	in string"}"#,
    r#"{"topic":"a","data":"bad \x escape"}"#,
    r#"{"topic":"a","data":[1,]}"#,
    r#"{"topic":"a","data":{"k":1,}}"#,
    r#"{"topic":"a","data":[1 2]}"#,
    r#"{"topic":"a","data":tru}"#,
    r#"{"topic":"a","data":-}"#,
    r#"{"topic":"a","data":1.}"#,
    r#"{"topic":"a","data":1.5e+}"#,
    r#"{"topic":"a","data":1}x"#,
    r#"{"topic":"a","data":1}}"#,
    r#"{"topic":"a","data":1,"op":"x"}"#,
    r#"{"topic":"a","data":1,"success":"x"}"#,
    r#"{"topic":1,"data":1}"#,
    r#"{"topic":null,"data":1}"#,
    r#"{"topic":"a","type":5,"data":1}"#,
    r#"{"topic":"é€","data":"😀"}"#,
    "{\"topic\":\"a\",\"data\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    r#"{"topic":"a","id":"x","cs":5,"data":[{"i":"t1","start":7},{"i":"t2"}]}"#,
    r#"{"topic":"a","id":"x","id":"y","data":1}"#,
    r#"{"topic":"a","id":"x\"y","data":1}"#,
    r#"{"topic":"a","id":5,"data":1}"#,
    r#"{"topic":"a","id":null,"cs":null,"data":1}"#,
    r#"{"topic":"a","cs":1,"cs":2,"data":1}"#,
    r#"{"topic":"a","cs":-0,"data":1}"#,
    r#"{"topic":"a","cs":1.5,"data":1}"#,
    r#"{"topic":"a","cs":"1","data":1}"#,
    r#"{"topic":"a","data":[{"i":"a","i":"b"}]}"#,
    r#"{"topic":"a","data":[{"i":"a\u0062"}]}"#,
    r#"{"topic":"a","data":[{"\u0069":"a"}]}"#,
    r#"{"topic":"a","data":[{"i":1,"start":"2"}]}"#,
    r#"{"topic":"a","data":[{"i":{"x":1},"start":null}]}"#,
    r#"{"topic":"a","data":[{"start":1,"start":2}]}"#,
    r#"{"topic":"a","data":[{"start":-0}]}"#,
    r#"{"topic":"a","data":[1,{"i":"a"}]}"#,
    r#"{"topic":"a","data":[[{"i":"a"}]]}"#,
    r#"{"topic":"a","data":[ { "i" : "a" , "start" : 3 } , 2 ]}"#,
    r#"{"topic":"a","data":{"i":"a","start":1}}"#,
    r#"{"topic":"a\u002eb","id":"x","cs":3,"data":[{"i":"q","start":9}]}"#,
    "",
    "{",
    "[]",
    "null",
];

#[test]
fn the_scanner_and_serde_agree_on_every_fixture_edge_case_and_truncation() {
    let mut texts: Vec<String> = every_fixture_frame();
    texts.extend(EDGE_CASES.iter().map(|s| (*s).to_owned()));
    /// The frame as values (serde may own a string the scanner located).
    fn view(text: &str, frame: Frame) -> String {
        match frame {
            Frame::Data(h) => format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                h.topic(text),
                h.kind(text),
                h.ts,
                h.creation_time,
                h.data_range(),
                h.u,
                h.id(text),
                h.cs,
                h.first_trade_id(text),
                h.first_start
            ),
            other => format!("{other:?}"),
        }
    }
    let same = |t: &str| assert_eq!(view(t, parse(t)), view(t, parse_with_serde(t)), "{t}");
    let mut checked = 0;
    for text in &texts {
        same(text);
        if text.len() > 1500 {
            continue;
        }
        // Every prefix, and every single-byte damage at a structural character.
        for (i, c) in text.char_indices() {
            let cut = &text[..i];
            same(cut);
            if text.len() < 700 && matches!(c, '{' | '}' | '[' | ']' | ',' | ':' | '"' | '.') {
                for with in ["", ",", "\"", "}", "x", "\\"] {
                    let damaged = format!("{}{with}{}", &text[..i], &text[i + c.len_utf8()..]);
                    same(&damaged);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000);
}
