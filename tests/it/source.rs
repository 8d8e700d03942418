//! The source stage against the fake Bybit: `source::spawn` driven directly (its output stream
//! is observed here, [`crate::support::source::Harness`]), and the real app / binary for
//! subscription and shutdown behaviour.

mod app;
mod direct;
mod failed;
mod outage;
mod subscriptions;
mod trades;
