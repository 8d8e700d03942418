//! The control-plane task of one instance (cluster mode): heartbeat and renewal about every
//! second, a snapshot of the database on every change (`LISTEN ws_gateway_cluster`, with
//! polling as the fallback), the balanced target ([`super::assign`]) and the moves toward it:
//!
//! - a unit targeted here whose lease is free or expired is claimed with `epoch + 1`;
//! - a unit targeted here that a live owner holds is a planned move: this instance asks for it
//!   (`handover_to`), subscribes upstream ([`super::Ownership::upstream`] includes it), holds
//!   the unit's events in its publisher, and once the exchange acknowledged the unit's topics
//!   here says it is ready; the owner then stops publishing and hands the lease over with
//!   `epoch + 1` in one statement, letting go upstream only once that happened
//!   (make-before-break);
//! - a unit held here that no one wants any more is released;
//! - past the fencing deadline without a renewal, everything held is dropped at once.
//!
//! On SIGTERM the instance leaves make-before-break: its row stops counting as live, so the
//! others take its units over as planned moves while it keeps renewing and publishing; it hands
//! each lease over once the taker is ready, then releases what is left (no wait for expiry) and
//! cancels `left`, after which `App::run` stops the source. A stop without SIGTERM (the source
//! token) releases at once.
//!
//! The planned hand-over (asking, keeping what was handed in, transferring out, leaving) is in
//! `handover.rs`; this module claims, renews, releases and publishes the snapshot.

mod handover;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    ClusterView, InstanceView, LeaseView, Ownership, Unit,
    assign::assign,
    key_name,
    store::{self, Snapshot},
};
use crate::{pipeline_file::ClusterConfig, subscriptions::SubscriptionHandle, telemetry as m};

/// What the controller needs.
#[derive(Debug, Clone)]
pub struct ControllerParams {
    /// The shared database (PostgreSQL).
    pub db: DatabaseConnection,
    /// Its URL, for the `LISTEN` connection.
    pub url: SecretString,
    /// Timings.
    pub config: ClusterConfig,
    /// The handle the data path reads; this task fills it.
    pub ownership: Ownership,
    /// This instance's desired topics, mirrored to `cluster_desired` (`None`: wants nothing of
    /// its own).
    pub registry: Option<SubscriptionHandle>,
    /// The address other instances and operators reach this one's API at.
    pub api_addr: String,
    /// Cancelled when the process is asked to stop (SIGTERM): the controller hands its leases
    /// over (make-before-break) while the source still runs, then cancels `left`.
    pub leave: CancellationToken,
    /// Cancelled once this instance has left (its leases handed over or released).
    pub left: CancellationToken,
}

/// Runs until `stop`, then leaves the cluster.
pub async fn run(params: ControllerParams, stop: CancellationToken) -> Result<(), Infallible> {
    let mut c = Controller {
        id: params.ownership.instance_id().to_owned(),
        p: params,
        next_renew: Instant::now(),
        last_renew: Instant::now(),
        mirrored: None,
        seen: None,
    };
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(c.p.url.clone(), wake.clone(), stop.clone()));
    while let Err(e) = store::register(&c.p.db, &c.id, &c.p.api_addr).await {
        tracing::warn!(error = %e, "Cluster: cannot register this instance yet.");
        tokio::select! {
            () = stop.cancelled() => { listener.abort(); return Ok(()); }
            () = tokio::time::sleep(c.p.config.poll_interval) => {}
        }
    }
    tracing::info!(instance = %c.id, api_addr = %c.p.api_addr, "Cluster: joined.");
    let mut registry_changes = c.p.registry.as_ref().map(|r| r.changes());
    loop {
        let again = c.tick().await;
        if again {
            continue;
        }
        let deadline = c.p.ownership.deadline().filter(|_| c.holds_any());
        let poll = Instant::now() + c.p.config.poll_interval;
        let wake_at = c.next_renew.min(poll);
        tokio::select! {
            () = stop.cancelled() => break,
            () = c.p.leave.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep_until(wake_at.into()) => {}
            () = sleep_until_opt(deadline) => {
                if c.p.ownership.deadline().is_some_and(|d| Instant::now() >= d) {
                    let lost = c.p.ownership.owned_all_count();
                    tracing::warn!(instance = %c.id, units = lost, "Cluster: leases not renewed by the deadline; stopped publishing them.");
                    metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "lost").increment(lost as u64);
                    c.p.ownership.expire();
                    metrics::gauge!(m::CLUSTER_OWNED).set(0.0);
                }
            }
            changed = changed_opt(&mut registry_changes) => {
                if !changed { registry_changes = None; }
            }
        }
    }
    if !stop.is_cancelled() {
        c.hand_over_and_leave(&wake, &stop).await;
    }
    listener.abort();
    c.leave().await;
    c.p.left.cancel();
    Ok(())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn changed_opt(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// `LISTEN ws_gateway_cluster`, waking the controller on every notification; reconnects.
async fn listen(url: SecretString, wake: Arc<Notify>, stop: CancellationToken) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let attempt = async {
            let mut l = PgListener::connect(url.expose_secret()).await?;
            l.listen(store::CHANNEL).await?;
            loop {
                l.recv().await?;
                wake.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            r = attempt => if let Err(e) = r {
                tracing::debug!(error = %e, "Cluster: LISTEN connection lost; polling meanwhile.");
            },
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

struct Controller {
    id: String,
    p: ControllerParams,
    next_renew: Instant,
    /// When the last renewal was sent: a hand-over to this instance brings the next one
    /// forward, but to no sooner than a quarter of the interval after it.
    last_renew: Instant,
    /// The desired set last mirrored.
    mirrored: Option<std::collections::BTreeSet<crate::subscriptions::TopicKey>>,
    /// Every locally desired topic last announced.
    seen: Option<std::collections::BTreeSet<crate::subscriptions::TopicKey>>,
}

impl Controller {
    fn holds_any(&self) -> bool {
        self.p.ownership.owned_all_count() > 0
    }

    fn ttl(&self) -> Duration {
        self.p.config.lease_ttl
    }

    /// One round; true when something changed and another round should follow at once.
    async fn tick(&mut self) -> bool {
        self.mirror().await;
        if Instant::now() >= self.next_renew {
            self.renew().await;
        }
        let snap = match store::snapshot(&self.p.db, self.ttl()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "Cluster: snapshot failed.");
                return false;
            }
        };
        let again = self.act(&snap).await;
        self.publish_view(&snap);
        if again {
            // Learn the new epochs at once.
            self.next_renew = Instant::now();
        }
        again
    }

    async fn mirror(&mut self) {
        let Some(registry) = &self.p.registry else {
            return;
        };
        // API subscriptions are read from the shared `subscriptions` table by every instance
        // (they outlive the instance that created them, and a cancel through any instance
        // ends them); the mirror carries the rest: `/ws` clients and the pipeline file.
        let snapshot = registry.snapshot();
        let all: std::collections::BTreeSet<_> = snapshot.iter().map(|v| v.key.clone()).collect();
        if self.seen.as_ref() != Some(&all) {
            // An API subscription created or cancelled here: its row is written already (the
            // service writes the row before the registry), so wake every instance now.
            if store::notify(&self.p.db).await.is_ok() {
                self.seen = Some(all);
            }
        }
        let keys: std::collections::BTreeSet<_> = snapshot
            .into_iter()
            .filter(|v| v.holders.iter().any(|h| !h.is_service()))
            .map(|v| v.key)
            .collect();
        if self.mirrored.as_ref() == Some(&keys) {
            return;
        }
        match store::mirror_desired(&self.p.db, &self.id, &keys).await {
            Ok(()) => self.mirrored = Some(keys),
            Err(e) => tracing::debug!(error = %e, "Cluster: cannot mirror the desired set."),
        }
    }

    async fn renew(&mut self) {
        let sent = Instant::now();
        self.last_renew = sent;
        let cfg = &self.p.config;
        match store::renew(&self.p.db, &self.id, cfg.lease_ttl, false).await {
            Ok(held) => {
                let deadline = sent + cfg.lease_ttl.saturating_sub(cfg.renew_interval);
                let before = self.p.ownership.owned_all_count();
                let held: HashMap<Unit, u64> = held.into_iter().collect();
                let n = held.len();
                let handed_in = self.p.ownership.renewed(sent, deadline, held);
                if handed_in > 0 {
                    metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "handed_in")
                        .increment(handed_in as u64);
                }
                if n < before {
                    metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "lost")
                        .increment((before - n) as u64);
                }
                metrics::gauge!(m::CLUSTER_OWNED).set(n as f64);
                self.next_renew = sent + cfg.renew_interval;
            }
            Err(e) => {
                metrics::counter!(m::CLUSTER_RENEW_FAILURES).increment(1);
                tracing::warn!(error = %e, "Cluster: lease renewal failed.");
                self.next_renew = Instant::now() + cfg.renew_interval / 4;
            }
        }
    }

    /// Moves toward the target; true when a lease changed hands here.
    async fn act(&mut self, snap: &Snapshot) -> bool {
        let live: Vec<String> = snap
            .instances
            .iter()
            .filter(|i| i.live)
            .map(|i| i.id.clone())
            .collect();
        if !live.contains(&self.id) {
            // Our own heartbeat did not land (yet): claim nothing.
            return false;
        }
        let live_set: HashSet<&String> = live.iter().collect();
        let units: Vec<Unit> = snap
            .desired
            .iter()
            .map(Unit::of)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let current: HashMap<Unit, String> = snap
            .leases
            .iter()
            .filter(|l| l.live)
            .filter_map(|l| {
                let o = l.owner.as_ref()?;
                live_set.contains(o).then(|| (l.unit.clone(), o.clone()))
            })
            .collect();
        let target = assign(&live, &units, &current);
        let leases: HashMap<&Unit, &store::LeaseRow> =
            snap.leases.iter().map(|l| (&l.unit, l)).collect();
        let mut changed = false;
        let mut taking = HashSet::new();
        for (unit, owner) in &target {
            if owner != &self.id {
                continue;
            }
            let lease = leases.get(unit);
            let free = lease.is_none_or(|l| l.owner.is_none() || !l.live);
            if free {
                match store::claim(&self.p.db, unit, &self.id, self.ttl()).await {
                    Ok(Some(store::Claimed { epoch, trade_mark })) => {
                        if let Some(mark) = trade_mark {
                            tracing::debug!(unit = %unit.name(), last_trade = %mark.id,
                                "Cluster: claimed with the previous owner's last trade.");
                            self.p.ownership.inherit_trade(unit, mark);
                        }
                        tracing::info!(unit = %unit.name(), epoch, "Cluster: lease claimed.");
                        metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "claimed")
                            .increment(1);
                        changed = true;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "Cluster: claim failed."),
                }
                continue;
            }
            let Some(lease) = lease else { continue };
            if lease.owner.as_deref() == Some(self.id.as_str()) {
                // Ours already (a hand-over the renewal has not shown yet: `keep_handed_in`).
                continue;
            }
            // A planned move: subscribe first, say ready once the exchange acknowledged it.
            taking.insert(unit.clone());
            self.ask_for_handover(unit, lease).await;
        }
        self.keep_handed_in(snap, &mut taking).await;
        self.p.ownership.set_taking(taking);
        // Units held here that belong elsewhere now.
        for lease in &snap.leases {
            if lease.owner.as_deref() != Some(self.id.as_str()) || !lease.live {
                continue;
            }
            match target.get(&lease.unit) {
                Some(t) if t == &self.id => {}
                Some(t) => {
                    if lease.handover_ready && lease.handover_to.as_ref() == Some(t) {
                        changed |= self.hand_out(&lease.unit, t).await;
                    }
                }
                None => {
                    self.p.ownership.drop_unit(&lease.unit);
                    if let Err(e) = store::release(&self.p.db, &lease.unit, &self.id).await {
                        tracing::debug!(error = %e, "Cluster: release failed.");
                    }
                    metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "released")
                        .increment(1);
                    changed = true;
                }
            }
        }
        changed
    }

    fn publish_view(&self, snap: &Snapshot) {
        let leases: Vec<LeaseView> = snap
            .leases
            .iter()
            .filter(|l| l.live)
            .filter_map(|l| {
                Some(LeaseView {
                    unit: l.unit.clone(),
                    owner: l.owner.clone()?,
                    epoch: l.epoch,
                })
            })
            .collect();
        let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &leases {
            *owned.entry(l.owner.as_str()).or_default() += 1;
        }
        let instances = snap
            .instances
            .iter()
            .filter(|i| i.live)
            .map(|i| InstanceView {
                id: i.id.clone(),
                api_addr: i.api_addr.clone(),
                started_at: i.started_at,
                last_seen: i.last_seen,
                owned: owned.get(i.id.as_str()).copied().unwrap_or(0),
            })
            .collect();
        tracing::trace!(desired = ?snap.desired.iter().map(key_name).collect::<Vec<_>>());
        self.p
            .ownership
            .set_desired(snap.desired.clone(), ClusterView { instances, leases });
    }

    /// Stops counting as live, wants nothing, gives every remaining lease back at once.
    async fn leave(&mut self) {
        let held: Vec<Unit> = self.p.ownership.owned_all().into_keys().collect();
        self.p.ownership.expire();
        if let Err(e) = store::leave(&self.p.db, &self.id).await {
            tracing::warn!(error = %e, "Cluster: cannot leave cleanly; the leases will expire.");
            return;
        }
        for unit in &held {
            let _ = store::release(&self.p.db, unit, &self.id).await;
        }
        metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "released")
            .increment(held.len() as u64);
        tracing::info!(instance = %self.id, released = held.len(), "Cluster: left.");
    }
}
