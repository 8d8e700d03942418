//! ws-gateway: a Bybit v5 WebSocket gateway.
//!
//! ```text
//! source (Bybit sockets) → decode → classify → enrich → tee ─→ persistence (sea-orm)
//!                                                        └─→ publish (RabbitMQ) + fan-out (/ws)
//! ```
//!
//! Module map: [`config`] and [`pipeline_file`] (settings), [`telemetry`] (logs, metric names),
//! [`app`] (wiring), [`shutdown`] (signals, supervision), [`event`] (types between stages),
//! [`source`] (Bybit connections and the desired subscription set), [`pipeline`] (stages),
//! [`sink`] (RabbitMQ, database), [`store`] (entities, queries), [`api`] (REST),
//! [`downstream`] (`/ws`), [`topics`] (request → Bybit topic), [`wire`] (the Bybit frame format
//! and the one parse of each frame), [`health`], [`backoff`].
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod api;
pub mod app;
pub mod backoff;
pub mod config;
pub mod downstream;
pub mod event;
pub mod health;
pub mod pipeline;
pub mod pipeline_file;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod topics;
pub mod wire;
