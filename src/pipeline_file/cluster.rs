//! `[cluster]`: the lease timings and shared budgets of the cluster control plane (spec section
//! 11), and the check that they make sense together.

use std::time::Duration;

use serde::Deserialize;

/// Timings of the cluster control plane (spec section 11); read only in cluster mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// How often the owned leases are renewed (one statement) and the heartbeat written.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// How long a lease lasts after its last renewal, judged by the database clock. The owner
    /// stops publishing earlier, at its own deadline (`ttl - renew_interval` after it sent the
    /// renewal).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often the controller looks at the database even when no `NOTIFY` arrived.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// New upstream connections the whole cluster may open per `connect_window`.
    pub connect_budget: u32,
    /// The window of `connect_budget`.
    #[serde(with = "humantime_serde")]
    pub connect_window: Duration,
    /// Bybit REST requests the whole cluster may send per `rest_window` (Bybit counts per IP).
    pub rest_budget: u32,
    /// The window of `rest_budget`.
    #[serde(with = "humantime_serde")]
    pub rest_window: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            renew_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(3),
            poll_interval: Duration::from_millis(500),
            connect_budget: 300,
            connect_window: Duration::from_secs(300),
            rest_budget: 600,
            rest_window: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// Checks the timings make sense together (the owner's deadline comes before expiry).
    pub fn check(&self) -> Result<(), String> {
        if self.renew_interval.is_zero() || self.poll_interval.is_zero() {
            return Err("cluster: renew_interval and poll_interval must be above 0".to_owned());
        }
        if self.lease_ttl < self.renew_interval * 2 {
            return Err("cluster: lease_ttl must be at least twice renew_interval".to_owned());
        }
        if self.connect_budget == 0 || self.connect_window.is_zero() {
            return Err("cluster: connect_budget and connect_window must be above 0".to_owned());
        }
        if self.rest_budget == 0 || self.rest_window.is_zero() {
            return Err("cluster: rest_budget and rest_window must be above 0".to_owned());
        }
        Ok(())
    }
}
