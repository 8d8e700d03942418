//! ws-gateway: a Bybit v5 WebSocket gateway.
//!
//! ```text
//! source (Bybit sockets) → decode → classify → enrich ─┬→ persistence tee (sea-orm)
//!                                                       ├→ dispatch (/ws)
//!                                                       └→ publish (RabbitMQ)
//! ```
//!
//! Module map: [`config`] and [`pipeline_file`] (settings), [`telemetry`] (logs, the metric
//! table, shared counters), [`app`] (wiring), [`topology`] (pipeline plus sinks, attached in one
//! place), [`shutdown`] (signals, supervision), [`event`] (types between stages), `buffer`
//! (the one bounded buffer), [`subscriptions`] (topic vocabulary, desired set, queue bindings,
//! the subscription service), [`source`] (Bybit connections), [`pipeline`] (stages), [`sink`]
//! (RabbitMQ, database, `/ws` feed), [`store`] (entities, queries), [`api`] (REST),
//! [`downstream`] (`/ws`), [`wire`] (the Bybit frame format and the one parse of each frame),
//! [`health`], [`backoff`].
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod api;
pub mod app;
pub mod backoff;
pub(crate) mod buffer;
pub mod catchup;
pub mod cluster;
pub mod config;
pub mod downstream;
pub mod event;
pub mod health;
pub mod pipeline;
pub mod pipeline_file;
pub mod rest;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
pub mod topology;
pub mod wire;
