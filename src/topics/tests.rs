use super::*;

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
