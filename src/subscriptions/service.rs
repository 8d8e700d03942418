//! The one subscription service: the REST API, `/ws` and the pipeline file all go through it.
//!
//! Service subscriptions (REST) write their row first and only then edit the desired state
//! (registry, bindings), so a failed database write changes nothing upstream. `/ws` clients
//! and the pipeline file only hold topics in the registry (no rows, no bindings). The source
//! and the RabbitMQ sink reconcile toward the desired state on their own.

use std::time::Duration;

use anyhow::Context;
use sea_orm::{DatabaseConnection, DbErr, SqlErr};
use uuid::Uuid;

use super::{
    Binding, ChannelType, QueueBindings, Requester, SubscriptionHandle, TopicKey, TopicSpec,
};
use crate::{
    pipeline_file::StartupSubscription,
    store::{entity::subscriptions::Model, subscriptions as q},
};

/// How long a create waits for the broker to hold the new binding (when a broker is set).
const BIND_WAIT: Duration = Duration::from_secs(2);

/// What the process can serve, fixed at startup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// Bybit credentials are set: private channels are possible.
    pub private_available: bool,
    /// A broker is configured: a create waits (briefly) for its binding to be applied.
    pub broker_configured: bool,
    /// Several instances share the rows (cluster mode): each topic's status is written by its
    /// owner (`cluster::status`), never from this instance's own registry, which knows only
    /// the topics this instance subscribes.
    pub shared_status: bool,
}

/// Why a create was refused (besides an invalid [`TopicSpec`], which the caller reports).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    /// A private channel without Bybit credentials.
    #[error(
        "channel_type {0} is a private stream and needs Bybit credentials; set BYBIT_API_KEY and BYBIT_API_SECRET and restart the gateway"
    )]
    PrivateUnavailable(ChannelType),
    /// The name is reserved for the pipeline file's subscriptions.
    #[error(
        "field `requesting_service`: {:?} is reserved for the pipeline file's subscriptions",
        Requester::PIPELINE_FILE_NAME
    )]
    ReservedService,
    /// The database failed.
    #[error("database error")]
    Database(#[from] DbErr),
}

/// Creates, cancels and restores subscriptions; holds topics for `/ws` and the pipeline file;
/// writes what Bybit said back to the rows (see `writeback`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    pub(super) registry: SubscriptionHandle,
    pub(super) bindings: QueueBindings,
    pub(super) db: DatabaseConnection,
    pub(super) caps: Capabilities,
}

impl Subscriptions {
    /// A service over the desired state and the `subscriptions` table.
    pub fn new(
        registry: SubscriptionHandle,
        bindings: QueueBindings,
        db: DatabaseConnection,
        caps: Capabilities,
    ) -> Self {
        Self {
            registry,
            bindings,
            db,
            caps,
        }
    }

    /// The desired topic set (read it; edit it through this service).
    pub(crate) fn registry(&self) -> &SubscriptionHandle {
        &self.registry
    }

    /// Subscribes `service` to `spec`: stores the row (or finds the same active one), acquires
    /// the topic and binds the service's queue. `true` when the row is new.
    pub(crate) async fn create(
        &self,
        spec: &TopicSpec,
        service: &str,
    ) -> Result<(Model, bool), CreateError> {
        if spec.channel_type.is_private() && !self.caps.private_available {
            return Err(CreateError::PrivateUnavailable(spec.channel_type));
        }
        let requester = Requester::named(service);
        if !requester.is_service() {
            return Err(CreateError::ReservedService);
        }
        let db = &self.db;
        let topic = spec.topic();
        let (row, created) = match q::find_active(db, spec.category, &topic, service).await? {
            Some(row) => (row, false),
            None => match q::insert(db, new_row(spec, service)).await {
                Ok(row) => (row, true),
                // A concurrent identical request won the partial unique index.
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    let row = q::find_active(db, spec.category, &topic, service).await?;
                    (row.ok_or(CreateError::Database(e))?, false)
                }
                Err(e) => return Err(e.into()),
            },
        };
        let key = spec.key();
        self.registry.acquire(&key, requester);
        let version = self.bindings.bind(Binding::of(service, spec));
        if self.caps.broker_configured {
            let _ = tokio::time::timeout(BIND_WAIT, self.bindings.wait_applied(version)).await;
        }
        // The topic may already be live for someone else: show its real status at once (in a
        // cluster its owner writes it within a second).
        let local = (!self.caps.shared_status)
            .then(|| self.registry.status(&key))
            .flatten();
        let row = match local {
            Some(status) if created && status.as_str() != row.status => {
                let (s, m) = (status.as_str(), status.message());
                q::set_status(db, key.endpoint, &key.topic, s, m).await?;
                q::find(db, row.id).await?.unwrap_or(row)
            }
            _ => row,
        };
        if created {
            tracing::info!(id = %row.id, topic = %row.topic, service = %row.requesting_service, "Subscription created.");
        }
        Ok((row, created))
    }

    /// Rows matching `filter`, oldest first.
    pub(crate) async fn list(&self, filter: &q::ListFilter) -> Result<Vec<Model>, DbErr> {
        q::list(&self.db, filter).await
    }

    /// One row by id.
    pub(crate) async fn get(&self, id: Uuid) -> Result<Option<Model>, DbErr> {
        q::find(&self.db, id).await
    }

    /// Cancels one subscription (`None`: no such id; a cancelled one is returned unchanged).
    pub(crate) async fn cancel(&self, id: Uuid) -> Result<Option<Model>, DbErr> {
        let Some(row) = q::find(&self.db, id).await? else {
            return Ok(None);
        };
        Ok(self.cancel_rows(vec![row]).await?.into_iter().next())
    }

    /// Cancels every active subscription of `service`; returns the cancelled rows.
    pub(crate) async fn cancel_service(&self, service: String) -> Result<Vec<Model>, DbErr> {
        let filter = q::ListFilter {
            is_active: Some(true),
            requesting_service: Some(service),
            ..q::ListFilter::default()
        };
        let rows = q::list(&self.db, &filter).await?;
        self.cancel_rows(rows).await
    }

    /// Cancels rows (already cancelled ones are returned unchanged), releases their topics and
    /// removes bindings no other active subscription of the service still uses.
    async fn cancel_rows(&self, rows: Vec<Model>) -> Result<Vec<Model>, DbErr> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if !row.is_active {
                out.push(row);
                continue;
            }
            let row = q::cancel(&self.db, row).await?;
            tracing::info!(id = %row.id, topic = %row.topic, service = %row.requesting_service, "Subscription cancelled.");
            if let Some(spec) = TopicSpec::of_row(&row) {
                let service = row.requesting_service.as_str();
                self.registry
                    .release(&spec.key(), Requester::named(service));
                let binding = Binding::of(service, &spec);
                let filter = q::ListFilter {
                    is_active: Some(true),
                    requesting_service: Some(service.to_owned()),
                    ..q::ListFilter::default()
                };
                let still_used = q::list(&self.db, &filter)
                    .await?
                    .iter()
                    .filter_map(TopicSpec::of_row)
                    .any(|s| Binding::of(service, &s) == binding);
                if !still_used {
                    self.bindings.unbind(&binding);
                }
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Loads the active subscriptions of the database into the registry (and their queue
    /// bindings), so a restart resubscribes them. Their status starts again at `pending`
    /// (alone; in a cluster the topics' owners keep writing it).
    pub(crate) async fn restore(&self) -> Result<usize, DbErr> {
        let rows = q::active(&self.db).await?;
        let mut restored = 0usize;
        for row in &rows {
            let Some(spec) = TopicSpec::of_row(row) else {
                tracing::warn!(id = %row.id, topic = %row.topic, "Stored subscription no longer validates; skipped.");
                continue;
            };
            let key = spec.key();
            let service = row.requesting_service.as_str();
            self.registry.acquire(&key, Requester::named(service));
            self.bindings.bind(Binding::of(service, &spec));
            if !self.caps.shared_status {
                q::set_status(&self.db, key.endpoint, &key.topic, "pending", None).await?;
            }
            restored += 1;
        }
        tracing::info!(restored, "Restored active subscriptions from the database.");
        Ok(restored)
    }

    /// Holds the pipeline file's startup subscriptions (as [`Requester::PipelineFile`], or the
    /// service they name). Errors name the entry's bad field.
    pub(crate) fn hold_startup(&self, subs: &[StartupSubscription]) -> anyhow::Result<()> {
        for sub in subs {
            let channel: ChannelType = sub
                .channel_type
                .parse()
                .context("pipeline file: subscriptions.channel_type")?;
            let spec = TopicSpec::new(
                channel,
                sub.category,
                sub.symbol.as_deref(),
                sub.depth,
                sub.interval.as_deref(),
            )
            .map_err(|e| anyhow::anyhow!("pipeline file: subscriptions.{}: {e}", e.field()))?;
            self.registry
                .acquire(&spec.key(), Requester::named(&sub.requesting_service));
        }
        Ok(())
    }

    /// `requester` (a `/ws` client) wants `key`.
    pub(crate) fn hold(&self, key: &TopicKey, requester: &Requester) {
        self.registry.acquire(key, requester);
    }

    /// `requester` no longer wants `key`.
    pub(crate) fn release(&self, key: &TopicKey, requester: &Requester) {
        self.registry.release(key, requester);
    }

    /// `requester` no longer wants anything (a `/ws` client left).
    pub(crate) fn release_all(&self, requester: &Requester) {
        self.registry.release_all(requester);
    }
}

fn new_row<'a>(spec: &'a TopicSpec, service: &'a str) -> q::NewRow<'a> {
    q::NewRow {
        channel_type: spec.channel_type.as_str(),
        category: spec.category,
        symbol: spec.symbol.as_deref(),
        depth: spec.depth,
        interval: spec.interval.as_deref(),
        topic: spec.topic(),
        endpoint: spec.endpoint(),
        service,
    }
}
