//! Bybit's worlds ([`BybitEnvironment`]: mainnet, testnet, demo) and the default WebSocket and
//! REST URLs of each; `BYBIT_ENVIRONMENT` picks one, `BYBIT_WS_URL` / `BYBIT_REST_URL` override.

use std::str::FromStr;

/// Bybit's worlds: mainnet, testnet, and demo trading (private stream and REST on Bybit's demo
/// hosts, public data from mainnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BybitEnvironment {
    Mainnet,
    Testnet,
    Demo,
}

impl BybitEnvironment {
    /// The public WebSocket base URL of this environment.
    pub fn ws_url(self) -> &'static str {
        match self {
            Self::Mainnet | Self::Demo => "wss://stream.bybit.com",
            Self::Testnet => "wss://stream-testnet.bybit.com",
        }
    }

    /// The private WebSocket base URL of this environment (demo: `wss://stream-demo.bybit.com`,
    /// which serves only private streams).
    pub fn private_ws_url(self) -> &'static str {
        match self {
            Self::Demo => "wss://stream-demo.bybit.com",
            other => other.ws_url(),
        }
    }

    /// The name used in log lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mainnet => "mainnet",
            Self::Testnet => "testnet",
            Self::Demo => "demo",
        }
    }

    /// The REST base URL of this environment.
    pub fn rest_url(self) -> &'static str {
        match self {
            Self::Mainnet => "https://api.bybit.com",
            Self::Testnet => "https://api-testnet.bybit.com",
            Self::Demo => "https://api-demo.bybit.com",
        }
    }
}

impl FromStr for BybitEnvironment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mainnet" => Ok(Self::Mainnet),
            "testnet" => Ok(Self::Testnet),
            "demo" => Ok(Self::Demo),
            other => Err(format!(
                "unknown environment {other:?}; expected mainnet, testnet or demo"
            )),
        }
    }
}
