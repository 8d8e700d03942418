use super::*;

const LINEAR: Endpoint = Endpoint::Public(Category::Linear);

struct TestCase {
    input: (&'static str, Option<Category>, bool),
    expected: Result<(Endpoint, &'static str), &'static str>,
}

#[test]
fn topics_map_to_registry_keys_or_are_refused() {
    let cases = [
        // TC0: trades default to linear
        TestCase {
            input: ("publicTrade.BTCUSDT", None, false),
            expected: Ok((LINEAR, "publicTrade.BTCUSDT")),
        },
        // TC1: category is honoured
        TestCase {
            input: ("orderbook.50.BTCUSDT", Some(Category::Spot), false),
            expected: Ok((Endpoint::Public(Category::Spot), "orderbook.50.BTCUSDT")),
        },
        // TC2: depth not offered
        TestCase {
            input: ("orderbook.7.BTCUSDT", None, false),
            expected: Err("invalid"),
        },
        // TC3: unknown prefix
        TestCase {
            input: ("trade.BTCUSDT", None, false),
            expected: Err("unknown"),
        },
        // TC4: private without credentials
        TestCase {
            input: ("order", None, false),
            expected: Err("private"),
        },
        // TC5: private with credentials ignores the category
        TestCase {
            input: ("wallet", Some(Category::Linear), true),
            expected: Ok((Endpoint::Private, "wallet")),
        },
        // TC6: category-scoped private topic
        TestCase {
            input: ("order.linear", None, true),
            expected: Ok((Endpoint::Private, "order.linear")),
        },
        // TC7: too long
        TestCase {
            input: (
                "publicTrade.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                None,
                false,
            ),
            expected: Err("length"),
        },
        // TC8: lowercase symbol
        TestCase {
            input: ("tickers.btcusdt", None, false),
            expected: Err("invalid"),
        },
        // TC9: kline
        TestCase {
            input: ("kline.5.ETHUSDT", Some(Category::Inverse), false),
            expected: Ok((Endpoint::Public(Category::Inverse), "kline.5.ETHUSDT")),
        },
        // TC10: execution.fast
        TestCase {
            input: ("execution.fast", None, true),
            expected: Ok((Endpoint::Private, "execution.fast")),
        },
    ];
    for (i, tc) in cases.iter().enumerate() {
        let (topic, cat, private) = tc.input;
        let got = topic_key(topic, cat, private)
            .map(|k| (k.endpoint, k.topic))
            .map_err(|e| match e {
                ProtocolError::BadLength(_) => "length",
                ProtocolError::UnknownTopic(_) => "unknown",
                ProtocolError::Invalid { .. } => "invalid",
                ProtocolError::PrivateUnavailable(_) => "private",
            });
        let expected = tc.expected.map(|(e, t)| (e, t.to_owned()));
        assert_eq!(got, expected, "TC{i}");
    }
}

#[test]
fn both_dialects_parse_and_garbage_gets_an_error_reply() {
    assert_eq!(
        parse(r#"{"action":"subscribe","symbols":["btcusdt"]}"#),
        Command::Action(ActionCommand::Subscribe(vec!["BTCUSDT".into()]))
    );
    assert_eq!(
        parse(r#"{"op":"ping"}"#),
        Command::Op {
            op: OpCommand::Ping,
            req_id: None
        }
    );
    assert_eq!(
        parse(r#"{"op":"subscribe","topics":["wallet"],"category":"spot","req_id":"7"}"#),
        Command::Op {
            op: OpCommand::Subscribe {
                topics: vec!["wallet".into()],
                category: Some(Category::Spot)
            },
            req_id: Some(json!("7"))
        }
    );
    for bad in [
        "not json",
        "[1]",
        r#"{"op":"dance"}"#,
        r#"{"op":"subscribe"}"#,
    ] {
        let Command::Invalid(reply) = parse(bad) else {
            panic!("{bad} should be invalid");
        };
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["success"], false, "{bad}");
    }
    let Command::Invalid(reply) = parse(r#"{"action":"dance"}"#) else {
        panic!("unknown action is invalid");
    };
    assert!(reply.contains(r#""type":"error""#));
}
