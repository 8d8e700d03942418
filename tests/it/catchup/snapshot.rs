//! Snapshots: before any `wallet` frame, the wallet from REST is in `/api/v1/balances` and a
//! `recovered` wallet event is in the balances queue; positions come as recovered events too.

use fake_bybit::PRIVATE;
use serde_json::json;

use super::drain;
use crate::support::{
    http::get,
    secs,
    stack::{Db, Options, Stack},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_and_positions_come_from_rest_before_any_frame() {
    // Arrange: a balance and a position exist before the gateway subscribes.
    let stack = Stack::start(
        Options {
            db: Db::Postgres,
            ..Options::default()
        },
        |_| {},
    )
    .await;
    let account = stack.fake.account();
    account.set_balance("USDT", 1234.5);
    let order = account.place_order("linear", "ETHUSDT", "Buy", 0.5, 2000.0);
    account.fill(&order, 0.5).expect("filled");
    let wallet = account.wallet();
    let wanted = wallet["coin"][0]["walletBalance"].clone();

    // Act: wallet and position subscribed; no frame is pushed after this.
    for (channel, topic) in [("position", "position"), ("balance", "wallet")] {
        stack
            .subscribe(
                json!({"channel_type": channel, "requesting_service": "risk"}),
                PRIVATE,
                topic,
            )
            .await;
    }

    // Assert
    let row = wait_until(secs(10), || async {
        let (_, body) = get(&stack.app, "/api/v1/balances").await;
        body["balances"]
            .as_array()?
            .iter()
            .find(|r| r["coin"] == "USDT")
            .cloned()
    })
    .await
    .expect("the REST wallet reaches /api/v1/balances");
    assert_eq!(row["wallet_balance"], wanted, "{row}");
    assert_eq!(row["account_type"], "UNIFIED");
    let balances = drain(&stack.amqp, &stack.queue("balances"), secs(3)).await;
    let recovered: Vec<_> = balances
        .iter()
        .filter(|e| e["type"] == "recovery" && e["topic"] == "wallet")
        .collect();
    assert_eq!(recovered.len(), 1, "{balances:?}");
    assert_eq!(recovered[0]["data"][0], wallet);
    assert_eq!(recovered[0]["recovered"], true);
    assert!(
        recovered[0]["key"]
            .as_str()
            .unwrap()
            .starts_with("wallet:UNIFIED:"),
        "{}",
        recovered[0]
    );
    let positions = drain(&stack.amqp, &stack.queue("positions"), secs(3)).await;
    let pos: Vec<_> = positions
        .iter()
        .filter(|e| e["type"] == "recovery")
        .collect();
    assert_eq!(pos.len(), 1, "{positions:?}");
    assert_eq!(pos[0]["data"][0]["symbol"], "ETHUSDT");
    assert_eq!(pos[0]["data"][0]["size"], "0.5");
    let key = format!(
        "position:linear:ETHUSDT:{}",
        pos[0]["data"][0]["updatedTime"].as_str().unwrap()
    );
    assert_eq!(pos[0]["key"], key.as_str());
    let extra = [stack.queue("balances.risk"), stack.queue("positions.risk")];
    stack.finish(&extra).await;
}
