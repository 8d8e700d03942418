//! End to end: the real app against the fake Bybit, with the real RabbitMQ and PostgreSQL.
//! Each test drives the gateway the way its users do (REST, `/ws`, queues) and checks what
//! arrives at the far end. The stack and the binary runner live in `crate::support`.

mod balances;
mod broker;
mod database;
mod metrics;
mod queues;
mod seed_client;
mod spool;
mod startup;
mod ws;
