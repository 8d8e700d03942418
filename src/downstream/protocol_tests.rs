use super::*;

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

#[test]
fn lists_and_req_ids_are_bounded() {
    let many: Vec<String> = (0..=MAX_LIST)
        .map(|i| format!("publicTrade.S{i}"))
        .collect();
    let text = json!({"op": "subscribe", "topics": many}).to_string();
    assert!(matches!(parse(&text), Command::Invalid(_)));
    let text = json!({"op": "subscribe", "topics": &many[..MAX_LIST]}).to_string();
    assert!(matches!(parse(&text), Command::Op { .. }));
    assert!(matches!(
        parse(r#"{"op":"ping","req_id":[1,2]}"#),
        Command::Invalid(_)
    ));
    assert_eq!(
        parse(r#"{"op":"ping","req_id":12}"#),
        Command::Op {
            op: OpCommand::Ping,
            req_id: Some(json!(12))
        }
    );
    let Command::Invalid(reply) = parse(&format!(r#"{{"op":"{}"}}"#, "x".repeat(10_000))) else {
        panic!("unknown op");
    };
    assert!(reply.len() < 400, "{reply}");
}
