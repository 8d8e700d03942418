//! Issue 12, "the seed's browser clients, unchanged": the seed quickstart's example client
//! (`tests/seed_client/client-example.mjs`, Node, the browser's WebSocket, only the seed's
//! `action` protocol and message shapes) runs against the real app fed by the fake Bybit. It
//! subscribes to two symbols, prints their trades (one line per trade, price and volume used as
//! numbers), then swaps one symbol for another; the swapped-out symbol's trades stop and the new
//! one's arrive.

use std::{process::Stdio, time::Duration};

use fake_bybit::{FakeBybit, LINEAR};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::support::{fixture, secs, spawn_app, sqlite_url, stack::against};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/seed_client/client-example.mjs"
);

const ETH_FRAME: &str = r#"{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":1758841135900,"data":[{"T":1758841135899,"s":"ETHUSDT","S":"Sell","v":"1.5","p":"4012.34","L":"MinusTick","i":"e-1","BT":false},{"T":1758841135899,"s":"ETHUSDT","S":"Buy","v":"0.25","p":"4012.35","L":"PlusTick","i":"e-2","BT":false}]}"#;
const SOL_FRAME: &str = r#"{"topic":"publicTrade.SOLUSDT","type":"snapshot","ts":1758841136000,"data":[{"T":1758841135999,"s":"SOLUSDT","S":"Buy","v":"10","p":"201.5","L":"PlusTick","i":"s-1","BT":false}]}"#;

/// `node`, with the flag that gives Node 20 the browser's global WebSocket (built in from 22).
fn node() -> Command {
    let version = std::process::Command::new("node")
        .arg("--version")
        .output()
        .expect("node is installed (the seed's client is a Node script)");
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let mut cmd = Command::new("node");
    if major < 22 {
        cmd.arg("--experimental-websocket");
    }
    cmd
}

struct Client {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Client {
    /// Reads output lines until one satisfies `pred`; panics after `within`.
    async fn until(&mut self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(within, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("reading the client's output")
                    .unwrap_or_else(|| panic!("the client ended; its output: {:#?}", self.seen));
                println!("seed client | {line}");
                self.seen.push(line.clone());
                if pred(&line) {
                    return line;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("no such line within {within:?}; output: {:#?}", self.seen))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_example_client_prints_trades_and_swaps_a_symbol() {
    // Arrange: the app against the fake exchange, and the seed's client (swap after 2 s).
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(against(&fake, &sqlite_url(dir.path()))).await;
    let url = format!("ws://{}/ws?api_key={}", app.addr, app.api_key);
    let mut child = node()
        .arg(SCRIPT)
        .args([url.as_str(), "BTCUSDT,ETHUSDT", "SOLUSDT", "2000"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the seed client");
    let stdout = child.stdout.take().unwrap();
    let mut client = Client {
        child,
        lines: BufReader::new(stdout).lines(),
        seen: Vec::new(),
    };
    client
        .until(secs(10), |l| {
            l.starts_with("Success: Successfully subscribed to 2 symbol(s)")
        })
        .await;
    for topic in ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"] {
        assert!(
            fake.wait_subscribed(LINEAR, topic, secs(10)).await,
            "{topic}"
        );
    }

    // Act 1: one BTCUSDT trade, two ETHUSDT trades in one frame.
    assert_eq!(
        fake.push_topic("publicTrade.BTCUSDT", &fixture("linear_publicTrade.json")),
        1
    );
    assert_eq!(fake.push_topic("publicTrade.ETHUSDT", ETH_FRAME), 1);

    // Assert 1: one printed line per trade, with the numbers the page computes with.
    let mut trades = Vec::new();
    for _ in 0..3 {
        trades.push(
            client
                .until(secs(10), |l| {
                    l.starts_with("Trade:")
                        || l.starts_with("Malformed")
                        || l.starts_with("Unknown")
                })
                .await,
        );
    }
    trades.sort();
    assert_eq!(
        trades,
        [
            "Trade: BTCUSDT @ $109378.90 (vol: 0.02) on bybit at 2025-09-25T22:58:55.823Z",
            "Trade: ETHUSDT @ $4012.34 (vol: 1.5) on bybit at 2025-09-25T22:58:55.899Z",
            "Trade: ETHUSDT @ $4012.35 (vol: 0.25) on bybit at 2025-09-25T22:58:55.899Z",
        ]
    );

    // Act 2: the client swaps ETHUSDT for SOLUSDT; upstream follows.
    client
        .until(secs(10), |l| l == "Swapping ETHUSDT for SOLUSDT")
        .await;
    client
        .until(secs(10), |l| {
            l.starts_with("Success: Successfully unsubscribed from 1 symbol(s)")
                && l.contains(r#""currentSubscriptions":["BTCUSDT"]"#)
        })
        .await;
    client
        .until(secs(10), |l| {
            l.starts_with("Success: Successfully subscribed to 1 symbol(s)")
                && l.contains(r#""currentSubscriptions":["BTCUSDT","SOLUSDT"]"#)
        })
        .await;
    assert!(
        fake.wait_subscribed(LINEAR, "publicTrade.SOLUSDT", secs(10))
            .await
    );
    let deadline = tokio::time::Instant::now() + secs(10);
    while fake.subscribed(LINEAR).contains("publicTrade.ETHUSDT") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ETHUSDT released upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.push_topic("publicTrade.ETHUSDT", ETH_FRAME);
    assert_eq!(fake.push_topic("publicTrade.SOLUSDT", SOL_FRAME), 1);

    // Assert 2: the new symbol's trade arrives, the dropped one's does not.
    let next = client
        .until(secs(10), |l| {
            l.starts_with("Trade:") || l.starts_with("Malformed") || l.starts_with("Unknown")
        })
        .await;
    assert_eq!(
        next,
        "Trade: SOLUSDT @ $201.50 (vol: 10) on bybit at 2025-09-25T22:58:55.999Z"
    );
    assert!(
        !client
            .seen
            .iter()
            .any(|l| l.starts_with("Unknown") || l.starts_with("Malformed")),
        "{:#?}",
        client.seen
    );

    client.child.kill().await.unwrap();
    app.shutdown().await.unwrap();
}
