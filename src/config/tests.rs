//! Unit tests of the configuration: the defaults, cluster mode and bad values naming their variable.

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
    let e =
        Settings::from_vars(&vars(&[("WS_GATEWAY_PIPELINE", "/nonexistent.toml")])).unwrap_err();
    assert!(e.to_string().starts_with("WS_GATEWAY_PIPELINE:"), "{e}");
    // TC3: half a credential pair
    let e = Settings::from_vars(&vars(&[("BYBIT_API_KEY", "k")])).unwrap_err();
    assert!(e.to_string().starts_with("BYBIT_API_SECRET:"), "{e}");
    // TC5: a service name too long for `<name>.<class>.<service>` queue names
    let e =
        Settings::from_vars(&vars(&[("WS_GATEWAY_SERVICE_NAME", &"a".repeat(245))])).unwrap_err();
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
