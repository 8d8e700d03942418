//! Unit tests of the event key: every fixture's key, the fallbacks when markers are missing, and recovered frames.

use std::path::Path;

use super::*;
use crate::{
    event::{Category, Event, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
};

fn enrich(e: &mut Enricher, endpoint: Endpoint, text: &str) -> Event {
    let frame = RawFrame::parse(endpoint, 1, text.to_owned()).expect("a data frame");
    e.enrich(classify(decode(frame)))
}

/// The `key` field as a consumer reads it from the envelope.
fn envelope_key(ev: &Event) -> String {
    let v: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
    assert_eq!(v["recovered"], false);
    v["key"].as_str().unwrap().to_owned()
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bybit")
        .join(name);
    std::fs::read_to_string(path).unwrap().trim_end().to_owned()
}

/// Every data fixture, its endpoint and the key it must get.
const CASES: &[(&str, Endpoint, &str)] = {
    use Category::*;
    use Endpoint::*;
    &[
        // publicTrade: the first trade id
        (
            "linear_publicTrade.json",
            Public(Linear),
            "linear:publicTrade.BTCUSDT:2a74ac78-691c-5b54-9dbe-5aafe8364627",
        ),
        (
            "spot_publicTrade.json",
            Public(Spot),
            "spot:publicTrade.BTCUSDC:2240000000970262966",
        ),
        (
            "inverse_publicTrade.json",
            Public(Inverse),
            "inverse:publicTrade.BTCUSD:0cbf2330-952d-5d03-a462-4bf826c867af",
        ),
        (
            "option_publicTrade.json",
            Public(Option),
            "option:publicTrade.BTC:0404c393-8419-5bac-95c3-5fea28404754",
        ),
        // orderbook: u, `:s` for a snapshot
        (
            "linear_orderbook_1_delta.json",
            Public(Linear),
            "linear:orderbook.1.BTCUSDT:1188472",
        ),
        (
            "linear_orderbook_1_snapshot.json",
            Public(Linear),
            "linear:orderbook.1.BTCUSDT:14869255:s",
        ),
        (
            "linear_orderbook_50_delta.json",
            Public(Linear),
            "linear:orderbook.50.BTCUSDT:21111423",
        ),
        (
            "linear_orderbook_500_snapshot.json",
            Public(Linear),
            "linear:orderbook.500.XRPUSDT:20254869:s",
        ),
        (
            "spot_orderbook_1_delta.json",
            Public(Spot),
            "spot:orderbook.1.BTCUSDT:873489",
        ),
        (
            "spot_orderbook_1_snapshot.json",
            Public(Spot),
            "spot:orderbook.1.BTCUSDT:20404754:s",
        ),
        (
            "spot_orderbook_50_delta.json",
            Public(Spot),
            "spot:orderbook.50.BTCUSDT:2876701",
        ),
        (
            "spot_orderbook_50_snapshot.json",
            Public(Spot),
            "spot:orderbook.50.BTCUSDT:2876700:s",
        ),
        (
            "option_orderbook_25_snapshot.json",
            Public(Option),
            "option:orderbook.25.SOL-28APR23-30-C:24641:s",
        ),
        // tickers: cs, else ts
        (
            "linear_tickers_delta.json",
            Public(Linear),
            "linear:tickers.BTCUSDT:176530004279",
        ),
        (
            "linear_tickers_snapshot.json",
            Public(Linear),
            "linear:tickers.BTCUSDT:176530003895",
        ),
        (
            "inverse_tickers_snapshot.json",
            Public(Inverse),
            "inverse:tickers.BTCUSD:42159594212",
        ),
        (
            "spot_tickers.json",
            Public(Spot),
            "spot:tickers.BTCUSDT:64027791513",
        ),
        (
            "option_tickers.json",
            Public(Option),
            "option:tickers.BTC-28JUN24-60000-P:1715742949283",
        ),
        // kline: start:ts
        (
            "kline.json",
            Public(Linear),
            "linear:kline.1.BTCUSDT:1719667560000:1719667601380",
        ),
        // ts
        (
            "allLiquidation.json",
            Public(Linear),
            "linear:allLiquidation.PIPPINUSDT:1740480207578",
        ),
        (
            "liquidation_legacy.json",
            Public(Inverse),
            "inverse:liquidation.XRPUSD:1680673944093",
        ),
        (
            "insurance.json",
            Public(Linear),
            "linear:insurance.USDT:1747722930000",
        ),
        // private: the frame id, else topic:creationTime
        ("execution.json", Private, "100401071-20000-1253141306"),
        (
            "order_spot_partially_filled_canceled.json",
            Private,
            "100401071-20000-1253141306",
        ),
        (
            "execution_linear.json",
            Private,
            "104183676_XRPUSDT_19371741293",
        ),
        (
            "execution_fast.json",
            Private,
            "execution.fast:1774779351199",
        ),
        ("order.json", Private, "74199870_22004_157776604406"),
        (
            "order_linear.json",
            Private,
            "140894896_BTCPERP_37449201146",
        ),
        ("position.json", Private, "140894896_position_1774779351206"),
        (
            "wallet.json",
            Private,
            "100401071d62a16b0-cc3a-41d7-b473-086b6cde0036",
        ),
        (
            "wallet_classic_contract.json",
            Private,
            "1713588734196211293-1465508-BTCUSDT",
        ),
        (
            "greeks.json",
            Private,
            "592324fa945a30-2603-49a5-b865-21668c29f2a6",
        ),
    ]
};

#[test]
fn every_fixture_gets_its_key_and_two_enrichers_agree() {
    for (name, endpoint, want) in CASES {
        let text = fixture(name);
        // Two enrichers, as two processes; the second has seen another frame first.
        let (mut one, mut two) = (Enricher::default(), Enricher::default());
        enrich(&mut two, *endpoint, &text);
        let a = enrich(&mut one, *endpoint, &text);
        let b = enrich(&mut two, *endpoint, &text);
        assert_ne!(a.id, b.id, "{name}");
        assert_eq!(a.key(), b.key(), "{name}");
        assert_eq!(envelope_key(&a), a.key(), "{name}");
        assert_eq!(envelope_key(&b), a.key(), "{name}");
        assert!(!a.recovered(), "{name}");
        assert_eq!(a.key(), *want, "{name}");
    }
}

#[test]
fn every_data_fixture_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bybit");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") && fixture(&name).contains("\"topic\"") {
            assert!(CASES.iter().any(|c| c.0 == name), "no key case for {name}");
        }
    }
}

#[test]
fn missing_markers_fall_back_and_missing_numbers_are_null() {
    let linear = Endpoint::Public(Category::Linear);
    let cases = [
        // TC0: a trade frame without `i`: ts
        (
            linear,
            r#"{"topic":"publicTrade.X","ts":5,"data":[{"p":"1"}]}"#,
            "linear:publicTrade.X:5",
        ),
        // TC1: an order-book snapshot without `u`: ts, still `:s`
        (
            linear,
            r#"{"topic":"orderbook.1.X","type":"snapshot","ts":6,"data":{}}"#,
            "linear:orderbook.1.X:6:s",
        ),
        // TC2: a kline without `start` nor `ts`
        (
            linear,
            r#"{"topic":"kline.1.X","data":[{}]}"#,
            "linear:kline.1.X:null:null",
        ),
        // TC3: a private frame without `id` nor `creationTime`
        (
            Endpoint::Private,
            r#"{"topic":"order","data":[]}"#,
            "order:null",
        ),
        // TC4: an escaped topic (the serde path): the envelope escapes what it must
        (
            linear,
            r#"{"topic":"a\"b\u002e\\c","ts":7,"data":1}"#,
            "linear:a\"b.\\c:7",
        ),
        // TC5: an escaped trade id
        (
            linear,
            r#"{"topic":"publicTrade.X","ts":5,"data":[{"i":"q\"\u0041"}]}"#,
            "linear:publicTrade.X:q\"A",
        ),
    ];
    for (endpoint, text, want) in cases {
        let ev = enrich(&mut Enricher::default(), endpoint, text);
        assert_eq!(ev.key(), want, "{text}");
        assert_eq!(envelope_key(&ev), want, "{text}");
    }
}

#[test]
fn a_recovered_frame_carries_its_given_key_and_shares_the_seq_counter() {
    let mut e = Enricher::default();
    let live = fixture("execution_linear.json");
    let first = enrich(&mut e, Endpoint::Private, &live);
    let text = r#"{"id":"r1","topic":"execution","type":"recovery","creationTime":1700000000000,"data":[{"execId":"e1"}]}"#;
    for (key, json) in [
        ("execution:e1", "\"execution:e1\""),
        ("odd\"key", "\"odd\\\"key\""),
    ] {
        let frame =
            RawFrame::recovered(Endpoint::Private, 1, text.to_owned(), key.to_owned()).unwrap();
        assert!(frame.is_recovered());
        let ev = e.enrich(classify(decode(frame)));
        assert_eq!(ev.key(), key);
        assert!(ev.recovered());
        let body = std::str::from_utf8(&ev.json).unwrap();
        assert!(
            body.contains(&format!(",\"key\":{json},\"recovered\":true,\"data\":")),
            "{body}"
        );
        let v: serde_json::Value = serde_json::from_slice(&ev.json).unwrap();
        assert_eq!(v["key"], key);
        assert_eq!(v["type"], "recovery");
        assert_eq!(v["exchange_ts"], 1_700_000_000_000_i64);
        assert!(ev.seq > first.seq);
    }
    assert!(
        !RawFrame::parse(Endpoint::Private, 1, text)
            .unwrap()
            .is_recovered()
    );
    assert!(
        RawFrame::recovered(Endpoint::Private, 1, "{}".into(), "k".into()).is_err(),
        "not a data frame"
    );
}
