//! The planned hand-over of a lease between two live instances (make-before-break).
//!
//! The taker asks for a unit held elsewhere (`handover_to`), subscribes upstream and says ready
//! once the exchange acknowledged the unit's topics here ([`Controller::ask_for_handover`]);
//! [`Controller::keep_handed_in`] keeps a unit handed to this instance subscribed until the
//! renewal shows it held. The owner hands a unit over once its taker is ready
//! ([`Controller::hand_out`], [`Controller::transfer_out`]: stop publishing, transfer, then let
//! go upstream), and on SIGTERM hands every lease over before leaving
//! ([`Controller::hand_over_and_leave`]). Claiming, renewing and releasing live in the parent
//! module.

use std::{collections::HashSet, time::Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::{
    cluster::{
        Unit,
        store::{self, LeaseRow, Snapshot},
    },
    telemetry as m,
};

impl Controller {
    /// A planned move of `unit`, targeted here and held by `lease`'s live owner: asks for it,
    /// ready once the exchange acknowledged it here.
    pub(super) async fn ask_for_handover(&self, unit: &Unit, lease: &LeaseRow) {
        // Ready once the exchange acknowledged every topic of the unit on our connection
        // (or, for a unit it never acknowledges, e.g. a rejected topic, after five renew
        // intervals: the old owner then lets go of a topic nobody receives anyway).
        let since = self.p.ownership.taking_since(unit);
        let ready = since.is_some_and(|t| {
            self.p.ownership.unit_active(unit) || t.elapsed() >= self.p.config.renew_interval * 5
        });
        match store::request_handover(&self.p.db, unit, &self.id, ready).await {
            Ok(true) => {
                tracing::debug!(unit = %unit.name(), ready, from = ?lease.owner,
                    "Cluster: asked for a hand-over.")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "Cluster: handover request failed."),
        }
    }

    /// Keeps in `taking` every unit handed over to this instance that the renewal has not shown
    /// yet, whatever the target says now: until the renewal makes it held, `taking` is what
    /// keeps it subscribed upstream (the old owner has let go already), and its events stay
    /// held rather than dropped. A target that changed meanwhile (an instance joined) moves it
    /// on later as a planned move of ours. A unit no longer targeted here whose lease the
    /// snapshot shows elsewhere may have been transferred to us since the snapshot: withdrawing
    /// the request tells (after it, no transfer to us can happen). Renews at once when any such
    /// unit is ours, so it is published without waiting a renew interval (at most four
    /// renewals an interval, whatever happens).
    pub(super) async fn keep_handed_in(&mut self, snap: &Snapshot, taking: &mut HashSet<Unit>) {
        let mut handed_in = false;
        for lease in &snap.leases {
            if lease.live
                && lease.owner.as_deref() == Some(self.id.as_str())
                && self.p.ownership.held(&lease.unit).is_none()
                && self.p.ownership.taking_since(&lease.unit).is_some()
            {
                taking.insert(lease.unit.clone());
                handed_in = true;
            }
        }
        for unit in self.p.ownership.taking_units() {
            if taking.contains(&unit) {
                continue;
            }
            match store::withdraw_handover(&self.p.db, &unit, &self.id).await {
                Ok(Some(owner)) if owner == self.id => {
                    tracing::debug!(unit = %unit.name(),
                        "Cluster: a unit no longer targeted here was handed over meanwhile; keeping it.");
                    taking.insert(unit);
                    handed_in = true;
                }
                Ok(_) => {}
                Err(e) => {
                    // Unknown: stay subscribed; the next round asks again.
                    tracing::debug!(error = %e, "Cluster: cannot withdraw a handover request.");
                    taking.insert(unit);
                }
            }
        }
        if handed_in {
            let soonest = self.last_renew + self.p.config.renew_interval / 4;
            self.next_renew = self.next_renew.min(soonest.max(Instant::now()));
        }
    }

    /// Hands `unit` to `to` (asked and ready): stops publishing it first (holding its events),
    /// transfers the lease, and lets go upstream only once the transfer happened (the held
    /// events are dropped: the taker has them); else the unit is ours again (same epoch, the
    /// held events published). The upstream subscription stays throughout
    /// (`Ownership::take_out`), so a source woken meanwhile by another change keeps it.
    async fn transfer_out(&self, unit: &Unit, to: &str) -> Result<bool, sea_orm::DbErr> {
        let out = self.p.ownership.take_out(unit);
        let done = store::transfer(&self.p.db, unit, &self.id, to, self.ttl()).await;
        match (&done, out) {
            (Ok(true), _) | (_, None) => self.p.ownership.handed_out(unit),
            (_, Some(held)) => self.p.ownership.put_back(unit.clone(), held),
        }
        done
    }

    /// Hands `unit` to `t`, its target, whose request is ready; true when the lease changed
    /// hands here (or may have: the unit is ours again only if the transfer did not happen).
    pub(super) async fn hand_out(&self, unit: &Unit, t: &str) -> bool {
        match self.transfer_out(unit, t).await {
            Ok(true) => {
                tracing::info!(unit = %unit.name(), to = %t, "Cluster: lease handed over.");
                metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "handed_out")
                    .increment(1);
                true
            }
            Ok(false) => true,
            Err(e) => {
                tracing::debug!(error = %e, "Cluster: handover failed.");
                false
            }
        }
    }

    /// SIGTERM, make-before-break: stop counting as live (so the others' targets exclude this
    /// instance and they start taking its units over: subscribe, then say ready), keep renewing
    /// and publishing, and hand each lease over once its taker is ready. Bounded by
    /// `lease_ttl + 2 × renew_interval`; with no other live instance, nothing to wait for.
    pub(super) async fn hand_over_and_leave(&mut self, wake: &Notify, stop: &CancellationToken) {
        if let Err(e) = store::leave(&self.p.db, &self.id).await {
            tracing::warn!(error = %e, "Cluster: cannot announce leaving.");
            return;
        }
        let cfg = self.p.config.clone();
        let until = Instant::now() + cfg.lease_ttl + cfg.renew_interval * 2;
        tracing::info!(instance = %self.id, units = self.p.ownership.owned_all_count(), "Cluster: leaving; handing leases over.");
        while self.holds_any() && Instant::now() < until {
            if Instant::now() >= self.next_renew {
                let sent = Instant::now();
                match store::renew(&self.p.db, &self.id, cfg.lease_ttl, true).await {
                    Ok(held) => {
                        let deadline = sent + cfg.lease_ttl.saturating_sub(cfg.renew_interval);
                        self.p
                            .ownership
                            .renewed(sent, deadline, held.into_iter().collect());
                        self.next_renew = sent + cfg.renew_interval;
                    }
                    Err(_) => {
                        metrics::counter!(m::CLUSTER_RENEW_FAILURES).increment(1);
                        self.next_renew = Instant::now() + cfg.renew_interval / 4;
                    }
                }
            }
            let Ok(snap) = store::snapshot(&self.p.db, cfg.lease_ttl).await else {
                break;
            };
            if !snap.instances.iter().any(|i| i.live && i.id != self.id) {
                break;
            }
            for lease in &snap.leases {
                if lease.owner.as_deref() != Some(self.id.as_str()) || !lease.live {
                    continue;
                }
                let (Some(to), true) = (&lease.handover_to, lease.handover_ready) else {
                    continue;
                };
                if let Ok(true) = self.transfer_out(&lease.unit, to).await {
                    tracing::info!(unit = %lease.unit.name(), to = %to, "Cluster: lease handed over (leaving).");
                    metrics::counter!(m::CLUSTER_OWNERSHIP_CHANGES, "change" => "handed_out")
                        .increment(1);
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(cfg.poll_interval.min(cfg.renew_interval)) => {}
            }
        }
    }
}
