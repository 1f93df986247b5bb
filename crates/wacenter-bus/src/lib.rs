//! NATS JetStream plumbing shared by the services.
//!
//! * [`Bus`]: one connection per process, the declared topology (streams, consumers, buckets,
//!   `proto/README.md`), and publishing that waits for JetStream's ack with `Nats-Msg-Id` dedupe;
//! * [`worker`]: the pull-consumer loop with bounded concurrency, progress acks while a handler
//!   works, `Disposition`s (ack, retry later, dead-letter) and graceful shutdown;
//! * [`claims`]: create-if-absent idempotency records in a KV bucket;
//! * [`own`]: what wacenter sent, so its echoes are never forwarded;
//! * [`trail`]: every step of every message, and finding one message's steps again.

pub mod claims;
mod connection;
pub mod deadletters;
pub mod own;
pub mod trail;
pub mod worker;

pub use async_nats::jetstream::kv;
pub use async_nats::HeaderMap;
pub use connection::{
    kv_bucket_stream, server_addrs, work_queue_stream, Bus, BusError, PublishOutcome, Topology,
};
pub use worker::{Delivery, Disposition, WorkerConfig};
