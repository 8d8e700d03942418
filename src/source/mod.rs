//! The source stage: Bybit v5 WebSocket connections, reconciled toward the desired
//! subscription set, emitting a [`Stream`](futures::Stream) of [`RawFrame`]s.
//!
//! The manager here watches the [`SubscriptionRegistry`](crate::subscriptions::SubscriptionRegistry),
//! spreads each endpoint's desired topics over shards (one connection each, past Bybit's
//! 21,000 args characters per connection) and starts a [`connection`] task per shard. Each
//! connection reconnects forever with full-jitter backoff, gated by one process-wide token
//! bucket ([`rate`]). Only data frames leave the source; control frames stay inside.

mod connection;
pub mod gate;
mod link;
pub mod orderbook;
mod probe;
pub mod rate;
pub mod reconcile;
mod session;
pub mod trade_gap;

pub use link::SourceError;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::{
    config::BybitSettings,
    event::{Category, Endpoint, RawFrame},
    health::HealthBoard,
    pipeline_file::SourceConfig,
    rest::{RestClient, ServerClock},
    shutdown::Supervisor,
    subscriptions::{SubscriptionHandle, TopicKey, TopicStatus},
};
use link::ConnCtx;
use probe::Prober;
use rate::TokenBucket;

/// Everything the source needs.
#[derive(Debug, Clone)]
pub struct SourceParams {
    /// Endpoints and credentials.
    pub bybit: BybitSettings,
    /// Heartbeat, backoff, chunking.
    pub config: SourceConfig,
    /// The desired topics.
    pub registry: SubscriptionHandle,
    /// Bybit REST, for public trade recovery after a reconnect (`None`: no recovery).
    pub rest: Option<RestClient>,
    /// Where connection states are shown.
    pub health: Arc<HealthBoard>,
    /// Capacity of the output channel (the decode stage's buffer).
    pub capacity: usize,
    /// Bybit's server time, for the private `auth` `expires`.
    pub clock: ServerClock,
    /// The REST catch-up after every private (re)connect; `None` turns it off.
    pub catchup: Option<gate::GateConfig>,
    /// Cluster mode: subscribe upstream exactly the units this instance owns (or is taking over
    /// in a planned move), from the cluster's desired set; alone (`solo`), the registry's.
    pub ownership: crate::cluster::Ownership,
    /// The cluster-wide budget of new connections, asked after the local bucket before every
    /// connection attempt; `None` (cluster off) asks nothing.
    pub budget: Option<crate::cluster::budget::ConnectBudget>,
}

/// The URL of `endpoint` for these settings: under `ws_url`, except the private endpoint of the
/// demo environment when `BYBIT_WS_URL` is not overridden (`wss://stream-demo.bybit.com`).
pub fn endpoint_url_for(bybit: &BybitSettings, endpoint: Endpoint) -> String {
    let default_base = bybit.ws_url.as_str().trim_end_matches('/') == bybit.environment.ws_url();
    if endpoint == Endpoint::Private && default_base {
        return format!("{}{}", bybit.environment.private_ws_url(), endpoint.path());
    }
    endpoint_url(&bybit.ws_url, endpoint)
}

/// The URL of `endpoint` under the base `ws_url` (`wss://stream.bybit.com/v5/public/linear`).
pub fn endpoint_url(ws_url: &Url, endpoint: Endpoint) -> String {
    format!(
        "{}{}",
        ws_url.as_str().trim_end_matches('/'),
        endpoint.path()
    )
}

/// Starts the connection manager; the returned stream ends after `stop` is cancelled and every
/// connection has closed.
pub fn spawn(
    params: SourceParams,
    supervisor: &Supervisor,
    stop: CancellationToken,
) -> ReceiverStream<RawFrame> {
    let (tx, rx) = mpsc::channel(params.capacity.max(1));
    let bucket = Arc::new(TokenBucket::new(
        params.config.connect_burst,
        params.config.connect_refill,
    ));
    let prober = Arc::new(Prober::new(params.config.reconnect_probe));
    let trade_recovery = trade_gap::TradeRecovery::new(params.rest.clone());
    let manager = Manager {
        trade_recovery,
        params,
        out: tx,
        bucket,
        prober,
        supervisor: supervisor.clone(),
        stop: stop.clone(),
        endpoints: BTreeMap::new(),
        warned_private: false,
    };
    supervisor.spawn_critical("source", manager.run());
    ReceiverStream::new(rx)
}

/// The shards of one endpoint.
#[derive(Debug, Default)]
struct Shards {
    /// Topic → shard index; topics stay on their shard while wanted.
    assignment: HashMap<String, usize>,
    /// Each shard's topic set; dropping a sender retires that connection.
    senders: Vec<watch::Sender<BTreeSet<String>>>,
}

#[derive(Debug)]
struct Manager {
    params: SourceParams,
    /// Cloned into every connection; the manager's own copy is dropped when it ends, so the
    /// stream ends once the last connection has closed.
    out: mpsc::Sender<RawFrame>,
    bucket: Arc<TokenBucket>,
    prober: Arc<Prober>,
    trade_recovery: trade_gap::TradeRecovery,
    supervisor: Supervisor,
    stop: CancellationToken,
    endpoints: BTreeMap<Endpoint, Shards>,
    warned_private: bool,
}

impl Manager {
    async fn run(mut self) -> Result<(), std::convert::Infallible> {
        let mut changes = self.params.registry.changes();
        let mut owned = self.params.ownership.changes();
        for c in self.params.config.connect_on_start.clone() {
            self.ensure(Endpoint::Public(c));
        }
        // In a cluster only the owner of the private stream connects it (sync does).
        if self.params.bybit.credentials.is_some() && !self.params.ownership.is_cluster() {
            self.ensure(Endpoint::Private);
        }
        loop {
            changes.borrow_and_update();
            owned.borrow_and_update();
            self.sync();
            tokio::select! {
                () = self.stop.cancelled() => break,
                changed = changes.changed() => if changed.is_err() { break },
                changed = owned.changed() => if changed.is_err() { break },
            }
        }
        Ok(())
    }

    /// Opens shard 0 of `endpoint` if it is not open yet.
    fn ensure(&mut self, endpoint: Endpoint) {
        if !self.endpoints.contains_key(&endpoint) {
            let mut shards = Shards::default();
            self.spawn_shard(endpoint, &mut shards, BTreeSet::new());
            self.endpoints.insert(endpoint, shards);
        }
    }

    fn spawn_shard(&self, endpoint: Endpoint, shards: &mut Shards, topics: BTreeSet<String>) {
        let (tx, rx) = watch::channel(topics);
        let ctx = ConnCtx {
            endpoint,
            shard: shards.senders.len(),
            url: endpoint_url_for(&self.params.bybit, endpoint),
            clock: self.params.clock.clone(),
            environment: self.params.bybit.environment,
            config: self.params.config.clone(),
            credentials: self.params.bybit.credentials.clone(),
            registry: self.params.registry.clone(),
            health: self.params.health.clone(),
            bucket: self.bucket.clone(),
            budget: self.params.budget.clone(),
            ownership: self.params.ownership.clone(),
            prober: self.prober.clone(),
            trade_recovery: self.trade_recovery.clone(),
            trade_marks: Default::default(),
            out: self.out.clone(),
            supervisor: self.supervisor.clone(),
            topics: rx,
            failed_at: Default::default(),
            catchup: self.params.catchup.clone(),
        };
        shards.senders.push(tx);
        self.supervisor
            .spawn("source-connection", connection::run(ctx, self.stop.clone()));
    }

    /// Recomputes every endpoint's shards from the registry and hands each its topics.
    fn sync(&mut self) {
        let endpoints = Category::ALL
            .into_iter()
            .map(Endpoint::Public)
            .chain([Endpoint::Private]);
        for endpoint in endpoints {
            let desired: BTreeSet<String> = if self.params.ownership.is_cluster() {
                self.params.ownership.upstream(endpoint)
            } else {
                self.params
                    .registry
                    .desired(endpoint)
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect()
            };
            if desired.is_empty() && !self.endpoints.contains_key(&endpoint) {
                continue;
            }
            if endpoint == Endpoint::Private
                && desired.is_empty()
                && self.params.ownership.is_cluster()
            {
                // The private stream is no longer ours: close it (dropping its sender retires
                // the connection), so taking it again authenticates anew and catches up from
                // the shared cursor; an idle open socket would resume without a catch-up.
                self.endpoints.remove(&endpoint);
                continue;
            }
            if endpoint == Endpoint::Private && self.params.bybit.credentials.is_none() {
                self.refuse_private(&desired);
                continue;
            }
            self.ensure(endpoint);
            let Some(mut shards) = self.endpoints.remove(&endpoint) else {
                continue;
            };
            let config = &self.params.config;
            let max_args = if endpoint == Endpoint::Public(Category::Option) {
                config.option_args_per_connection
            } else {
                usize::MAX
            };
            let plan = reconcile::assign_shards(
                &desired,
                &shards.assignment,
                config.max_args_chars_per_connection,
                max_args,
            );
            shards.assignment = plan
                .iter()
                .enumerate()
                .flat_map(|(i, set)| set.iter().map(move |t| (t.clone(), i)))
                .collect();
            let wanted = plan.len().max(1);
            shards.senders.truncate(wanted);
            for (i, set) in plan.into_iter().enumerate() {
                match shards.senders.get(i) {
                    Some(tx) => tx.send_modify(|s| *s = set),
                    None => self.spawn_shard(endpoint, &mut shards, set),
                }
            }
            if let Some(tx) = shards.senders.first()
                && desired.is_empty()
            {
                tx.send_modify(BTreeSet::clear);
            }
            self.endpoints.insert(endpoint, shards);
        }
    }

    fn refuse_private(&mut self, desired: &BTreeSet<String>) {
        if !self.warned_private {
            self.warned_private = true;
            tracing::warn!(
                "Private topics requested, but BYBIT_API_KEY/BYBIT_API_SECRET are not set."
            );
        }
        for t in desired {
            self.params.registry.set_status(
                &TopicKey::new(Endpoint::Private, t.clone()),
                TopicStatus::Failed(
                    "private streams need BYBIT_API_KEY and BYBIT_API_SECRET".into(),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_connect_to_bybit_mainnet_paths() {
        let settings = crate::config::Settings::from_vars(&HashMap::new()).unwrap();
        let base = &settings.bybit.ws_url;
        assert_eq!(
            endpoint_url(base, Endpoint::Public(Category::Linear)),
            "wss://stream.bybit.com/v5/public/linear"
        );
        assert_eq!(
            endpoint_url(base, Endpoint::Private),
            "wss://stream.bybit.com/v5/private"
        );
        let local: Url = "ws://127.0.0.1:9100/".parse().unwrap();
        assert_eq!(
            endpoint_url(&local, Endpoint::Public(Category::Spot)),
            "ws://127.0.0.1:9100/v5/public/spot"
        );
    }

    #[test]
    fn demo_takes_private_from_the_demo_host_and_public_from_mainnet() {
        let vars = HashMap::from([("BYBIT_ENVIRONMENT".to_owned(), "demo".to_owned())]);
        let settings = crate::config::Settings::from_vars(&vars).unwrap();
        assert_eq!(
            endpoint_url_for(&settings.bybit, Endpoint::Private),
            "wss://stream-demo.bybit.com/v5/private"
        );
        assert_eq!(
            endpoint_url_for(&settings.bybit, Endpoint::Public(Category::Linear)),
            "wss://stream.bybit.com/v5/public/linear"
        );
        assert_eq!(
            settings.bybit.rest_url.as_str(),
            "https://api-demo.bybit.com/"
        );
        let mut vars = vars;
        vars.insert("BYBIT_WS_URL".into(), "ws://127.0.0.1:9100".into());
        let settings = crate::config::Settings::from_vars(&vars).unwrap();
        assert_eq!(
            endpoint_url_for(&settings.bybit, Endpoint::Private),
            "ws://127.0.0.1:9100/v5/private"
        );
    }
}
