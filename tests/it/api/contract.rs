//! The OpenAPI document as generated clients read it (issue 12): no `allOf` that wraps a `$ref`
//! with a sibling schema (openapi-python-client: "Cannot take allOf a non-object"), no `*Dto`
//! schema names, and every field the gateway sends as `null` declared nullable. The full run
//! with schemathesis and generated clients is `tools/contract/run.sh` (in `.ci/run`).

use super::*;

fn document() -> Value {
    serde_json::from_str(&ws_gateway::api::openapi_json()).unwrap()
}

/// Every `allOf` in `v`, with its JSON pointer.
fn all_ofs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            if let Some(a) = m.get("allOf") {
                out.push((at.clone(), a));
            }
            for (k, x) in m {
                all_ofs(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                all_ofs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn an_all_of_holds_exactly_one_reference_and_no_schema_is_named_dto() {
    let doc = document();
    let mut found = Vec::new();
    all_ofs(&doc, String::new(), &mut found);
    for (at, all_of) in &found {
        let items = all_of.as_array().unwrap();
        assert!(
            items.len() == 1
                && items[0].get("$ref").is_some()
                && items[0].as_object().unwrap().len() == 1,
            "{at}: allOf must be one bare $ref (generators refuse a $ref merged with a schema): {all_of}"
        );
    }
    let names: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    for n in [
        "Subscription",
        "Health",
        "Category",
        "ChannelType",
        "SubscriptionStatus",
    ] {
        assert!(
            names.iter().any(|x| *x == n),
            "schema {n} missing: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.ends_with("Dto")),
        "schema names end in Dto: {names:?}"
    );
}

/// The schema `s` points at, through a `$ref` or a one-`$ref` `allOf`, with the outer
/// `nullable` (the `nullable` that counts is the one beside the `$ref`, not inside the target).
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> (&'a Value, bool) {
    let nullable = s["nullable"] == true;
    let target = s
        .get("$ref")
        .or_else(|| s.get("allOf").map(|a| &a[0]["$ref"]))
        .and_then(Value::as_str);
    match target {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            (&doc["components"]["schemas"][name], nullable)
        }
        None => (s, nullable),
    }
}

/// Walks a response body against its schema: every `null` must be declared nullable, every
/// field sent must be declared, every required field sent.
fn check_nulls(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let (s, nullable) = resolve(doc, schema);
    match value {
        Value::Null if !nullable => {
            errors.push(format!("{at}: null, schema not nullable: {schema}"))
        }
        Value::Object(m) => {
            let props = s["properties"].as_object().cloned().unwrap_or_default();
            for r in s["required"].as_array().into_iter().flatten() {
                if !m.contains_key(r.as_str().unwrap()) {
                    errors.push(format!("{at}: required `{r}` absent"));
                }
            }
            for (k, v) in m {
                match props.get(k) {
                    Some(p) => check_nulls(doc, p, v, &format!("{at}.{k}"), errors),
                    None => errors.push(format!("{at}: `{k}` sent but not declared")),
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_nulls(doc, &s["items"], v, &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: StatusCode) -> &'a Value {
    &doc["paths"][path][method]["responses"][status.as_str()]["content"]["application/json; charset=utf-8"]
        ["schema"]
}

#[tokio::test]
async fn every_null_the_gateway_sends_is_declared_nullable() {
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(
        TestConfig::default()
            .var("DATABASE_URL", sqlite_url(dir.path()))
            .var("BYBIT_WS_URL", silent_bybit_url())
            .var("BYBIT_REST_URL", "http://127.0.0.1:9"),
    )
    .await;
    let mut errors = Vec::new();
    let mut checked = 0;
    let mut check = |path: &str, method: &str, status: StatusCode, body: &Value| {
        let schema = response_schema(&doc, path, method, status);
        assert!(
            !schema.is_null(),
            "{method} {path} {status}: no JSON schema declared"
        );
        check_nulls(&doc, schema, body, &format!("{method} {path}"), &mut errors);
        checked += 1;
    };

    // A public subscription never acknowledged: category set, status_message and last_event_at
    // null. A balance subscription: category and symbol null.
    let (s, sub) = post(
        &app,
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "contract"}),
    )
    .await;
    check("/api/v1/subscriptions", "post", s, &sub);
    assert!(
        sub["status_message"].is_null() && sub["last_event_at"].is_null(),
        "{sub}"
    );
    let id = sub["id"].as_str().unwrap();
    let (s, list) = get(&app, "/api/v1/subscriptions").await;
    check("/api/v1/subscriptions", "get", s, &list);
    let (s, one) = get(&app, &format!("/api/v1/subscriptions/{id}")).await;
    check("/api/v1/subscriptions/{id}", "get", s, &one);
    let (s, gone) = delete(&app, &format!("/api/v1/subscriptions/{id}")).await;
    check("/api/v1/subscriptions/{id}", "delete", s, &gone);

    // No wallet event yet: margin null. Health before any pong: last_heartbeat_at null.
    let (s, balances) = get(&app, "/api/v1/balances").await;
    check("/api/v1/balances", "get", s, &balances);
    assert!(balances["margin"].is_null(), "{balances}");
    let (s, health) = get(&app, "/health").await;
    check("/health", "get", s, &health);
    assert!(health["last_heartbeat_at"].is_null(), "{health}");
    let (s, ready) = get(&app, "/ready").await;
    check("/ready", "get", s, &ready);

    assert_eq!(checked, 7);
    assert!(
        errors.is_empty(),
        "the document does not declare what is sent:\n{}",
        errors.join("\n")
    );
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_subscription_without_category_or_symbol_is_declared_too() {
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(with_credentials(&sqlite_url(dir.path()))).await;
    let (s, balance) = post(
        &app,
        json!({"channel_type": "balance", "requesting_service": "contract"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{balance}");
    assert!(
        balance["category"].is_null() && balance["symbol"].is_null(),
        "{balance}"
    );
    let mut errors = Vec::new();
    let schema = response_schema(&doc, "/api/v1/subscriptions", "post", s);
    check_nulls(
        &doc,
        schema,
        &balance,
        "POST /api/v1/subscriptions",
        &mut errors,
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    app.shutdown().await.expect("clean stop");
}
