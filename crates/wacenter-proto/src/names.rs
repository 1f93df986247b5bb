//! Names of streams, subjects, durable consumers, KV buckets and headers.

/// Inbound WhatsApp messages, one subject per provider: `wa.inbound.gowa`, `wa.inbound.meta`.
pub const INBOUND_STREAM: &str = "WA_INBOUND";
pub const INBOUND_SUBJECTS: &str = "wa.inbound.>";
pub fn inbound_subject(provider: crate::Provider) -> String {
    format!("wa.inbound.{}", provider.as_str())
}

/// Outbound WhatsApp messages: auto-replies and OtomaX outbox deliveries.
pub const OUTBOUND_STREAM: &str = "WA_OUTBOUND";
pub const OUTBOUND_SUBJECTS: &str = "wa.outbound.>";
pub const OUTBOUND_AUTO_REPLY: &str = "wa.outbound.autoreply";
pub const OUTBOUND_OUTBOX: &str = "wa.outbound.outbox";

/// Dead letters: what could not succeed, with the reason and the original message.
pub const DEADLETTER_STREAM: &str = "WA_DEADLETTER";
pub const DEADLETTER_SUBJECTS: &str = "wa.deadletter.>";
pub const DEADLETTER_INBOUND: &str = "wa.deadletter.inbound";
pub const DEADLETTER_OUTBOUND: &str = "wa.deadletter.outbound";
/// Correctly signed webhooks that could not be read, kept raw (reason `unreadable`).
pub const DEADLETTER_WEBHOOK: &str = "wa.deadletter.webhook";
/// The `subject` of an unreadable webhook's dead letter: where it came in, not a NATS subject.
pub fn webhook_letter_subject(provider: crate::Provider) -> String {
    format!("webhook.{provider}")
}

/// Durable pull consumers, named after the role so every replica binds the same one.
pub const FORWARDER_CONSUMER: &str = "forwarder";
pub const REPLY_CONSUMER: &str = "reply";

/// KV bucket: inbound idempotency records (one per WhatsApp message forwarded), kept 8 days.
pub const FORWARDED_BUCKET: &str = "wa_forwarded";
/// KV bucket: outbound idempotency records (one per outbound message), kept 8 days.
pub const DELIVERED_BUCKET: &str = "wa_delivered";
/// KV bucket: provider message ids of messages wacenter sent, so they are never forwarded back.
pub const OWN_MESSAGES_BUCKET: &str = "wa_own_messages";

/// How long idempotency records live: the contract is "at least 7 days".
pub const IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);

/// Headers. Names are case-sensitive on NATS.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_WA_MESSAGE_ID: &str = "Wa-Message-Id";

/// A KV key for any id: characters outside `[A-Za-z0-9-]` are written as `_XX` (hex), so keys
/// are valid, readable, and distinct ids never share a key.
pub fn kv_key(id: &str) -> String {
    let mut key = String::with_capacity(id.len() + 8);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            key.push(b as char);
        } else {
            key.push_str(&format!("_{b:02X}"));
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_keys_are_injective_and_valid() {
        let a = kv_key("gowa:628987654321@s.whatsapp.net:3EB0C1");
        assert_eq!(a, "gowa_3A628987654321_40s_2Ewhatsapp_2Enet_3A3EB0C1");
        assert_ne!(kv_key("a_40"), kv_key("a@"));
        assert!(kv_key("wamid.HBgL+/=é")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
