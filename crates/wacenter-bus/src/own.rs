//! What wacenter itself sent, so that its echo (the provider shows our own sends to the webhook
//! as `from_me` messages) is never forwarded to OtomaX: with `OTOMAX_FORWARD_OUTGOING` on, the
//! two systems would otherwise answer each other forever.
//!
//! Two records in the `wa_own_messages` bucket:
//! * the provider's **message id** of every send, written after the send answers (retried
//!   through a NATS outage, not best-effort);
//! * a **fingerprint** (recipient and text) written just *before* a send, when outgoing
//!   forwarding is on: a send whose answer was lost never learns its id, and the echo can
//!   arrive before the id is recorded. The echo is recognised by the same account, chat and
//!   text within the bucket's lifetime (an hour).

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wacenter_proto::names;

use crate::claims::{Claims, OutageRetry};
use crate::BusError;

/// A fingerprint record: which account sent it (empty when the sender did not name one).
#[derive(Debug, Serialize, Deserialize)]
struct Fingerprint {
    account: String,
    outbound_id: String,
}

#[derive(Clone)]
pub struct OwnMessages {
    records: Claims,
}

impl OwnMessages {
    pub fn new(records: Claims) -> Self {
        Self { records }
    }

    /// Records the provider id of a message we sent, retrying through a NATS outage (about a
    /// minute): an id that is not recorded lets the echo through to the fingerprint check only.
    pub async fn record_sent(&self, provider_message_id: &str, outbound_id: &str) {
        let value: Bytes = serde_json::json!({"outbound_id": outbound_id, "at": Utc::now()})
            .to_string()
            .into();
        let key = names::kv_key(provider_message_id);
        let mut retry = OutageRetry::new();
        while let Err(e) = self.records.put(&key, value.clone()).await {
            if !retry.again("record our own message id", &e).await {
                tracing::error!(error = %e, "gave up recording our own message id; only its fingerprint recognises its echo");
                return;
            }
        }
    }

    /// Records that `text` is about to go to `recipient` (digits) from `account`, before the
    /// send, so that its echo is known even if the send's answer never comes.
    pub async fn record_sending(
        &self,
        account: &str,
        recipient: &str,
        text: &str,
        outbound_id: &str,
    ) -> Result<(), BusError> {
        let record = Fingerprint {
            account: account.to_string(),
            outbound_id: outbound_id.to_string(),
        };
        let value = serde_json::to_vec(&record).expect("fingerprints serialize");
        self.records
            .put(&fingerprint_key(recipient, text), value.into())
            .await
    }

    /// Whether a `from_me` message is an echo of ours: its id was recorded, or we sent the same
    /// text to the same chat from the same account within the bucket's lifetime.
    pub async fn is_ours(
        &self,
        message_id: &str,
        account: &str,
        chat: &str,
        text: &str,
    ) -> Result<bool, BusError> {
        if self.records.exists(&names::kv_key(message_id)).await? {
            return Ok(true);
        }
        let Some(recipient) = chat_digits(chat) else {
            return Ok(false);
        };
        let Some(value) = self.records.raw(&fingerprint_key(&recipient, text)).await? else {
            return Ok(false);
        };
        Ok(serde_json::from_slice::<Fingerprint>(&value)
            .is_ok_and(|f| f.account.is_empty() || account.is_empty() || f.account == account))
    }
}

/// `echo-<32 hex>`: SHA-256 of the recipient's digits and the text, so no message text is kept
/// in a key.
fn fingerprint_key(recipient: &str, text: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(recipient.as_bytes());
    hash.update([0]);
    hash.update(text.as_bytes());
    format!("echo-{}", &hex::encode(hash.finalize())[..32])
}

/// The phone digits of a chat JID (`628123@s.whatsapp.net`, `628123:12@s.whatsapp.net`) or
/// number; `None` for a group or anything without them.
fn chat_digits(chat: &str) -> Option<String> {
    let user = chat.split('@').next()?.split(':').next()?;
    let digits: String = user.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty() && !chat.ends_with("@g.us")).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_jid_and_the_number_it_was_sent_to_match() {
        assert_eq!(
            chat_digits("628123456789@s.whatsapp.net").as_deref(),
            Some("628123456789")
        );
        assert_eq!(
            chat_digits("628123456789:12@s.whatsapp.net").as_deref(),
            Some("628123456789")
        );
        assert_eq!(chat_digits("120363025246125486@g.us"), None);
        assert_eq!(
            fingerprint_key("628123456789", "Saldo"),
            fingerprint_key("628123456789", "Saldo")
        );
        assert_ne!(
            fingerprint_key("62812345678", "9Saldo"),
            fingerprint_key("628123456789", "Saldo")
        );
    }
}
