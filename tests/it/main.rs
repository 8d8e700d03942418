//! Integration tests: the real app on port 0 against an in-process fake Bybit, the real
//! RabbitMQ and the real PostgreSQL of this machine (isolated per test).

mod amqp;
mod helpers;
mod proxy;
mod publish;
mod smoke;
