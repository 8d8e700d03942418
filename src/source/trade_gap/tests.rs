//! Unit tests of trade-gap recovery: first and last trades of a frame, marks, the recovery plan and its chunks.

use super::*;
use serde_json::json;

fn rest(ids: std::ops::Range<u64>, time: impl Fn(u64) -> u64) -> Vec<Value> {
    ids.rev()
        .map(|i| {
            json!({"execId": i.to_string(), "symbol": "BTCUSDT", "price": "1",
            "size": "1", "side": "Buy", "time": time(i).to_string(), "isBlockTrade": false,
            "isRPITrade": false, "seq": i.to_string()})
        })
        .collect()
}

fn ids(plan: &Plan) -> Vec<u64> {
    plan.trades
        .iter()
        .map(|t| t["i"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn first_and_last_trades_are_read_from_the_data_text() {
    let data = r#"[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false},{"T":1672304486866,"s":"BTCUSDT","S":"Sell","v":"0.002","p":"16578.00","L":"MinusTick","i":"2290000000061666327","BT":false,"RPI":false,"seq":7}]"#;
    assert_eq!(
        first_trade(data),
        Some(("20f43950-d8dd-5b31-9112-a178eb6023af", 1_672_304_486_865))
    );
    assert_eq!(
        last_trade(data),
        Some(("2290000000061666327", 1_672_304_486_866))
    );
    let spaced = r#"[ { "i" : "7" , "T" : 5 } ]"#;
    assert_eq!(last_trade(spaced), Some(("7", 5)));
    // A value equal to the key's text is not the key; bad input never panics.
    assert_eq!(last_trade(r#"[{"s":"i","x":"T","i":"9"}]"#), Some(("9", 0)));
    for bad in [
        "",
        "[]",
        "[{}]",
        "{",
        "}",
        "}{",
        r#"[{"i":}]"#,
        r#"[{"i":"a"#,
        "[{\"i\"",
    ] {
        let _ = (first_trade(bad), last_trade(bad));
    }
    assert_eq!(last_trade("[]"), None);
}

#[test]
fn marks_follow_the_last_trade_of_each_frame() {
    let mut marks = TradeMarks::default();
    marks.note("publicTrade.X", r#"[{"T":1,"i":"1"},{"T":2,"i":"2"}]"#);
    marks.note("publicTrade.X", r#"[{"T":3,"i":"3"}]"#);
    assert_eq!(marks.get("publicTrade.X"), Some(&TradeMark::new("3", 3)));
    marks.forget("publicTrade.X");
    assert_eq!(marks.get("publicTrade.X"), None);
}

#[test]
fn the_trades_between_the_mark_and_the_first_live_one_are_recovered() {
    let list = rest(100..200, |i| 1_000 + i);
    let plan = plan(
        &list,
        &TradeMark::new("120", 1_120),
        Some(&TradeMark::new("180", 1_180)),
    );
    assert_eq!(ids(&plan), (121..180).collect::<Vec<_>>());
    assert_eq!(plan.lost, None);
    assert_eq!(plan.trades[0]["T"], json!(1_121));
    // No live trade yet: everything after the mark.
    let all = super::plan(&list, &TradeMark::new("190", 1_190), None);
    assert_eq!(ids(&all), (191..200).collect::<Vec<_>>());
    // Nothing missed.
    let none = super::plan(&list, &TradeMark::new("199", 1_199), None);
    assert!(none.trades.is_empty() && none.lost.is_none());
}

#[test]
fn what_rest_no_longer_has_is_counted_when_ids_are_sequential() {
    let list = rest(500..560, |i| 1_000 + i);
    let plan = plan(
        &list,
        &TradeMark::new("99", 1_099),
        Some(&TradeMark::new("550", 1_550)),
    );
    assert_eq!(ids(&plan), (500..550).collect::<Vec<_>>());
    assert_eq!(plan.lost, Some(Lost::Counted(400)));
    // Ids that are not numbers: one uncounted gap.
    let uuids: Vec<Value> = (0..3)
        .rev()
        .map(|k| json!({"execId": format!("id-{k}"), "time": (2_000 + k).to_string()}))
        .collect();
    let plan = super::plan(&uuids, &TradeMark::new("id-old", 1_000), None);
    assert_eq!(plan.trades.len(), 3);
    assert_eq!(plan.lost, Some(Lost::Uncounted));
}

#[test]
fn without_the_ids_the_cut_is_by_time() {
    let list = rest(10..20, |i| 1_000 + i / 2 * 2);
    // The mark is not in REST but REST reaches back past it: nothing lost.
    let plan = plan(
        &list,
        &TradeMark::new("x", 1_012),
        Some(&TradeMark::new("y", 1_016)),
    );
    assert_eq!(ids(&plan), vec![14, 15, 16, 17]);
    assert_eq!(plan.lost, None);
}

#[test]
fn recovered_frames_are_chunked_and_keyed_like_live_frames() {
    let trades: Vec<Value> = rest(1..251, |i| i)
        .iter()
        .rev()
        .map(recent_trade_to_ws)
        .collect();
    let endpoint = Endpoint::Public(Category::Linear);
    let frames = recovered_frames(
        endpoint,
        7,
        "publicTrade.BTCUSDT",
        &trades,
        TRADES_PER_EVENT,
    );
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].topic(), "publicTrade.BTCUSDT");
    let data: Vec<Value> = serde_json::from_str(frames[2].data()).unwrap();
    assert_eq!(data.len(), 50);
    assert_eq!(data[0]["i"], "201");
    assert_eq!(frames[2].head().ts, Some(250));
    assert!(frames.iter().all(RawFrame::is_recovered));
    assert_eq!(
        frames[1].recovered_key(),
        Some("linear:publicTrade.BTCUSDT:101")
    );
}
