//! OtomaX Open API client.
//!
//! The token (`token`), the typed endpoint calls (`client`, `types`), the error taxonomy (`error`)
//! and the retry policy (`retry`) exactly as `shared/reference/otomax-open-api.md` describes them.
//! Nothing here knows about NATS or WhatsApp: the forwarder, the callback service, the CLI and the
//! simulator all build on it.

pub mod client;
pub mod error;
pub mod lenient;
pub mod retry;
pub mod token;
pub mod types;

pub use client::{ClientConfig, OtomaxClient, Response};
pub use error::{FailureClass, OtomaxError};
pub use retry::{RetryDecision, RetryPolicy};
pub use token::Signer;
pub use types::*;

/// Every OtomaX endpoint wacenter calls, by its real (PascalCase) name.
pub const ENDPOINTS: &[&str] = &[
    "Test",
    "InsertInbox",
    "GetRs",
    "GetSaldoRs",
    "GetTrx",
    "SetOutboxCallback",
    "GetOutboxCallback",
    "UpdateStatusOutbox",
];

/// Formats an `_exp` value: RFC3339, UTC, whole seconds, `Z` suffix (e.g. `2025-10-18T20:30:05Z`).
pub fn format_exp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
