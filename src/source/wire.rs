//! Bybit v5 WebSocket wire types: a light, borrowed head of every frame, enough to tell data
//! from control frames without parsing the data.
//!
//! Docs: <https://bybit-exchange.github.io/docs/v5/ws/connect>. A real data frame
//! (`tests/fixtures/bybit/linear_orderbook_1_delta.json` shape):
//!
//! ```json
//! {"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1696581023748,
//!  "data":{"s":"BTCUSDT","b":[],"a":[["27646.90","20.396"]],"u":42452160,"seq":88215706351}}
//! ```
//!
//! Control frames differ by endpoint (see `tests/fixtures/bybit/SOURCES.md`): a public pong is
//! `{"success":true,"ret_msg":"pong","conn_id":"…","op":"ping"}`, a private/option pong
//! `{"op":"pong","args":["1699766561376"],"conn_id":"…"}`, a spot subscribe ack
//! `{"success":true,"ret_msg":"subscribe","conn_id":"…","op":"subscribe"}` and an option ack
//! `{"success":true,"conn_id":"…","data":{"failTopics":[],"successTopics":["…"]},"type":"COMMAND_RESP"}`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The head of any Bybit frame; `data` stays raw.
#[derive(Debug, Deserialize)]
pub struct BybitHead<'a> {
    /// Present on data frames only.
    #[serde(borrow, default)]
    pub topic: Option<Cow<'a, str>>,
    /// `snapshot` / `delta` on data, `COMMAND_RESP` on option acks.
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// `ping` (public pong), `pong`, `auth`, `subscribe`, `unsubscribe`.
    #[serde(borrow, default)]
    pub op: Option<Cow<'a, str>>,
    /// Ack outcome.
    #[serde(default)]
    pub success: Option<bool>,
    /// Free text; may carry escapes (`args size \u003e10`), hence `Cow`.
    #[serde(borrow, default)]
    pub ret_msg: Option<Cow<'a, str>>,
    /// Echo of our `req_id`, when we sent one.
    #[serde(borrow, default)]
    pub req_id: Option<Cow<'a, str>>,
    /// The payload, untouched.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// `data` of an option `COMMAND_RESP` ack.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BybitCommandResp {
    /// Topics the request subscribed (or unsubscribed).
    pub success_topics: Vec<String>,
    /// Topics the request could not subscribe.
    pub fail_topics: Vec<String>,
}

/// The one field of an order-book `data` the source needs.
#[derive(Debug, Deserialize)]
pub struct BybitBookData {
    /// Per-topic update id; +1 per delta.
    pub u: u64,
}

/// What a frame is, for the source.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameKind<'a> {
    /// Has a `topic`: passed on untouched.
    Data { topic: Cow<'a, str> },
    /// Either pong shape.
    Pong,
    /// Answer to our `auth`.
    AuthAck { success: bool, ret_msg: String },
    /// Answer to a subscribe/unsubscribe.
    Ack(Ack),
    /// Not JSON, or no topic and no known op.
    Malformed,
}

/// A subscribe/unsubscribe answer, in whichever shape it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Matches our request, when echoed.
    pub req_id: Option<String>,
    /// Overall outcome.
    pub success: bool,
    /// Free text from Bybit (empty on success).
    pub ret_msg: String,
    /// Option shape only: per-topic outcome.
    pub success_topics: Option<Vec<String>>,
    /// Option shape only.
    pub fail_topics: Option<Vec<String>>,
}

/// Classifies one text frame with a borrowed parse of its head.
pub fn classify(text: &str) -> (FrameKind<'_>, Option<BybitHead<'_>>) {
    let Ok(head) = serde_json::from_str::<BybitHead<'_>>(text) else {
        return (FrameKind::Malformed, None);
    };
    if let Some(topic) = head.topic.clone() {
        return (FrameKind::Data { topic }, Some(head));
    }
    let op = head.op.as_deref().unwrap_or("");
    let ret_msg = head.ret_msg.as_deref().unwrap_or("");
    let kind = match (op, head.kind.as_deref()) {
        ("pong", _) => FrameKind::Pong,
        ("ping", _) if ret_msg == "pong" => FrameKind::Pong,
        ("auth", _) => FrameKind::AuthAck {
            success: head.success.unwrap_or(false),
            ret_msg: ret_msg.to_owned(),
        },
        ("subscribe" | "unsubscribe", _) => FrameKind::Ack(Ack {
            req_id: head.req_id.as_deref().map(str::to_owned),
            success: head.success.unwrap_or(false),
            ret_msg: ret_msg.to_owned(),
            success_topics: None,
            fail_topics: None,
        }),
        (_, Some("COMMAND_RESP")) => {
            let resp = head
                .data
                .and_then(|d| serde_json::from_str::<BybitCommandResp>(d.get()).ok())
                .unwrap_or_default();
            FrameKind::Ack(Ack {
                req_id: head.req_id.as_deref().map(str::to_owned),
                success: head.success.unwrap_or(false),
                ret_msg: ret_msg.to_owned(),
                success_topics: Some(resp.success_topics),
                fail_topics: Some(resp.fail_topics),
            })
        }
        _ => FrameKind::Malformed,
    };
    (kind, Some(head))
}

/// The `u` of an order-book frame's `data`, when present.
pub fn book_update_id(head: &BybitHead<'_>) -> Option<u64> {
    serde_json::from_str::<BybitBookData>(head.data?.get())
        .ok()
        .map(|d| d.u)
}

/// A `ping` op.
pub fn ping_request(req_id: &str) -> String {
    serde_json::json!({ "req_id": req_id, "op": "ping" }).to_string()
}

/// A `subscribe` or `unsubscribe` op.
pub fn topics_request(req_id: &str, op: &str, topics: &[String]) -> String {
    serde_json::json!({ "req_id": req_id, "op": op, "args": topics }).to_string()
}

#[cfg(test)]
mod tests {
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
            assert_eq!(classify(&fixture(name)).0, FrameKind::Pong, "{name}");
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
            match classify(&fixture(name)).0 {
                FrameKind::Ack(ack) => assert_eq!(ack.success, success, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let FrameKind::Ack(ack) = classify(&fixture("subscribe_failure_spot_args_size.json")).0
        else {
            unreachable!()
        };
        assert_eq!(ack.ret_msg, "args size >10");
        let FrameKind::Ack(ack) = classify(&fixture("subscribe_success_option.json")).0 else {
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
            classify(&fixture("auth_success.json")).0,
            FrameKind::AuthAck { success: true, .. }
        ));
        assert!(matches!(
            classify(&fixture("auth_failure.json")).0,
            FrameKind::AuthAck { success: false, .. }
        ));
        let wallet = fixture("wallet.json");
        assert!(matches!(classify(&wallet).0, FrameKind::Data { topic } if topic == "wallet"));
        assert_eq!(classify("not json{").0, FrameKind::Malformed);
        assert_eq!(classify(r#"{"hello":1}"#).0, FrameKind::Malformed);
        assert_eq!(classify("[1,2]").0, FrameKind::Malformed);
    }

    #[test]
    fn book_update_id_reads_data_u() {
        let text = fixture("linear_orderbook_1_delta.json");
        let (_, head) = classify(&text);
        assert!(book_update_id(&head.unwrap()).is_some());
    }
}
