use super::*;

const LINEAR: Endpoint = Endpoint::Public(Category::Linear);

struct ParseCase {
    input: (&'static str, Option<Category>, bool),
    expected: Result<(Endpoint, &'static str), &'static str>,
}

#[test]
fn topics_map_to_registry_keys_or_are_refused() {
    let cases = [
        // TC0: trades default to linear
        ParseCase {
            input: ("publicTrade.BTCUSDT", None, false),
            expected: Ok((LINEAR, "publicTrade.BTCUSDT")),
        },
        // TC1: category is honoured
        ParseCase {
            input: ("orderbook.50.BTCUSDT", Some(Category::Spot), false),
            expected: Ok((Endpoint::Public(Category::Spot), "orderbook.50.BTCUSDT")),
        },
        // TC2: depth not offered
        ParseCase {
            input: ("orderbook.7.BTCUSDT", None, false),
            expected: Err("invalid"),
        },
        // TC3: unknown prefix
        ParseCase {
            input: ("trade.BTCUSDT", None, false),
            expected: Err("unknown"),
        },
        // TC4: private without credentials
        ParseCase {
            input: ("order", None, false),
            expected: Err("private"),
        },
        // TC5: private with credentials ignores the category
        ParseCase {
            input: ("wallet", Some(Category::Linear), true),
            expected: Ok((Endpoint::Private, "wallet")),
        },
        // TC6: category-scoped private topic
        ParseCase {
            input: ("order.linear", None, true),
            expected: Ok((Endpoint::Private, "order.linear")),
        },
        // TC7: too long
        ParseCase {
            input: (
                "publicTrade.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                None,
                false,
            ),
            expected: Err("length"),
        },
        // TC8: lowercase symbol
        ParseCase {
            input: ("tickers.btcusdt", None, false),
            expected: Err("invalid"),
        },
        // TC9: kline
        ParseCase {
            input: ("kline.5.ETHUSDT", Some(Category::Inverse), false),
            expected: Ok((Endpoint::Public(Category::Inverse), "kline.5.ETHUSDT")),
        },
        // TC10: execution.fast
        ParseCase {
            input: ("execution.fast", None, true),
            expected: Ok((Endpoint::Private, "execution.fast")),
        },
    ];
    for (i, tc) in cases.iter().enumerate() {
        let (topic, cat, private) = tc.input;
        let got = parse_topic(topic, cat, private)
            .map(|k| (k.endpoint, k.topic))
            .map_err(|e| match e {
                ParseError::BadLength(_) => "length",
                ParseError::UnknownTopic(_) => "unknown",
                ParseError::Invalid { .. } => "invalid",
                ParseError::PrivateUnavailable(_) => "private",
            });
        let expected = tc.expected.map(|(e, t)| (e, t.to_owned()));
        assert_eq!(got, expected, "TC{i}");
    }
}

struct TestCase {
    input: (
        ChannelType,
        Option<Category>,
        Option<&'static str>,
        Option<u32>,
        Option<&'static str>,
    ),
    expected: Result<&'static str, &'static str>,
}

#[test]
fn requests_map_to_bybit_topics_or_name_the_bad_field() {
    use ChannelType::*;
    let cases = [
        // TC0: trades default to linear
        TestCase {
            input: (Trades, None, Some("BTCUSDT"), None, None),
            expected: Ok("publicTrade.BTCUSDT"),
        },
        // TC1: orderbook default depth 50
        TestCase {
            input: (Orderbook, Some(Category::Spot), Some("BTCUSDT"), None, None),
            expected: Ok("orderbook.50.BTCUSDT"),
        },
        // TC2: option orderbook defaults to 25
        TestCase {
            input: (
                Orderbook,
                Some(Category::Option),
                Some("BTC-30JUN23-30000-C"),
                None,
                None,
            ),
            expected: Ok("orderbook.25.BTC-30JUN23-30000-C"),
        },
        // TC3: bad depth
        TestCase {
            input: (Orderbook, None, Some("BTCUSDT"), Some(7), None),
            expected: Err("depth"),
        },
        // TC4: kline needs interval
        TestCase {
            input: (Kline, None, Some("BTCUSDT"), None, None),
            expected: Err("interval"),
        },
        // TC5: kline
        TestCase {
            input: (Kline, None, Some("BTCUSDT"), None, Some("D")),
            expected: Ok("kline.D.BTCUSDT"),
        },
        // TC6: missing symbol
        TestCase {
            input: (Ticker, None, None, None, None),
            expected: Err("symbol"),
        },
        // TC7: lowercase symbol rejected
        TestCase {
            input: (Ticker, None, Some("btcusdt"), None, None),
            expected: Err("symbol"),
        },
        // TC8: private all-in-one
        TestCase {
            input: (Order, None, None, None, None),
            expected: Ok("order"),
        },
        // TC9: private category-scoped
        TestCase {
            input: (Execution, Some(Category::Spot), None, None, None),
            expected: Ok("execution.spot"),
        },
        // TC10: balance
        TestCase {
            input: (Balance, None, None, None, None),
            expected: Ok("wallet"),
        },
        // TC11: liquidation not on spot
        TestCase {
            input: (
                Liquidation,
                Some(Category::Spot),
                Some("BTCUSDT"),
                None,
                None,
            ),
            expected: Err("category"),
        },
    ];
    for (i, tc) in cases.iter().enumerate() {
        let (c, cat, sym, depth, iv) = tc.input;
        let got = TopicSpec::new(c, cat, sym, depth, iv)
            .map(|s| s.topic())
            .map_err(|e| e.field());
        assert_eq!(got, tc.expected.map(String::from), "TC{i}");
    }
}

#[test]
fn a_subscription_and_its_events_share_one_routing_key() {
    let spec = TopicSpec::new(
        ChannelType::Trades,
        Some(Category::Spot),
        Some("BTCUSDT"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(spec.routing_key(), "trades.spot.BTCUSDT");
    assert_eq!(class_of(&spec.topic()), spec.class());
    let order = TopicSpec::new(ChannelType::Order, Some(Category::Linear), None, None, None);
    assert_eq!(order.unwrap().routing_key(), "orders.private");
    let linear = Endpoint::Public(Category::Linear);
    assert_eq!(
        routing_key(EventClass::Other, linear, Some(Category::Linear), None),
        "other.linear"
    );
    assert_eq!(
        routing_key(EventClass::Other, Endpoint::Private, None, None),
        "other.private"
    );
    assert_eq!(class_pattern(EventClass::Trades), "trades.#");
}

#[test]
fn a_routing_key_over_255_bytes_is_refused_naming_the_field() {
    assert!(check_routing_key(&"k".repeat(MAX_ROUTING_KEY)).is_ok());
    let e = check_routing_key(&"k".repeat(MAX_ROUTING_KEY + 1)).unwrap_err();
    assert_eq!(e, TopicError::RoutingKeyTooLong(256));
    assert_eq!(e.field(), "symbol");
    // The longest request the rules allow (40-character symbol) stays far below the limit.
    let spec = TopicSpec::new(
        ChannelType::Liquidation,
        Some(Category::Inverse),
        Some(&"A".repeat(40)),
        None,
        None,
    )
    .unwrap();
    assert!(spec.routing_key().len() <= MAX_ROUTING_KEY);
}
