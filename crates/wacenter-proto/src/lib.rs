//! The wire contract between wacenter services, documented for humans in `proto/README.md` and as
//! JSON Schemas in `proto/schemas/`. Every payload is JSON with a `version` field so `nats sub` and
//! `nats stream view` show it readably and readers can refuse what they do not understand.

mod domain;
pub mod names;
mod payloads;

pub use domain::{
    phone_or_empty, ExpWindow, InboundId, OutboundId, PhoneNumber, PHONE_MAX_DIGITS,
    PHONE_MIN_DIGITS,
};
pub use payloads::*;

/// Version of every payload defined here. Bump on incompatible changes.
pub const PAYLOAD_VERSION: u32 = 1;

/// The JSON Schemas of `proto/schemas/`, embedded so tests anywhere in the workspace can check
/// what they capture from NATS against the contract (bring your own validator, e.g. the
/// `jsonschema` crate, as a dev-dependency). All are JSON Schema draft 2020-12 documents.
pub mod schemas {
    /// [`crate::InboundMessage`] on `wa.inbound.<provider>`.
    pub const INBOUND_MESSAGE: &str =
        include_str!("../../../proto/schemas/inbound-message.v1.json");
    /// [`crate::OutboundMessage`] on `wa.outbound.autoreply` and `wa.outbound.outbox`.
    pub const OUTBOUND_MESSAGE: &str =
        include_str!("../../../proto/schemas/outbound-message.v1.json");
    /// [`crate::DeadLetter`] on `wa.deadletter.inbound` and `wa.deadletter.outbound`.
    pub const DEAD_LETTER: &str = include_str!("../../../proto/schemas/dead-letter.v1.json");
    /// The idempotency record stored in the `wa_forwarded` and `wa_delivered` KV buckets.
    pub const CLAIM_RECORD: &str = include_str!("../../../proto/schemas/claim-record.v1.json");

    /// [`crate::TrailEvent`] on `wa.trail.p.<phone>`.
    pub const TRAIL_EVENT: &str = include_str!("../../../proto/schemas/trail-event.v1.json");
    /// [`crate::TrailKey`] on `wa.trail.k.<day>.<hash>`.
    pub const TRAIL_KEY: &str = include_str!("../../../proto/schemas/trail-key.v1.json");

    /// Every schema with its file name under `proto/schemas/`.
    pub const ALL: [(&str, &str); 6] = [
        ("inbound-message.v1.json", INBOUND_MESSAGE),
        ("outbound-message.v1.json", OUTBOUND_MESSAGE),
        ("dead-letter.v1.json", DEAD_LETTER),
        ("claim-record.v1.json", CLAIM_RECORD),
        ("trail-event.v1.json", TRAIL_EVENT),
        ("trail-key.v1.json", TRAIL_KEY),
    ];

    /// The schema of the payloads published on `subject` (`wa.inbound.gowa`,
    /// `wa.outbound.outbox`, `wa.deadletter.inbound`, …), or `None` outside wacenter's streams.
    pub fn for_subject(subject: &str) -> Option<&'static str> {
        if subject.starts_with("wa.inbound.") {
            Some(INBOUND_MESSAGE)
        } else if subject.starts_with("wa.outbound.") {
            Some(OUTBOUND_MESSAGE)
        } else if subject.starts_with("wa.deadletter.") {
            Some(DEAD_LETTER)
        } else if subject.starts_with("wa.trail.p.") {
            Some(TRAIL_EVENT)
        } else if subject.starts_with("wa.trail.k.") {
            Some(TRAIL_KEY)
        } else {
            None
        }
    }
}
