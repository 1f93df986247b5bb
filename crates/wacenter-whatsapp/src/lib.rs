//! WhatsApp providers: everything wacenter knows about GOWA and the Meta Cloud API, and nothing
//! about NATS or OtomaX.
//!
//! - [`signature`]: verify (and, for the simulator, create) webhook signatures.
//! - [`gowa`], [`meta`]: turn a verified webhook body into [`InboundMessage`]s ([`Parsed`]).
//! - [`phone`]: phone numbers and JIDs to the international digits OtomaX wants.
//! - [`send`], [`gowa_send`], [`meta_send`]: send a text and classify failures for retrying.
//!
//! Ingress: verify the signature over the raw bytes, then `parse_webhook`; publish
//! `Parsed::Messages`, answer 200 to `Parsed::Ignored`, 400 to a [`ParseError`].
//! Reply: build a [`GowaSender`] or [`MetaSender`] (or a [`Sender`]) around the shared HTTP
//! client and act on [`SendError::class`].

pub mod gowa;
pub mod gowa_send;
pub mod meta;
pub mod meta_send;
pub mod phone;
pub mod send;
pub mod signature;
pub mod split;
pub mod webhook;

pub use gowa_send::{parse_basic_auth, DeviceStatus, GowaSender, DEVICE_ID_HEADER};
pub use meta::verify_challenge;
pub use meta_send::{MetaSender, META_MAX_TEXT_CHARS};
pub use phone::{is_group_jid, is_lid_jid, is_person_jid, jid_server, jid_user, normalize_phone};
pub use send::{
    SendError, SendErrorClass, Sender, SentMessage, DEFAULT_SEND_TIMEOUT, META_PAIR_RATE_WAIT,
};
pub use signature::{
    sign_hub, verify_hub_signature, verify_waha_sha512, SignatureError, HUB_SIGNATURE_HEADER,
    WAHA_SIGNATURE_HEADER,
};
pub use split::{sendable, split_text, WHATSAPP_MAX_TEXT_CHARS};
pub use wacenter_proto::{InboundMessage, Provider};
pub use webhook::{ParseError, Parsed};

/// Parses a webhook body from `provider` (see [`gowa::parse_webhook`] and
/// [`meta::parse_webhook`]).
pub fn parse_webhook(
    provider: Provider,
    raw_body: &[u8],
    received_at: chrono::DateTime<chrono::Utc>,
    default_cc: &str,
) -> Result<Parsed, ParseError> {
    match provider {
        Provider::Gowa => gowa::parse_webhook(raw_body, received_at, default_cc),
        Provider::Meta => meta::parse_webhook(raw_body, received_at, default_cc),
    }
}

/// An HTTP client for unit tests: reqwest is built without a TLS provider, so install ring first
/// (services do the same through `wacenter_otomax::client::shared_http_client()`).
#[cfg(test)]
pub(crate) fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .expect("a default client builds once a TLS provider is installed")
}
