//! The wire contract between wacenter services, documented for humans in `proto/README.md` and as
//! JSON Schemas in `proto/schemas/`. Every payload is JSON with a `version` field so `nats sub` and
//! `nats stream view` show it readably and readers can refuse what they do not understand.

pub mod names;
mod payloads;

pub use payloads::*;

/// Version of every payload defined here. Bump on incompatible changes.
pub const PAYLOAD_VERSION: u32 = 1;
