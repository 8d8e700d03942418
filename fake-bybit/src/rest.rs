//! The fake's REST side: a small HTTP/1.1 server (GET, keep-alive) on its own port answering
//! Bybit v5 REST in Bybit's shapes (`retCode`, `retMsg`, `result`, `retExtInfo`, `time`), with
//! signature and timestamp checks, cursor pagination, the 7-day window rule and failure
//! controls.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

use super::{FAKE_API_KEY, FAKE_API_SECRET, State, account::Record};

const SEVEN_DAYS_MS: u64 = 7 * 24 * 3600 * 1000;
/// When a rate-limited answer says the limit resets (`X-Bapi-Limit-Reset-Timestamp`), from now.
const RATE_LIMIT_RESET_MS: u64 = 100;

/// What a REST failure control answers instead of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestFailure {
    /// HTTP 500 with a plain-text body.
    Http500,
    /// HTTP 429 with a plain-text body (an IP-level limit).
    Http429,
    /// HTTP 200 with `retCode` 10006 ("Too many visits!"), Bybit's rate-limit answer.
    RateLimited,
}

/// One REST request the fake answered (for assertions).
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// URL path, e.g. `/v5/execution/list`.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// HTTP status answered.
    pub status: u16,
    /// `retCode` answered (`None` for a non-JSON answer).
    pub ret_code: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct RestState {
    /// The failure answered and for how many more requests (`None`: until cleared).
    pub failure: Option<(RestFailure, Option<usize>)>,
    pub log: Vec<RestRequest>,
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let _ = tcp.set_nodelay(true);
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve(tcp, state) => {}
            }
        });
    }
}

async fn serve(tcp: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(tcp);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let (method, target) = (method.to_owned(), target.to_owned());
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(1 << 20);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let (status, text, extra) = answer(&state, &method, path, query, &headers);
        let reason = if status == 200 { "OK" } else { "Error" };
        let kind = if status == 200 {
            "application/json"
        } else {
            "text/plain"
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n{extra}Content-Length: {}\r\n\r\n",
            text.len()
        );
        let tcp = reader.get_mut();
        if tcp.write_all(head.as_bytes()).await.is_err()
            || tcp.write_all(text.as_bytes()).await.is_err()
            || tcp.flush().await.is_err()
        {
            return;
        }
    }
}

fn answer(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
) -> (u16, String, String) {
    let mut st = lock(state);
    let now = st.rules.now_ms();
    let failure = st.rest.failure;
    let mut extra = String::new();
    let (status, text) = if let Some((f, left)) = failure {
        st.rest.failure = match left {
            Some(n) if n <= 1 => None,
            Some(n) => Some((f, Some(n - 1))),
            None => Some((f, None)),
        };
        if f != RestFailure::Http500 {
            // Bybit's rate-limit headers: none left, the limit resets in 100 ms.
            extra = format!(
                "X-Bapi-Limit: 10\r\nX-Bapi-Limit-Status: 0\r\nX-Bapi-Limit-Reset-Timestamp: {}\r\n",
                now + RATE_LIMIT_RESET_MS
            );
        }
        match f {
            RestFailure::Http500 => (500, "Internal Server Error".to_owned()),
            RestFailure::Http429 => (429, "Too Many Requests".to_owned()),
            RestFailure::RateLimited => (200, envelope(10006, "Too many visits!", json!({}), now)),
        }
    } else if method != "GET" {
        (404, "Not Found".to_owned())
    } else {
        route(&st, path, query, headers, now)
    };
    let ret_code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("retCode").and_then(Value::as_i64));
    st.rest.log.push(RestRequest {
        path: path.to_owned(),
        query: query.to_owned(),
        status,
        ret_code,
    });
    (status, text, extra)
}

fn envelope(code: i64, msg: &str, result: Value, now: u64) -> String {
    json!({"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now})
        .to_string()
}

fn params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((k.to_owned(), url_decode(v)?))
        })
        .collect()
}

fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Bybit's REST signature: hex HMAC-SHA256 over `timestamp + apiKey + recvWindow + query`.
pub fn rest_signature(
    secret: &str,
    timestamp: u64,
    api_key: &str,
    recv_window: u64,
    query: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}{api_key}{recv_window}{query}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the `X-BAPI-*` headers as Bybit does; `Err((retCode, retMsg))` when refused.
fn check_auth(
    headers: &HashMap<String, String>,
    query: &str,
    now: u64,
) -> Result<(), (i64, String)> {
    let key = headers
        .get("x-bapi-api-key")
        .map(String::as_str)
        .unwrap_or("");
    if key.is_empty() {
        return Err((10003, "API key is invalid.".into()));
    }
    if key != FAKE_API_KEY {
        return Err((10003, "API key is invalid.".into()));
    }
    let ts = headers
        .get("x-bapi-timestamp")
        .and_then(|v| v.parse::<u64>().ok());
    let Some(ts) = ts else {
        return Err((10002, "invalid request, please check your timestamp".into()));
    };
    let recv = headers
        .get("x-bapi-recv-window")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(5000);
    // Bybit's rule: server_time - recv_window <= timestamp < server_time + 1000.
    if ts + recv < now || ts >= now + 1000 {
        return Err((
            10002,
            format!(
                "invalid request, please check your server timestamp or recv_window param. req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv}]"
            ),
        ));
    }
    let sign = headers.get("x-bapi-sign").map(String::as_str).unwrap_or("");
    let origin = format!("{ts}{key}{recv}{query}");
    if sign != rest_signature(FAKE_API_SECRET, ts, key, recv, query) {
        return Err((10004, format!("error sign! origin_string[{origin}]")));
    }
    Ok(())
}

fn route(
    st: &State,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    now: u64,
) -> (u16, String) {
    let p = params(query);
    let ok = |result: Value| (200, envelope(0, "OK", result, now));
    let err = |code: i64, msg: &str| (200, envelope(code, msg, json!({}), now));
    match path {
        "/v5/market/time" => ok(json!({
            "timeSecond": (now / 1000).to_string(),
            "timeNano": (u128::from(now) * 1_000_000).to_string(),
        })),
        "/v5/market/recent-trade" => {
            let category = p.get("category").cloned().unwrap_or_default();
            let Some(symbol) = p.get("symbol") else {
                return err(10001, "params error: symbol is required");
            };
            let max = if category == "spot" { 60 } else { 1000 };
            let limit = p
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(if category == "spot" { 60 } else { 500 })
                .clamp(1, max);
            let list: Vec<Value> = st
                .tapes
                .get(&(category.clone(), symbol.clone()))
                .map(|t| t.kept.iter().rev().take(limit).cloned().collect())
                .unwrap_or_default();
            ok(json!({"category": category, "list": list}))
        }
        "/v5/execution/list"
        | "/v5/order/realtime"
        | "/v5/order/history"
        | "/v5/position/list"
        | "/v5/account/wallet-balance" => {
            if let Err((code, msg)) = check_auth(headers, query, now) {
                return err(code, &msg);
            }
            private(st, path, &p, now)
        }
        _ => (404, "Not Found".to_owned()),
    }
}

/// Filters, sorts (newest first by `seq`) and pages `records`; `cursor` is the `seq` of the
/// last item of the previous page.
fn page(
    mut records: Vec<&Record>,
    p: &HashMap<String, String>,
    default_limit: usize,
    max_limit: usize,
) -> Result<(Vec<Value>, String), (i64, String)> {
    let limit = match p.get("limit") {
        None => default_limit,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max_limit).contains(&n) => n,
            _ => {
                return Err((
                    10001,
                    format!("params error: limit must be in [1, {max_limit}]"),
                ));
            }
        },
    };
    let after = match p.get("cursor").filter(|c| !c.is_empty()) {
        None => u64::MAX,
        Some(c) => c
            .strip_prefix("page_")
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or((10001, "params error: invalid cursor".to_owned()))?,
    };
    records.sort_by_key(|r| std::cmp::Reverse(r.seq));
    let rest: Vec<&Record> = records.into_iter().filter(|r| r.seq < after).collect();
    let items: Vec<Value> = rest.iter().take(limit).map(|r| r.item.clone()).collect();
    let next = if rest.len() > limit {
        format!("page_{}", rest[limit - 1].seq)
    } else {
        String::new()
    };
    Ok((items, next))
}

/// The `[startTime, endTime]` window Bybit applies: both given → at most 7 days; one given →
/// 7 days from/to it; none → the last 7 days.
fn window(p: &HashMap<String, String>, now: u64) -> Result<(u64, u64), (i64, String)> {
    let get = |k: &str| p.get(k).and_then(|v| v.parse::<u64>().ok());
    match (get("startTime"), get("endTime")) {
        (Some(s), Some(e)) if e < s => Err((10001, "params error: endTime < startTime".into())),
        (Some(s), Some(e)) if e - s > SEVEN_DAYS_MS => Err((
            10001,
            "The time range between startTime and endTime cannot exceed 7 days".into(),
        )),
        (Some(s), Some(e)) => Ok((s, e)),
        (Some(s), None) => Ok((s, s + SEVEN_DAYS_MS)),
        (None, Some(e)) => Ok((e.saturating_sub(SEVEN_DAYS_MS), e)),
        (None, None) => Ok((now.saturating_sub(SEVEN_DAYS_MS), now)),
    }
}

fn matches(item: &Value, p: &HashMap<String, String>, keys: &[&str]) -> bool {
    keys.iter().all(|k| match p.get(*k) {
        Some(want) if !want.is_empty() => item.get(*k).and_then(Value::as_str) == Some(want),
        _ => true,
    })
}

fn private(st: &State, path: &str, p: &HashMap<String, String>, now: u64) -> (u16, String) {
    let acc = &st.account;
    let category = p.get("category").cloned().unwrap_or_default();
    let need_category = path != "/v5/account/wallet-balance";
    let err = |(code, msg): (i64, String)| (200, envelope(code, &msg, json!({}), now));
    if need_category && !["linear", "inverse", "spot", "option"].contains(&category.as_str()) {
        return err((10001, "params error: category is invalid".into()));
    }
    let cat_ok = |r: &&Record| r.item["category"].as_str() == Some(category.as_str());
    let result = match path {
        "/v5/execution/list" => window(p, now).and_then(|(s, e)| {
            let recs: Vec<&Record> = acc
                .executions
                .iter()
                .filter(cat_ok)
                .filter(|r| r.time >= s && r.time <= e)
                .filter(|r| matches(&r.item, p, &["symbol", "orderId"]))
                .collect();
            page(recs, p, 50, 100)
        }),
        "/v5/order/history" | "/v5/order/realtime" => {
            let realtime = path == "/v5/order/realtime";
            let closed_only = p.get("openOnly").map_or("0", String::as_str) != "0";
            let span = if realtime {
                Ok((0, u64::MAX))
            } else {
                window(p, now)
            };
            span.and_then(|(s, e)| {
                let recs: Vec<Record> = acc
                    .orders
                    .values()
                    .filter(|o| o.state["category"].as_str() == Some(category.as_str()))
                    .filter(|o| matches(&o.state, p, &["symbol", "orderId"]))
                    .filter(|o| {
                        let open = matches!(
                            o.state["orderStatus"].as_str(),
                            Some("New" | "PartiallyFilled")
                        );
                        if realtime { open != closed_only } else { true }
                    })
                    .filter(|o| {
                        let t = o.state["updatedTime"]
                            .as_str()
                            .and_then(|t| t.parse::<u64>().ok());
                        t.is_some_and(|t| t >= s && t <= e)
                    })
                    .map(|o| Record {
                        seq: o.created_seq,
                        time: 0,
                        item: o.state.clone(),
                    })
                    .collect();
                page(recs.iter().collect(), p, 20, 50)
            })
        }
        "/v5/position/list" => {
            let recs: Vec<&Record> = acc
                .positions
                .values()
                .filter(cat_ok)
                .filter(|r| matches(&r.item, p, &["symbol"]))
                .collect();
            page(recs, p, 20, 200)
        }
        _ => {
            // wallet-balance
            let at = p.get("accountType").map_or("", String::as_str);
            if at != "UNIFIED" && at != "CONTRACT" {
                return err((10001, "accountType only support UNIFIED.".into()));
            }
            return (
                200,
                envelope(0, "OK", json!({"list": [acc.wallet_item()]}), now),
            );
        }
    };
    match result {
        Ok((list, cursor)) => (
            200,
            envelope(
                0,
                "OK",
                json!({"category": category, "list": list, "nextPageCursor": cursor}),
                now,
            ),
        ),
        Err(e) => err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(url_decode("a+b%26c").as_deref(), Some("a b&c"));
        assert_eq!(url_decode("%zz"), None);
        assert_eq!(url_decode("%4"), None);
        assert_eq!(params("x=1&y=page_3")["y"], "page_3");
    }

    #[test]
    fn windows_follow_bybits_seven_day_rule() {
        let now = 100 * SEVEN_DAYS_MS;
        assert_eq!(window(&p(&[]), now), Ok((now - SEVEN_DAYS_MS, now)));
        assert_eq!(
            window(&p(&[("startTime", "5")]), now),
            Ok((5, 5 + SEVEN_DAYS_MS))
        );
        let wide = SEVEN_DAYS_MS + 1;
        assert_eq!(
            window(
                &p(&[("startTime", "0"), ("endTime", &wide.to_string())]),
                now
            )
            .unwrap_err()
            .0,
            10001
        );
    }

    #[test]
    fn pages_are_newest_first_and_the_cursor_continues_without_repeats() {
        let recs: Vec<Record> = (1..=5)
            .map(|seq| Record {
                seq,
                time: seq,
                item: json!(seq),
            })
            .collect();
        let (first, cursor) = page(recs.iter().collect(), &p(&[("limit", "2")]), 20, 50).unwrap();
        assert_eq!(first, vec![json!(5), json!(4)]);
        let (second, cursor) = page(
            recs.iter().collect(),
            &p(&[("limit", "2"), ("cursor", &cursor)]),
            20,
            50,
        )
        .unwrap();
        assert_eq!(second, vec![json!(3), json!(2)]);
        let (last, end) = page(
            recs.iter().collect(),
            &p(&[("limit", "2"), ("cursor", &cursor)]),
            20,
            50,
        )
        .unwrap();
        assert_eq!((last, end.as_str()), (vec![json!(1)], ""));
        assert_eq!(
            page(recs.iter().collect(), &p(&[("limit", "0")]), 20, 50)
                .unwrap_err()
                .0,
            10001
        );
        assert_eq!(
            page(recs.iter().collect(), &p(&[("cursor", "junk")]), 20, 50)
                .unwrap_err()
                .0,
            10001
        );
    }
}
