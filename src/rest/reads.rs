//! The reads the gateway makes: cursor pagination, 7-day windows, and one method per Bybit
//! endpoint it uses (executions, order history, open orders, positions, wallet, recent trades).

use serde_json::Value;

use super::{MAX_WINDOW, RestClient, RestError, endpoints};

impl RestClient {
    /// Follows `nextPageCursor` from the first page to the last; items in Bybit's order.
    pub async fn list_all(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
    ) -> Result<Vec<Value>, RestError> {
        let mut items = Vec::new();
        let mut cursor = String::new();
        for _ in 0..self.inner.policy.max_pages {
            let mut p: Vec<(&str, String)> = params.to_vec();
            if !cursor.is_empty() {
                p.push(("cursor", cursor.clone()));
            }
            let result = self.get(endpoint, &p, true).await?;
            let list = result
                .get("list")
                .and_then(Value::as_array)
                .ok_or_else(|| RestError::BadAnswer {
                    endpoint,
                    reason: "result without list".into(),
                })?;
            items.extend(list.iter().cloned());
            cursor = result
                .get("nextPageCursor")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if cursor.is_empty() || list.is_empty() {
                return Ok(items);
            }
        }
        Err(RestError::BadAnswer {
            endpoint,
            reason: format!(
                "pagination did not end after {} pages",
                self.inner.policy.max_pages
            ),
        })
    }

    /// Every page of `endpoint` for `[start_ms, end_ms]`, split into windows of at most 7 days.
    async fn windowed(
        &self,
        endpoint: &'static str,
        params: &[(&str, String)],
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<Value>, RestError> {
        let span = u64::try_from(MAX_WINDOW.as_millis()).unwrap_or(u64::MAX);
        let mut items = Vec::new();
        let mut from = start_ms;
        while from <= end_ms {
            let to = end_ms.min(from.saturating_add(span));
            let mut p: Vec<(&str, String)> = params.to_vec();
            p.push(("startTime", from.to_string()));
            p.push(("endTime", to.to_string()));
            items.extend(self.list_all(endpoint, &p).await?);
            if to == end_ms {
                break;
            }
            from = to + 1;
        }
        Ok(items)
    }

    /// Executions of `category` with `execTime` in `[start_ms, end_ms]`, oldest first.
    pub async fn executions(
        &self,
        category: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<Value>, RestError> {
        let p = [("category", category.to_owned()), ("limit", "100".into())];
        let mut items = self
            .windowed(endpoints::EXECUTIONS, &p, start_ms, end_ms)
            .await?;
        sort_by_time(&mut items, "execTime");
        Ok(items)
    }

    /// Orders of `category` from the history in `[start_ms, end_ms]` (latest state of each),
    /// oldest `updatedTime` first.
    pub async fn order_history(
        &self,
        category: &str,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<Value>, RestError> {
        let p = [("category", category.to_owned()), ("limit", "50".into())];
        let mut items = self
            .windowed(endpoints::ORDERS_HISTORY, &p, start_ms, end_ms)
            .await?;
        sort_by_time(&mut items, "updatedTime");
        Ok(items)
    }

    /// Open orders of `category` (`/v5/order/realtime`, `openOnly=0`), oldest `updatedTime` first.
    /// Bybit requires `settleCoin` or `symbol` for linear/inverse without one: pass it in `extra`.
    pub async fn open_orders(
        &self,
        category: &str,
        extra: &[(&str, String)],
    ) -> Result<Vec<Value>, RestError> {
        let mut p = vec![
            ("category", category.to_owned()),
            ("openOnly", "0".into()),
            ("limit", "50".into()),
        ];
        p.extend(extra.iter().cloned());
        let mut items = self.list_all(endpoints::ORDERS_REALTIME, &p).await?;
        sort_by_time(&mut items, "updatedTime");
        Ok(items)
    }

    /// Positions of `category` (`extra`: `settleCoin` or `symbol`, which Bybit requires for
    /// linear).
    pub async fn positions(
        &self,
        category: &str,
        extra: &[(&str, String)],
    ) -> Result<Vec<Value>, RestError> {
        let mut p = vec![("category", category.to_owned()), ("limit", "200".into())];
        p.extend(extra.iter().cloned());
        self.list_all(endpoints::POSITIONS, &p).await
    }

    /// The wallet (`accountType`, e.g. `UNIFIED`): `result.list`, one item per account.
    pub async fn wallet_balance(&self, account_type: &str) -> Result<Vec<Value>, RestError> {
        let result = self
            .get(
                endpoints::WALLET,
                &[("accountType", account_type.to_owned())],
                true,
            )
            .await?;
        Ok(result
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// The most recent public trades (REST shape: `execId`, `time`, `price`, `size`, `side`,
    /// ...), newest first as Bybit answers; `limit` up to 1000 (spot 60).
    pub async fn recent_trades(
        &self,
        category: &str,
        symbol: &str,
        limit: u32,
    ) -> Result<Vec<Value>, RestError> {
        let p = [
            ("category", category.to_owned()),
            ("symbol", symbol.to_owned()),
            ("limit", limit.to_string()),
        ];
        let result = self.get(endpoints::RECENT_TRADE, &p, false).await?;
        Ok(result
            .get("list")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

/// A millisecond field Bybit sends as a string (or a number).
pub fn time_field(item: &Value, field: &str) -> Option<u64> {
    match item.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn sort_by_time(items: &mut [Value], field: &str) {
    items.sort_by_key(|v| time_field(v, field).unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_fields_parse_strings_and_numbers() {
        let v = serde_json::json!({"a": "17", "b": 18, "c": true});
        assert_eq!(time_field(&v, "a"), Some(17));
        assert_eq!(time_field(&v, "b"), Some(18));
        assert_eq!(time_field(&v, "c"), None);
    }
}
