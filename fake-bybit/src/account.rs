//! The fake's trading account and public trade tapes: one producer that feeds both the
//! WebSocket (frames pushed to connected, authed, subscribed sockets) and the REST endpoints
//! (records kept for `/v5/execution/list`, `/v5/order/*`, `/v5/position/list`,
//! `/v5/account/wallet-balance`, `/v5/market/recent-trade`). It keeps producing while no
//! socket is connected, as a real account keeps trading.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use serde_json::{Value, json};

use super::{Out, PRIVATE, State};

/// Recent trades kept per symbol (Bybit's REST keeps the last 1,000; spot answers 60).
pub const TRADES_KEPT: usize = 1000;

/// One REST-visible record: a creation sequence (for cursors), exchange time, the item.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub seq: u64,
    pub time: u64,
    pub item: Value,
}

/// One order: its latest state and when it was created (sequence, for stable cursors).
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub created_seq: u64,
    pub qty: f64,
    pub filled: f64,
    pub price: f64,
    pub state: Value,
}

#[derive(Debug, Default)]
pub(crate) struct AccountState {
    seq: u64,
    pub orders: BTreeMap<String, Order>,
    /// Every order update ever pushed (the `order` topic's items), oldest first.
    pub order_updates: Vec<Record>,
    pub executions: Vec<Record>,
    /// By (category, symbol).
    pub positions: BTreeMap<(String, String), Record>,
    /// Coin → wallet balance.
    pub balances: BTreeMap<String, f64>,
    pub wallet_time: u64,
}

impl AccountState {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The `wallet` item (UNIFIED account) in Bybit's shape, REST and WebSocket alike.
    pub fn wallet_item(&self) -> Value {
        let coins: Vec<Value> = self
            .balances
            .iter()
            .map(|(coin, bal)| {
                let b = fmt(*bal);
                json!({"coin": coin, "equity": b, "usdValue": b, "walletBalance": b,
                    "availableToWithdraw": b, "availableToBorrow": "", "borrowAmount": "0",
                    "accruedInterest": "0", "totalOrderIM": "0", "totalPositionIM": "0",
                    "totalPositionMM": "0", "unrealisedPnl": "0", "cumRealisedPnl": "0",
                    "bonus": "0", "collateralSwitch": true, "marginCollateral": true,
                    "locked": "0"})
            })
            .collect();
        let total = fmt(self.balances.values().sum());
        json!({"accountIMRate": "0", "accountMMRate": "0", "totalEquity": total,
            "totalWalletBalance": total, "totalMarginBalance": total,
            "totalAvailableBalance": total, "totalPerpUPL": "0", "totalInitialMargin": "0",
            "totalMaintenanceMargin": "0", "coin": coins, "accountLTV": "0",
            "accountType": "UNIFIED"})
    }
}

/// Public trades of one symbol: contiguous numeric ids, the last [`TRADES_KEPT`] kept.
#[derive(Debug, Default)]
pub(crate) struct Tape {
    pub next_id: u64,
    pub seq: u64,
    /// REST items (`execId`, `time`, ...), oldest first.
    pub kept: VecDeque<Value>,
}

pub(crate) fn fmt(x: f64) -> String {
    let s = format!("{x:.8}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn lock(state: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends a private frame of `base` (`order`, `execution`, `position`, `wallet`) to every
/// authed private connection subscribed to `base` or `base.<category>`; the frame's `topic` is
/// the one that connection subscribed.
fn push_private(st: &mut State, base: &str, category: Option<&str>, data: Vec<Value>, now: u64) {
    st.frame_seq += 1;
    let id = format!("fake_{base}_{}", st.frame_seq);
    let specific = category.map(|c| format!("{base}.{c}"));
    for c in st
        .conns
        .values()
        .filter(|c| c.path == PRIVATE && c.proto.authed)
    {
        let topic = if c.proto.topics.contains(base) {
            base.to_owned()
        } else if let Some(t) = specific.as_ref().filter(|t| c.proto.topics.contains(*t)) {
            t.clone()
        } else {
            continue;
        };
        let frame = json!({"id": id, "topic": topic, "creationTime": now, "data": data});
        let _ = c.tx.try_send(Out::Text(frame.to_string()));
    }
}

/// The fake's trading account (see the module docs). Clones share it.
#[derive(Debug, Clone)]
pub struct Account {
    pub(crate) state: Arc<Mutex<State>>,
}

impl Account {
    /// Places a limit order (status `New`); pushes an `order` frame; returns its `orderId`.
    pub fn place_order(
        &self,
        category: &str,
        symbol: &str,
        side: &str,
        qty: f64,
        price: f64,
    ) -> String {
        let mut st = lock(&self.state);
        let now = st.rules.now_ms();
        let seq = st.account.next_seq();
        let order_id = format!("fake-order-{seq:012}");
        let state = json!({"category": category, "symbol": symbol, "orderId": order_id,
            "orderLinkId": "", "blockTradeId": "", "side": side, "positionIdx": 0,
            "orderStatus": "New", "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
            "timeInForce": "GTC", "isLeverage": "", "price": fmt(price), "qty": fmt(qty),
            "avgPrice": "", "leavesQty": fmt(qty), "leavesValue": fmt(qty * price),
            "cumExecQty": "0", "cumExecValue": "0", "cumExecFee": "0", "orderType": "Limit",
            "stopOrderType": "", "orderIv": "", "triggerPrice": "", "takeProfit": "",
            "stopLoss": "", "triggerBy": "", "tpTriggerBy": "", "slTriggerBy": "",
            "triggerDirection": 0, "placeType": "", "lastPriceOnCreated": fmt(price),
            "closeOnTrigger": false, "reduceOnly": false, "smpGroup": 0, "smpType": "None",
            "smpOrderId": "", "createType": "CreateByUser", "marketUnit": "",
            "createdTime": now.to_string(), "updatedTime": now.to_string(),
            "feeCurrency": "", "closedPnl": "0"});
        st.account.orders.insert(
            order_id.clone(),
            Order {
                created_seq: seq,
                qty,
                filled: 0.0,
                price,
                state: state.clone(),
            },
        );
        st.account.order_updates.push(Record {
            seq,
            time: now,
            item: state.clone(),
        });
        push_private(&mut st, "order", Some(category), vec![state], now);
        order_id
    }

    /// Fills `qty` of an open order at its price: one execution, the order update, the
    /// position and the wallet, each pushed as a frame and recorded for REST. Returns the
    /// `execId`, `None` when the order is unknown or no longer open.
    pub fn fill(&self, order_id: &str, qty: f64) -> Option<String> {
        let mut st = lock(&self.state);
        let now = st.rules.now_ms();
        let seq = st.account.next_seq();
        let order = st.account.orders.get_mut(order_id)?;
        let status = order.state["orderStatus"].as_str().unwrap_or("");
        if status != "New" && status != "PartiallyFilled" {
            return None;
        }
        let qty = qty.min(order.qty - order.filled);
        order.filled += qty;
        let leaves = order.qty - order.filled;
        let (price, category, symbol, side) = (
            order.price,
            order.state["category"]
                .as_str()
                .unwrap_or("linear")
                .to_owned(),
            order.state["symbol"].as_str().unwrap_or("").to_owned(),
            order.state["side"].as_str().unwrap_or("Buy").to_owned(),
        );
        let fee = qty * price * 0.0004;
        let s = &mut order.state;
        s["orderStatus"] = json!(if leaves <= 0.0 {
            "Filled"
        } else {
            "PartiallyFilled"
        });
        s["leavesQty"] = json!(fmt(leaves));
        s["leavesValue"] = json!(fmt(leaves * price));
        s["cumExecQty"] = json!(fmt(order.filled));
        s["cumExecValue"] = json!(fmt(order.filled * price));
        s["cumExecFee"] = json!(fmt(order.filled * price * 0.0004));
        s["avgPrice"] = json!(fmt(price));
        s["updatedTime"] = json!(now.to_string());
        let order_state = s.clone();
        let order_qty = order.qty;
        let exec_id = format!("fake-exec-{seq:012}");
        let exec = json!({"category": category, "symbol": symbol, "closedSize": "0",
            "execFee": fmt(fee), "execId": exec_id, "execPrice": fmt(price),
            "execQty": fmt(qty), "execType": "Trade", "execValue": fmt(qty * price),
            "feeRate": "0.0004", "tradeIv": "", "markIv": "", "blockTradeId": "",
            "markPrice": fmt(price), "indexPrice": "", "underlyingPrice": "",
            "leavesQty": fmt(leaves), "orderId": order_id, "orderLinkId": "",
            "orderPrice": fmt(price), "orderQty": fmt(order_qty), "orderType": "Limit",
            "stopOrderType": "UNKNOWN", "side": side, "execTime": now.to_string(),
            "isLeverage": "0", "isMaker": true, "seq": seq, "marketUnit": "",
            "execPnl": "0", "createType": "CreateByUser"});
        st.account.executions.push(Record {
            seq,
            time: now,
            item: exec.clone(),
        });
        st.account.order_updates.push(Record {
            seq,
            time: now,
            item: order_state.clone(),
        });
        // Position: signed size, Buy adds.
        let key = (category.clone(), symbol.clone());
        let prev = st
            .account
            .positions
            .get(&key)
            .and_then(|r| {
                r.item["size"]
                    .as_str()?
                    .parse::<f64>()
                    .ok()
                    .map(|s| if r.item["side"] == "Sell" { -s } else { s })
            })
            .unwrap_or(0.0);
        let signed = prev + if side == "Buy" { qty } else { -qty };
        let pos_side = if signed > 0.0 {
            "Buy"
        } else if signed < 0.0 {
            "Sell"
        } else {
            ""
        };
        let position = json!({"positionIdx": 0, "tradeMode": 0, "riskId": 1,
            "riskLimitValue": "2000000", "symbol": symbol, "side": pos_side,
            "size": fmt(signed.abs()), "entryPrice": fmt(price), "sessionAvgPrice": "",
            "leverage": "10", "positionValue": fmt(signed.abs() * price),
            "positionBalance": "0", "markPrice": fmt(price), "positionIM": "0",
            "positionMM": "0", "takeProfit": "0", "stopLoss": "0", "trailingStop": "0",
            "unrealisedPnl": "0", "cumRealisedPnl": fmt(-fee), "curRealisedPnl": fmt(-fee),
            "createdTime": now.to_string(), "updatedTime": now.to_string(),
            "tpslMode": "Full", "liqPrice": "", "bustPrice": "", "category": category,
            "positionStatus": "Normal", "adlRankIndicator": 2, "autoAddMargin": 0,
            "leverageSysUpdatedTime": "", "mmrSysUpdatedTime": "", "seq": seq,
            "isReduceOnly": false});
        st.account.positions.insert(
            key,
            Record {
                seq,
                time: now,
                item: position.clone(),
            },
        );
        let settle = if symbol.ends_with("USDC") {
            "USDC"
        } else {
            "USDT"
        };
        *st.account.balances.entry(settle.to_owned()).or_insert(0.0) -= fee;
        st.account.wallet_time = now;
        let wallet = st.account.wallet_item();
        push_private(&mut st, "execution", Some(&category), vec![exec], now);
        push_private(&mut st, "order", Some(&category), vec![order_state], now);
        push_private(&mut st, "position", Some(&category), vec![position], now);
        push_private(&mut st, "wallet", None, vec![wallet], now);
        Some(exec_id)
    }

    /// Cancels an open order (status `Cancelled`), pushing and recording the update; false
    /// when it is unknown or no longer open.
    pub fn cancel(&self, order_id: &str) -> bool {
        let mut st = lock(&self.state);
        let now = st.rules.now_ms();
        let seq = st.account.next_seq();
        let Some(order) = st.account.orders.get_mut(order_id) else {
            return false;
        };
        let status = order.state["orderStatus"].as_str().unwrap_or("");
        if status != "New" && status != "PartiallyFilled" {
            return false;
        }
        order.state["orderStatus"] = json!("Cancelled");
        order.state["cancelType"] = json!("CancelByUser");
        order.state["leavesQty"] = json!("0");
        order.state["leavesValue"] = json!("0");
        order.state["updatedTime"] = json!(now.to_string());
        let state = order.state.clone();
        let category = state["category"].as_str().unwrap_or("linear").to_owned();
        st.account.order_updates.push(Record {
            seq,
            time: now,
            item: state.clone(),
        });
        push_private(&mut st, "order", Some(&category), vec![state], now);
        true
    }

    /// Sets a coin's wallet balance and pushes a `wallet` frame.
    pub fn set_balance(&self, coin: &str, amount: f64) {
        let mut st = lock(&self.state);
        let now = st.rules.now_ms();
        st.account.balances.insert(coin.to_owned(), amount);
        st.account.wallet_time = now;
        let wallet = st.account.wallet_item();
        push_private(&mut st, "wallet", None, vec![wallet], now);
    }

    /// Keeps trading in the background until the handle is dropped or stopped: every `every`,
    /// one order of `symbol` is placed and filled in two executions (order, execution,
    /// position and wallet updates each time), connected or not, as a live account does.
    pub fn keep_trading(
        &self,
        category: &str,
        symbol: &str,
        every: std::time::Duration,
    ) -> Trading {
        let stop = tokio_util::sync::CancellationToken::new();
        let (account, category, symbol, token) = (
            self.clone(),
            category.to_owned(),
            symbol.to_owned(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                n += 1;
                let side = if n.is_multiple_of(2) { "Sell" } else { "Buy" };
                let id = account.place_order(&category, &symbol, side, 0.002, 100.0);
                account.fill(&id, 0.001);
                account.fill(&id, 0.001);
            }
        });
        Trading { stop }
    }

    /// Every execution produced so far (WebSocket item shape), oldest first.
    pub fn executions(&self) -> Vec<Value> {
        lock(&self.state)
            .account
            .executions
            .iter()
            .map(|r| r.item.clone())
            .collect()
    }

    /// Every order update produced so far (WebSocket item shape), oldest first.
    pub fn order_updates(&self) -> Vec<Value> {
        lock(&self.state)
            .account
            .order_updates
            .iter()
            .map(|r| r.item.clone())
            .collect()
    }

    /// The current positions.
    pub fn positions(&self) -> Vec<Value> {
        lock(&self.state)
            .account
            .positions
            .values()
            .map(|r| r.item.clone())
            .collect()
    }

    /// The current wallet item.
    pub fn wallet(&self) -> Value {
        lock(&self.state).account.wallet_item()
    }
}

/// Background trading started by [`Account::keep_trading`]; stops when dropped.
#[derive(Debug)]
pub struct Trading {
    stop: tokio_util::sync::CancellationToken,
}

impl Trading {
    /// Stops trading (no more orders after this returns, but one in progress completes).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Trading {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The public trade tape of one symbol (see [`crate::FakeBybit::trades`]).
#[derive(Debug, Clone)]
pub struct Trades {
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) category: String,
    pub(crate) symbol: String,
}

impl Trades {
    /// Produces `n` trades with contiguous ids as one `publicTrade.<symbol>` frame sent to the
    /// connections of this category subscribed to it, and keeps them for REST. Returns the ids
    /// produced (as numbers) and how many connections got the frame.
    pub fn push(&self, n: usize) -> (std::ops::Range<u64>, usize) {
        let mut st = lock(&self.state);
        let now = st.rules.now_ms();
        let key = (self.category.clone(), self.symbol.clone());
        let tape = st.tapes.entry(key).or_insert_with(|| Tape {
            next_id: 1_000_000,
            ..Tape::default()
        });
        let first = tape.next_id;
        let mut items = Vec::with_capacity(n);
        for k in 0..n {
            let id = tape.next_id;
            tape.next_id += 1;
            tape.seq += 1;
            let side = if k.is_multiple_of(2) { "Buy" } else { "Sell" };
            let price = fmt(100.0 + (id % 100) as f64 / 10.0);
            items.push(json!({"T": now, "s": self.symbol, "S": side, "v": "0.001",
                "p": price, "L": "ZeroPlusTick", "i": id.to_string(), "BT": false,
                "RPI": false, "seq": tape.seq}));
            tape.kept
                .push_back(json!({"execId": id.to_string(), "symbol": self.symbol,
                "price": price, "size": "0.001", "side": side, "time": now.to_string(),
                "isBlockTrade": false, "isRPITrade": false, "seq": tape.seq.to_string()}));
            if tape.kept.len() > TRADES_KEPT {
                tape.kept.pop_front();
            }
        }
        let last = tape.next_id;
        let topic = format!("publicTrade.{}", self.symbol);
        let frame =
            json!({"topic": topic, "type": "snapshot", "ts": now, "data": items}).to_string();
        let path = format!("/v5/public/{}", self.category);
        let mut sent = 0;
        for c in st
            .conns
            .values()
            .filter(|c| c.path == path && c.proto.topics.contains(&topic))
        {
            if c.tx.try_send(Out::Text(frame.clone())).is_ok() {
                sent += 1;
            }
        }
        (first..last, sent)
    }
}

/// Per-(category, symbol) tapes.
pub(crate) type Tapes = HashMap<(String, String), Tape>;
