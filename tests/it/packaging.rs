//! Packaging: the compose file, the Prometheus scrape config and the Grafana provisioning parse,
//! and every metric the dashboard queries is one the gateway exports.

use std::collections::BTreeSet;

use serde_yaml::Value as Yaml;
use ws_gateway::telemetry;

use crate::support::{TestConfig, spawn_app, sqlite_url};

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every `ws_gateway_*` name in `text`, histogram series suffixes folded into their family.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("ws_gateway_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let mut name = &text[start..end];
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && base.ends_with("_seconds")
            {
                name = base;
            }
        }
        names.insert(name.to_owned());
        i = end;
    }
    names
}

#[test]
fn compose_file_has_every_service_with_healthchecks_and_ordered_startup() {
    let compose = yaml("docker-compose.yml");

    assert!(
        compose.get("version").is_none(),
        "Compose V2: no `version` key"
    );
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "ws-gateway",
        "postgres",
        "rabbitmq",
        "prometheus",
        "grafana",
        "test",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    for name in [
        "ws-gateway",
        "postgres",
        "rabbitmq",
        "prometheus",
        "grafana",
    ] {
        assert!(
            compose["services"][name]["healthcheck"]["test"].is_sequence(),
            "{name} has a healthcheck"
        );
    }
    let gateway = &compose["services"]["ws-gateway"];
    for dep in ["postgres", "rabbitmq"] {
        assert_eq!(
            gateway["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "ws-gateway waits for {dep}"
        );
    }
    assert!(
        gateway["ports"][0].as_str().unwrap().ends_with(":4400"),
        "gateway on 4400"
    );
    assert!(gateway["env_file"].is_sequence(), "configuration from .env");
    let rabbit = &compose["services"]["rabbitmq"];
    assert!(rabbit["image"].as_str().unwrap().contains("management"));
    assert!(
        rabbit["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().ends_with(":15672"))
    );
    assert!(
        compose["services"]["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:15")
    );
    let test = &compose["services"]["test"];
    assert_eq!(test["profiles"][0].as_str(), Some("test"));
    for var in ["TEST_DATABASE_URL", "TEST_AMQP_URL"] {
        assert!(
            test["environment"][var].is_string(),
            "test service sets {var}"
        );
    }
    assert!(
        compose["volumes"].as_mapping().unwrap().len() >= 4,
        "named volumes"
    );
}

#[test]
fn the_cluster_profile_runs_three_rabbitmq_nodes_and_a_gateway_on_all_three() {
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    assert_eq!(
        services["rabbitmq-1"]["profiles"][0].as_str(),
        Some("cluster")
    );
    let gateway = &services["ws-gateway-cluster"];
    assert_eq!(gateway["profiles"][0].as_str(), Some("cluster"));
    let url = gateway["environment"]["AMQP_URL"].as_str().unwrap();
    assert_eq!(url.split(',').count(), 3, "{url}");
    for node in ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"] {
        assert!(services.get(node).is_some(), "service {node}");
        assert!(url.contains(&format!("@{node}:5672/")), "{url}");
        assert_eq!(
            gateway["depends_on"][node]["condition"].as_str(),
            Some("service_healthy")
        );
    }
    let conf = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/rabbitmq-cluster/rabbitmq.conf"),
    )
    .unwrap();
    assert!(conf.contains("peer_discovery_backend = classic_config"));
    let pipeline = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/rabbitmq-cluster/pipeline.toml"),
    )
    .unwrap();
    let file = ws_gateway::pipeline_file::PipelineFile::parse(&pipeline).unwrap();
    for class in [
        ws_gateway::event::EventClass::Orders,
        ws_gateway::event::EventClass::Executions,
        ws_gateway::event::EventClass::Positions,
        ws_gateway::event::EventClass::Balances,
    ] {
        assert_eq!(
            file.class(class).queue_type,
            ws_gateway::pipeline_file::QueueType::Quorum,
            "{class} quorum on the cluster"
        );
    }
}

#[test]
fn prometheus_scrapes_the_gateway_and_grafana_is_provisioned() {
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let job = &prometheus["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some("ws-gateway:4400")
    );
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasources["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let providers = yaml("deploy/grafana/provisioning/dashboards/ws-gateway.yml");
    assert_eq!(
        providers["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_only_metrics_the_gateway_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/ws-gateway.json"))
            .expect("dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    let used = metric_names(&exprs.join("\n"));
    assert!(
        used.len() >= 20,
        "the dashboard covers the gateway: {used:?}"
    );

    let consts: BTreeSet<String> = telemetry::ALL.iter().map(|s| s.to_string()).collect();
    let unknown: Vec<_> = used.difference(&consts).collect();
    assert!(unknown.is_empty(), "not in telemetry.rs: {unknown:?}");

    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    let exported = crate::support::metrics::scrape(&app.http())
        .await
        .families();
    let not_exported: Vec<_> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(not_exported.is_empty(), "not in /metrics: {not_exported:?}");
    app.shutdown().await.unwrap();
}

/// The container's spool directory (and the unwritten balance rows next to it) lives on the data
/// volume: a recreated container keeps every private event the broker had not confirmed.
#[test]
fn the_container_spool_lives_on_the_named_data_volume() {
    let dockerfile = read("Dockerfile");
    let runtime = &dockerfile[dockerfile.find("AS runtime").expect("runtime stage")..];
    let workdir = runtime
        .lines()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("WORKDIR")
        .trim()
        .to_owned();
    // The pipeline file's setting, unless the image rewrites it.
    let pipeline = read("pipelines/default.toml");
    let mut spool = pipeline
        .lines()
        .find_map(|l| l.trim().strip_prefix("spool_dir = "))
        .expect("spool_dir in the pipeline file")
        .trim_matches('"')
        .to_owned();
    if let Some(i) = runtime.find("s|^spool_dir = .*|spool_dir = \"") {
        let rest = &runtime[i + "s|^spool_dir = .*|spool_dir = \"".len()..];
        spool = rest[..rest.find('"').unwrap()].to_owned();
    }
    if !spool.starts_with('/') {
        spool = format!("{workdir}/{spool}");
    }
    let volume = runtime
        .lines()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("VOLUME");
    let volumes: Vec<String> = serde_json::from_str(volume).expect("VOLUME is a JSON array");
    assert!(
        volumes.iter().any(|v| spool.starts_with(&format!("{v}/"))),
        "spool dir {spool} is not on a VOLUME {volumes:?}"
    );
    let compose = yaml("docker-compose.yml");
    let named = compose["volumes"].as_mapping().unwrap();
    let mounts = compose["services"]["ws-gateway"]["volumes"]
        .as_sequence()
        .expect("gateway volumes");
    assert!(
        mounts.iter().any(|m| {
            let m = m.as_str().unwrap_or_default();
            let (name, path) = m.split_once(':').unwrap_or_default();
            named.contains_key(name)
                && spool.starts_with(&format!("{}/", path.trim_end_matches(":rw")))
        }),
        "compose mounts no named volume over {spool}: {mounts:?}"
    );
}

#[test]
fn the_instances_profile_runs_three_gateways_sharing_the_work_through_postgres() {
    let mut compose = yaml("docker-compose.yml");
    // The three share one definition through YAML merge keys (`<<: *gateway-instance`).
    compose.apply_merge().expect("merge keys");
    compose.apply_merge().expect("nested merge keys");
    let services = &compose["services"];
    let mut ids = std::collections::BTreeSet::new();
    for name in ["ws-gateway-a", "ws-gateway-b", "ws-gateway-c"] {
        let gateway = &services[name];
        assert_eq!(gateway["profiles"][0].as_str(), Some("instances"), "{name}");
        let env = &gateway["environment"];
        assert_eq!(
            env["WS_GATEWAY_CLUSTER"].as_str(),
            Some("postgres"),
            "{name}"
        );
        assert!(
            env["DATABASE_URL"]
                .as_str()
                .is_some_and(|u| u.starts_with("postgres://")),
            "{name}: one shared PostgreSQL"
        );
        assert!(env["AMQP_URL"].as_str().is_some(), "{name}: AMQP_URL");
        ids.insert(env["WS_GATEWAY_INSTANCE_ID"].as_str().unwrap().to_owned());
        assert!(gateway["healthcheck"].is_mapping(), "{name}: healthcheck");
        assert_eq!(
            gateway["depends_on"]["postgres"]["condition"].as_str(),
            Some("service_healthy"),
            "{name}"
        );
    }
    assert_eq!(ids.len(), 3, "distinct instance ids: {ids:?}");
}
