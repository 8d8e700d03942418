//! Wiring: builds every part from [`Settings`] (the source, the [`topology`] of pipeline and
//! sinks, the HTTP side), binds the HTTP port, supervises the tasks, and stops them in order
//! (source first, then the stages drain, then the sinks flush).

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use poem::{
    Route, Server,
    listener::{Acceptor, Listener, TcpListener},
};
use secrecy::ExposeSecret;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    api, catchup,
    cluster::{
        self, Ownership,
        budget::{BudgetConfig, ConnectBudget},
        controller::ControllerParams,
        relay::{self, Relay, RelayConfig},
    },
    config::{ClusterMode, Settings},
    downstream,
    event::{Event, EventClass},
    health::HealthBoard,
    rest::{self, RestClient, RestPolicy, ServerClock},
    shutdown::Supervisor,
    sink,
    source::{self, SourceParams, gate::GateConfig},
    state::AppState,
    store,
    subscriptions::{
        Capabilities, QueueBindings, SubscriptionHandle, SubscriptionRegistry, Subscriptions,
    },
    telemetry,
    topology::{self, TopologyParams},
};

/// A running gateway.
#[derive(Debug)]
pub struct App {
    api_addr: SocketAddr,
    rest: RestClient,
    supervisor: Supervisor,
    /// Cancelled first on stop: the source closes its sockets and its stream ends.
    source_stop: CancellationToken,
    /// Cluster mode: cancelled once the controller has handed its leases over on stop.
    cluster_left: Option<CancellationToken>,
    shutdown_timeout: Duration,
    registry: SubscriptionHandle,
    health: Arc<HealthBoard>,
    events: broadcast::Sender<Arc<Event>>,
}

impl App {
    /// Builds and starts every component. Ports may be 0; see [`App::api_addr`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let metrics = telemetry::metrics_handle();
        let supervisor = Supervisor::new(CancellationToken::new());
        let health = Arc::new(HealthBoard::default());
        let registry = SubscriptionRegistry::new_handle();
        let pipeline_file = &settings.pipeline;

        if settings.server.api_key_generated {
            tracing::info!(
                api_key = settings.server.api_key.expose_secret(),
                "No WS_GATEWAY_API_KEY set; generated one for this run."
            );
        }

        let db = store::connect(&settings.database_url)
            .await
            .context("opening the database (DATABASE_URL)")?;
        health.set_database(crate::health::ComponentState::Up);
        let ownership = match settings.cluster {
            ClusterMode::Off => Ownership::solo(settings.instance_id.clone()),
            ClusterMode::Postgres => Ownership::member(settings.instance_id.clone()),
        };
        tracing::info!(
            instance = %settings.instance_id,
            cluster = ownership.is_cluster(),
            "Instance id."
        );
        let bindings = QueueBindings::default();
        let caps = Capabilities {
            private_available: settings.bybit.credentials.is_some(),
            broker_configured: settings.amqp_url.is_some(),
            shared_status: ownership.is_cluster(),
        };
        let subscriptions =
            Subscriptions::new(registry.clone(), bindings.clone(), db.clone(), caps);
        subscriptions
            .restore()
            .await
            .context("restoring subscriptions")?;
        subscriptions.hold_startup(&pipeline_file.subscriptions)?;

        let source_stop = CancellationToken::new();
        // Bybit REST: server time for the private `auth` and REST signatures (synced at start
        // and every few minutes when private streams are configured).
        let clock = if settings.bybit.credentials.is_some() {
            ServerClock::pending()
        } else {
            ServerClock::local()
        };
        let mut rest_client = RestClient::new(
            &settings.bybit.rest_url,
            settings.bybit.credentials.clone(),
            clock.clone(),
            RestPolicy::default(),
            source_stop.clone(),
        );
        // Cluster mode: Bybit's limits are the cluster's, counted in PostgreSQL.
        let budgets = ownership.is_cluster().then(|| {
            let share = |budget: u32| BudgetConfig {
                fallback_share: (budget / 3).max(1),
                ..BudgetConfig::default()
            };
            let cfg = &pipeline_file.cluster;
            let connect = ConnectBudget::new(
                db.clone(),
                ownership.instance_id(),
                BudgetConfig {
                    budget: cfg.connect_budget,
                    window: cfg.connect_window,
                    ..share(cfg.connect_budget)
                },
            );
            let rest = ConnectBudget::new(
                db.clone(),
                ownership.instance_id(),
                BudgetConfig {
                    kind: "rest".to_owned(),
                    budget: cfg.rest_budget,
                    window: cfg.rest_window,
                    ..share(cfg.rest_budget)
                },
            );
            (connect, rest)
        });
        if let Some((_, rest)) = &budgets {
            rest_client = rest_client.with_budget(rest.clone());
        }
        if settings.bybit.credentials.is_some() {
            supervisor.spawn(
                "rest-clock-sync",
                rest_client
                    .clone()
                    .run_clock_sync(rest::CLOCK_SYNC_EVERY, source_stop.clone()),
            );
        }
        // The REST catch-up after every private (re)connect, with its broker-confirmed cursor.
        let (catchup, confirmed) =
            if settings.bybit.credentials.is_some() && pipeline_file.catchup.enabled {
                let cfg = pipeline_file.catchup.clone();
                let cursors = catchup::cursor::load(&db).await;
                let (tx, rx) = tokio::sync::mpsc::channel(catchup::cursor::CHANNEL_CAPACITY);
                supervisor.spawn(
                    "catchup-cursor",
                    catchup::cursor::run_writer(
                        db.clone(),
                        cursors.clone(),
                        rx,
                        cfg.cursor_flush,
                        ownership.clone(),
                    ),
                );
                let engine = catchup::Engine::new(
                    rest_client.clone(),
                    cfg.clone(),
                    cursors,
                    supervisor.clone(),
                    source_stop.clone(),
                );
                let gate = GateConfig {
                    hook: engine,
                    max_hold: cfg.max_hold,
                    max_frames: cfg.max_hold_frames,
                };
                (Some(gate), Some(tx))
            } else {
                (None, None)
            };
        let frames = source::spawn(
            SourceParams {
                bybit: settings.bybit.clone(),
                config: pipeline_file.source.clone(),
                registry: registry.clone(),
                rest: Some(rest_client.clone()),
                health: health.clone(),
                capacity: pipeline_file.stages.decode.capacity,
                clock,
                catchup,
                ownership: ownership.clone(),
                budget: budgets.map(|(connect, _)| connect),
            },
            &supervisor,
            source_stop.clone(),
        );

        let (broadcast_tx, _) =
            broadcast::channel(pipeline_file.downstream.broadcast_capacity.max(1));
        // Cluster mode: `/ws` clients here also get the topics other instances own, through
        // this instance's relay queue.
        if ownership.is_cluster()
            && let Some(url) = &settings.amqp_url
        {
            let nodes = sink::rabbitmq::relay_nodes(url).context("AMQP_URL for the /ws relay")?;
            let (relay_tx, relay_rx) = tokio::sync::watch::channel(BTreeSet::new());
            supervisor.spawn(
                "ws-relay-topics",
                relay::follow(
                    registry.clone(),
                    ownership.clone(),
                    relay_tx,
                    supervisor.shutdown.clone(),
                ),
            );
            let relay = Relay::new(
                RelayConfig::new(nodes, &settings.service_name, ownership.instance_id()),
                relay_rx,
                broadcast_tx.clone(),
            );
            supervisor.spawn("ws-relay", relay.run(supervisor.shutdown.clone()));
        }
        let persist_classes = pipeline_file
            .persistence
            .classes
            .iter()
            .map(|c| c.parse::<EventClass>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)
            .context("pipeline file: persistence.classes")?;
        topology::spawn(
            frames,
            TopologyParams {
                stages: pipeline_file.stages.clone(),
                publish: pipeline_file.publish.clone(),
                service_name: settings.service_name.clone(),
                amqp_url: settings.amqp_url.clone(),
                bindings: bindings.clone(),
                persist_classes,
                database: Some(db.clone()),
                persistence: pipeline_file.persistence.clone(),
                broadcast: broadcast_tx.clone(),
                health: health.clone(),
                stats: Default::default(),
                confirmed,
                ownership: ownership.clone(),
            },
            &supervisor,
        );

        let acceptor =
            TcpListener::bind(SocketAddr::new(settings.server.host, settings.server.port))
                .into_acceptor()
                .await
                .with_context(|| {
                    format!("binding {}:{}", settings.server.host, settings.server.port)
                })?;
        let api_addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("the HTTP listener has no socket address")?;
        tracing::info!(address = %api_addr, "Listening for HTTP (REST, /ws, /metrics).");
        ownership.set_api_addr(api_addr.to_string());
        let cluster_left = ownership.is_cluster().then(CancellationToken::new);
        if let Some(left) = &cluster_left {
            supervisor.spawn_critical(
                "cluster-controller",
                cluster::controller::run(
                    ControllerParams {
                        db: db.clone(),
                        url: settings.database_url.clone(),
                        config: pipeline_file.cluster.clone(),
                        ownership: ownership.clone(),
                        registry: Some(registry.clone()),
                        api_addr: api_addr.to_string(),
                        leave: supervisor.shutdown.clone(),
                        left: left.clone(),
                    },
                    source_stop.clone(),
                ),
            );
        }
        if ownership.is_cluster() {
            supervisor.spawn(
                "cluster-status",
                cluster::status::share(db.clone(), ownership.clone(), supervisor.shutdown.clone()),
            );
        }
        let state = AppState {
            health: health.clone(),
            subscriptions,
            db,
            metrics,
            events: broadcast_tx.clone(),
            api_key: settings.server.api_key.clone(),
            private_available: settings.bybit.credentials.is_some(),
            broker_configured: settings.amqp_url.is_some(),
            downstream: pipeline_file.downstream.clone(),
            http: pipeline_file.http.clone(),
            shutdown: supervisor.shutdown.clone(),
            ownership: ownership.clone(),
        };
        api::spawn_background(
            &state,
            &supervisor,
            pipeline_file.persistence.last_event_flush,
        );
        let routes = Route::new()
            .nest("/", api::routes(state.clone()))
            .at("/ws", downstream::endpoint(state, &supervisor));
        let stop = supervisor.shutdown.clone();
        let http_limits = pipeline_file.http.clone();
        let acceptor = api::limits::LimitedAcceptor::new(
            acceptor,
            http_limits.max_connections,
            http_limits.header_timeout,
        );
        supervisor.spawn_critical("http", async move {
            Server::new_with_acceptor(acceptor)
                .idle_timeout(http_limits.idle_timeout)
                .run_with_graceful_shutdown(
                    routes,
                    stop.cancelled_owned(),
                    Some(Duration::from_secs(2)),
                )
                .await
        });

        Ok(Self {
            api_addr,
            rest: rest_client,
            supervisor,
            source_stop,
            cluster_left,
            shutdown_timeout: pipeline_file.process.shutdown_timeout,
            registry,
            health,
            events: broadcast_tx,
        })
    }

    /// The bound HTTP address (useful when the port was 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The Bybit REST client (its clock is the one the private `auth` uses).
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// Cancelling this token stops the gateway as SIGTERM does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.supervisor.shutdown.clone()
    }

    /// The desired subscription set.
    pub fn registry(&self) -> SubscriptionHandle {
        self.registry.clone()
    }

    /// The in-process fan-out point every enriched event passes (tests inject and observe here).
    pub fn events(&self) -> broadcast::Sender<Arc<Event>> {
        self.events.clone()
    }

    /// Component states.
    pub fn health(&self) -> Arc<HealthBoard> {
        self.health.clone()
    }

    /// Runs until the shutdown token is cancelled, then stops in order. Errors when a critical
    /// task died or the stop took longer than the shutdown timeout.
    pub async fn run(self) -> anyhow::Result<()> {
        self.supervisor.shutdown.cancelled().await;
        if let Some(left) = &self.cluster_left {
            // Make-before-break: the others subscribe this instance's topics before it closes
            // its connections (bounded by the controller, and by half the shutdown timeout).
            let _ = tokio::time::timeout(self.shutdown_timeout / 2, left.cancelled()).await;
        }
        tracing::info!("Stopping: closing Bybit connections, then draining the pipeline.");
        self.source_stop.cancel();
        self.supervisor.tracker.close();
        let drained =
            tokio::time::timeout(self.shutdown_timeout, self.supervisor.tracker.wait()).await;
        if drained.is_err() {
            let unfinished = self.supervisor.unfinished();
            tracing::error!(?unfinished, timeout = ?self.shutdown_timeout, "Shutdown timed out.");
            anyhow::bail!("shutdown timed out; unfinished tasks: {unfinished:?}");
        }
        if let Some(message) = self.supervisor.config_error() {
            return Err(crate::shutdown::ConfigFailure(message).into());
        }
        let failures = self.supervisor.failures();
        if !failures.is_empty() {
            anyhow::bail!("critical tasks failed: {failures:?}");
        }
        tracing::info!("Stopped cleanly.");
        Ok(())
    }
}
