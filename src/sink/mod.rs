//! Sinks: the only code that writes to the broker or the database.

pub mod postgres;
pub mod rabbitmq;
