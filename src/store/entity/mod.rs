//! sea-orm entities, one per table (the columns match `migration/`).

pub mod account_balances;
pub mod subscriptions;
