//! Integration tests: the real app on port 0 against an in-process fake Bybit, the real
//! RabbitMQ and the real PostgreSQL of this machine (isolated per test).

mod amqp;
mod api;
mod downstream;
mod e2e;
mod fake_bybit;
mod helpers;
mod metrics;
mod packaging;
mod persistence;
mod proxy;
mod publish;
mod smoke;
mod source;
mod wsclient;
