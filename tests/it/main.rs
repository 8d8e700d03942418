//! Integration tests: the real app on port 0 against an in-process fake Bybit (the dev-only
//! `fake-bybit` crate), the real RabbitMQ and the real PostgreSQL of this machine (isolated per
//! test). One folder or file per level; every helper lives once, in [`support`].

mod api;
mod budget;
mod catchup;
mod cluster;
mod config;
mod control_plane;
mod downstream;
mod e2e;
mod instances;
mod metrics;
mod packaging;
mod persistence;
mod publish;
mod relay;
mod rest;
mod smoke;
mod source;
mod support;
