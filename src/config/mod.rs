//! Settings: where things are (environment variables, `.env`) and what flows (the pipeline file).
//!
//! Everything is parsed once in `main` by [`Settings::load`]; each component is handed its own
//! section by value, and nothing deeper in the code reads the environment or files. A bad value
//! is a [`ConfigError`] that names the variable or key, so `main` can print one line and exit 2.
//!
//! Apart from this module: Bybit's environments and their URLs (`bybit.rs`), the `.env` reader
//! (`dot_env.rs`), checks of single values (`check.rs`) and redaction of secrets for log lines
//! (`redact.rs`).

mod bybit;
mod check;
mod dot_env;
mod redact;

use std::{collections::HashMap, net::IpAddr, path::PathBuf};

use secrecy::SecretString;
use url::Url;

pub use bybit::BybitEnvironment;
pub use check::{AMQP_SHORT_STR, MAX_REQUESTING_SERVICE_LEN, max_service_name_len};
use check::{check_database_url, parse_url};
pub use dot_env::read_dot_env;
pub use redact::{redact, url_passwords};

use crate::pipeline_file::{PipelineFile, PipelineFileError};

/// Where the pipeline file is looked for when `WS_GATEWAY_PIPELINE` is unset.
pub const DEFAULT_PIPELINE_PATH: &str = "pipelines/default.toml";
/// The SQLite file used when `DATABASE_URL` is unset.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://ws-gateway.db?mode=rwc";

/// A configuration value that stops startup; `Display` names the variable or key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value we cannot use.
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
    /// The pipeline file cannot be read or is not valid.
    #[error(transparent)]
    Pipeline(#[from] PipelineFileError),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// REST, Swagger UI, `/metrics` and `/ws` listen here.
    pub server: ServerSettings,
    /// Log level and format.
    pub log: LogSettings,
    /// Prefix of exchange and queue names, and the `service` field in logs.
    pub service_name: String,
    /// Where Bybit is and who we are there.
    pub bybit: BybitSettings,
    /// Any sea-orm URL; SQLite by default.
    pub database_url: SecretString,
    /// The broker; `None` turns the publish stage off.
    pub amqp_url: Option<SecretString>,
    /// What flows: stage capacities, policies, timings, startup subscriptions.
    pub pipeline: PipelineFile,
    /// Alone (default) or sharing the work with other instances through PostgreSQL.
    pub cluster: ClusterMode,
    /// This instance's name (`WS_GATEWAY_INSTANCE_ID`, or `<hostname>-<6 hex>`).
    pub instance_id: String,
}

/// `WS_GATEWAY_CLUSTER`: whether this instance shares the work with others (spec section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// One instance does everything (the default).
    #[default]
    Off,
    /// Instances share topics through leases in the PostgreSQL of `DATABASE_URL`.
    Postgres,
}

/// The HTTP listener.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Interface to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (the bound address is logged and exposed by `App`).
    pub port: u16,
    /// The `X-API-Key` that `/api/v1/*` and `/ws` require.
    pub api_key: SecretString,
    /// True when `api_key` was generated because none was configured; it is then logged once.
    pub api_key_generated: bool,
}

/// Telemetry output.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// An `EnvFilter` directive such as `info,sqlx=warn`.
    pub level: String,
    /// JSON (default, for machines) or pretty (for people).
    pub format: LogFormat,
}

/// Bybit endpoints and credentials.
#[derive(Debug, Clone)]
pub struct BybitSettings {
    /// Mainnet, testnet or demo; chooses the default URLs.
    pub environment: BybitEnvironment,
    /// WebSocket base URL; the `/v5/...` paths are appended.
    pub ws_url: Url,
    /// REST base URL (server time, catch-up).
    pub rest_url: Url,
    /// API key and secret; private streams exist only when both are set.
    pub credentials: Option<BybitCredentials>,
}

/// A Bybit API key pair. The secret never reaches a log line.
#[derive(Debug, Clone)]
pub struct BybitCredentials {
    /// The public half, sent in the `auth` op.
    pub api_key: String,
    /// Signs `GET/realtime{expires}`.
    pub api_secret: SecretString,
}

impl Settings {
    /// Reads `.env` from the working directory (if present; never from a parent directory),
    /// then the process environment (which wins), then the pipeline file.
    pub fn load() -> Result<Self, ConfigError> {
        let mut vars = read_dot_env(std::path::Path::new(".env"))?;
        vars.extend(std::env::vars());
        Self::from_vars(&vars)
    }

    /// Builds settings from a map of variables; `load` passes the environment, tests pass their own.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let host = match get("WS_GATEWAY_HOST") {
            Some(v) => v.parse().map_err(|e| invalid("WS_GATEWAY_HOST", e))?,
            None => IpAddr::from([0, 0, 0, 0]),
        };
        let port = match get("WS_GATEWAY_PORT") {
            Some(v) => v.parse().map_err(|e| invalid("WS_GATEWAY_PORT", e))?,
            None => 4400,
        };
        let (api_key, api_key_generated) = match get("WS_GATEWAY_API_KEY") {
            Some(v) => (SecretString::from(v.to_owned()), false),
            None => (
                SecretString::from(uuid::Uuid::new_v4().simple().to_string()),
                true,
            ),
        };
        let log = LogSettings {
            level: get("WS_GATEWAY_LOG_LEVEL").unwrap_or("info").to_owned(),
            format: match get("WS_GATEWAY_LOG_FORMAT")
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("json") => LogFormat::Json,
                Some("pretty") => LogFormat::Pretty,
                Some(other) => {
                    return Err(invalid(
                        "WS_GATEWAY_LOG_FORMAT",
                        format!("{other:?} is not json or pretty"),
                    ));
                }
            },
        };
        tracing_subscriber::EnvFilter::try_new(&log.level)
            .map_err(|e| invalid("WS_GATEWAY_LOG_LEVEL", e))?;

        let service_name = get("WS_GATEWAY_SERVICE_NAME")
            .unwrap_or("ws-gateway")
            .to_owned();
        if !service_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(
                "WS_GATEWAY_SERVICE_NAME",
                "use letters, digits, '-', '_' or '.'",
            ));
        }
        let max = max_service_name_len();
        if service_name.len() > max {
            return Err(invalid(
                "WS_GATEWAY_SERVICE_NAME",
                format!(
                    "{} characters; at most {max}, so that every queue name \
                     <name>.<class>.<service> fits AMQP's {AMQP_SHORT_STR} bytes",
                    service_name.len()
                ),
            ));
        }

        let environment = match get("BYBIT_ENVIRONMENT") {
            Some(v) => v
                .parse()
                .map_err(|e: String| invalid("BYBIT_ENVIRONMENT", e))?,
            None => BybitEnvironment::Mainnet,
        };
        let ws_url = parse_url(
            "BYBIT_WS_URL",
            get("BYBIT_WS_URL").unwrap_or(environment.ws_url()),
            &["ws", "wss"],
        )?;
        let rest_url = parse_url(
            "BYBIT_REST_URL",
            get("BYBIT_REST_URL").unwrap_or(environment.rest_url()),
            &["http", "https"],
        )?;
        let credentials = match (get("BYBIT_API_KEY"), get("BYBIT_API_SECRET")) {
            (Some(k), Some(s)) => Some(BybitCredentials {
                api_key: k.to_owned(),
                api_secret: SecretString::from(s.to_owned()),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "BYBIT_API_SECRET",
                    "is required when BYBIT_API_KEY is set",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "BYBIT_API_KEY",
                    "is required when BYBIT_API_SECRET is set",
                ));
            }
        };

        let database_url = get("DATABASE_URL").unwrap_or(DEFAULT_DATABASE_URL);
        check_database_url(database_url)?;
        let amqp_url = match get("AMQP_URL") {
            Some(v) => {
                for node in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let url = parse_url("AMQP_URL", node, &["amqp", "amqps"])?;
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err(invalid("AMQP_URL", "has no host"));
                    }
                }
                Some(SecretString::from(v.to_owned()))
            }
            None => None,
        };

        let cluster = match get("WS_GATEWAY_CLUSTER")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("off") => ClusterMode::Off,
            Some("postgres") => ClusterMode::Postgres,
            Some(other) => {
                return Err(invalid(
                    "WS_GATEWAY_CLUSTER",
                    format!("{other:?} is not off or postgres"),
                ));
            }
        };
        if cluster == ClusterMode::Postgres && !database_url.starts_with("postgres") {
            return Err(invalid(
                "WS_GATEWAY_CLUSTER",
                "postgres needs a postgres:// DATABASE_URL (the instances share it); \
                 SQLite cannot be shared",
            ));
        }
        let instance_id = match get("WS_GATEWAY_INSTANCE_ID") {
            Some(v) => {
                if v.len() > 64
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
                {
                    return Err(invalid(
                        "WS_GATEWAY_INSTANCE_ID",
                        "use at most 64 letters, digits, '-', '_', '.' or ':'",
                    ));
                }
                v.to_owned()
            }
            None => generated_instance_id(),
        };

        let pipeline = match get("WS_GATEWAY_PIPELINE") {
            Some(path) => PipelineFile::read(PathBuf::from(path))?,
            None => {
                let path = PathBuf::from(DEFAULT_PIPELINE_PATH);
                if path.exists() {
                    PipelineFile::read(path)?
                } else {
                    PipelineFile::default()
                }
            }
        };

        Ok(Self {
            server: ServerSettings {
                host,
                port,
                api_key,
                api_key_generated,
            },
            log,
            service_name,
            bybit: BybitSettings {
                environment,
                ws_url,
                rest_url,
                credentials,
            },
            database_url: SecretString::from(database_url.to_owned()),
            amqp_url,
            pipeline,
            cluster,
            instance_id,
        })
    }
}

/// `<hostname>-<6 hex>`: unique enough among the instances of one cluster, readable in logs.
fn generated_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ws-gateway".to_owned());
    let suffix: u32 = rand::random::<u32>() & 0x00ff_ffff;
    format!("{host}-{suffix:06x}")
}

fn invalid(var: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        var,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventClass;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_environment_gives_mainnet_sqlite_and_a_generated_key() {
        let s = Settings::from_vars(&vars(&[("WS_GATEWAY_PIPELINE", "pipelines/default.toml")]))
            .or_else(|_| Settings::from_vars(&vars(&[])))
            .unwrap();
        assert_eq!(s.bybit.environment, BybitEnvironment::Mainnet);
        assert_eq!(s.bybit.ws_url.as_str(), "wss://stream.bybit.com/");
        assert!(s.server.api_key_generated);
        assert_eq!(s.server.port, 4400);
        assert!(s.amqp_url.is_none());
    }

    #[test]
    fn cluster_mode_needs_postgres_and_a_known_value() {
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.cluster, ClusterMode::Off);
        let (host, suffix) = s.instance_id.rsplit_once('-').unwrap();
        assert!(!host.is_empty() && suffix.len() == 6, "{}", s.instance_id);
        let e = Settings::from_vars(&vars(&[("WS_GATEWAY_CLUSTER", "postgres")])).unwrap_err();
        assert!(e.to_string().starts_with("WS_GATEWAY_CLUSTER:"), "{e}");
        let e = Settings::from_vars(&vars(&[("WS_GATEWAY_CLUSTER", "etcd")])).unwrap_err();
        assert!(e.to_string().contains("not off or postgres"), "{e}");
        let s = Settings::from_vars(&vars(&[
            ("WS_GATEWAY_CLUSTER", "postgres"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
            ("WS_GATEWAY_INSTANCE_ID", "gw-a"),
        ]))
        .unwrap();
        assert_eq!(s.cluster, ClusterMode::Postgres);
        assert_eq!(s.instance_id, "gw-a");
        let e = Settings::from_vars(&vars(&[("WS_GATEWAY_INSTANCE_ID", "a b")])).unwrap_err();
        assert!(e.to_string().starts_with("WS_GATEWAY_INSTANCE_ID:"), "{e}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        // TC0: unknown environment
        let e = Settings::from_vars(&vars(&[("BYBIT_ENVIRONMENT", "moon")])).unwrap_err();
        assert!(e.to_string().starts_with("BYBIT_ENVIRONMENT:"), "{e}");
        // TC1: malformed URL
        let e = Settings::from_vars(&vars(&[("BYBIT_WS_URL", "not a url")])).unwrap_err();
        assert!(e.to_string().starts_with("BYBIT_WS_URL:"), "{e}");
        // TC2: unreadable pipeline file
        let e = Settings::from_vars(&vars(&[("WS_GATEWAY_PIPELINE", "/nonexistent.toml")]))
            .unwrap_err();
        assert!(e.to_string().starts_with("WS_GATEWAY_PIPELINE:"), "{e}");
        // TC3: half a credential pair
        let e = Settings::from_vars(&vars(&[("BYBIT_API_KEY", "k")])).unwrap_err();
        assert!(e.to_string().starts_with("BYBIT_API_SECRET:"), "{e}");
        // TC5: a service name too long for `<name>.<class>.<service>` queue names
        let e = Settings::from_vars(&vars(&[("WS_GATEWAY_SERVICE_NAME", &"a".repeat(245))]))
            .unwrap_err();
        assert!(e.to_string().starts_with("WS_GATEWAY_SERVICE_NAME:"), "{e}");
        let longest = "a".repeat(max_service_name_len());
        let s = Settings::from_vars(&vars(&[("WS_GATEWAY_SERVICE_NAME", &longest)])).unwrap();
        let queue = crate::sink::rabbitmq::topology::service_queue(
            &s.service_name,
            EventClass::Liquidations,
            &"s".repeat(MAX_REQUESTING_SERVICE_LEN),
        );
        assert!(queue.len() <= AMQP_SHORT_STR, "{}", queue.len());
        // TC6: a malformed postgres URL names the variable, not the password
        let e = Settings::from_vars(&vars(&[("DATABASE_URL", "postgres://u:hunter2@h:port/db")]))
            .unwrap_err();
        assert!(e.to_string().starts_with("DATABASE_URL:"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // TC4: AMQP URL with a password is not echoed
        let e = Settings::from_vars(&vars(&[("AMQP_URL", "http://u:hunter2@x")])).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
