//! Payload types. Field names are the JSON names (snake_case); see `proto/schemas/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{phone_or_empty, InboundId, OutboundId, PhoneNumber};

/// The WhatsApp provider a message came from or goes out through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Gowa,
    Meta,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Gowa, Provider::Meta];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gowa => "gowa",
            Self::Meta => "meta",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One WhatsApp chat message, normalized from any provider's webhook. Subject `wa.inbound.<provider>` (`.<server>` for a server other than `default`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub version: u32,
    pub provider: Provider,
    /// Our WhatsApp account that received it: GOWA device JID or Meta phone_number_id ("" if unknown).
    pub account: String,
    /// The provider's message id.
    pub message_id: String,
    /// Chat JID (GOWA) or the sender's number (Meta).
    pub chat: String,
    /// Sender phone, digits only, international form (on the wire "" if the provider hid it).
    #[serde(with = "phone_or_empty")]
    pub sender: Option<PhoneNumber>,
    pub sender_name: String,
    /// When WhatsApp says the message was sent; `_exp` is computed from it.
    pub timestamp: DateTime<Utc>,
    /// Text, or the caption of a media message.
    pub text: String,
    pub is_group: bool,
    pub from_me: bool,
    pub has_media: bool,
    /// `image`, `video`, `audio`, `document`, `sticker`, … when `has_media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// When ingress received the webhook.
    pub received_at: DateTime<Utc>,
}

impl InboundMessage {
    /// Unique across providers and accounts: provider + account + message id. Used as
    /// `Nats-Msg-Id` and as the idempotency key.
    pub fn dedupe_id(&self) -> InboundId {
        InboundId::new(self.provider, &self.account, &self.message_id)
    }
}

/// Why a message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboundKind {
    /// OtomaX's immediate answer to an InsertInbox.
    AutoReply,
    /// A row OtomaX pushed to the outbox callback.
    Outbox,
}

/// One WhatsApp message to send. Subject `wa.outbound.autoreply` or `wa.outbound.outbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub version: u32,
    /// Unique id (see [`OutboundId`]'s constructors); `Nats-Msg-Id` and the idempotency key.
    pub id: OutboundId,
    pub kind: OutboundKind,
    /// Provider and account to send through (the ones that received the original); `None`/""
    /// means the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default)]
    pub account: String,
    /// Recipient, digits in international form (normalized by whoever queued the message).
    pub to: PhoneNumber,
    pub text: String,
    /// Provider message id to quote, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The WhatsApp message this answers (auto-replies), for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// The OtomaX server (routing table name) an outbox row came from, which UpdateStatusOutbox
    /// goes back to; absent: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otomax: Option<String>,
    /// OtomaX outbox row id: reported back with UpdateStatusOutbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_kode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kode_inbox: Option<i64>,
    /// Which part of a long text this is (2, 3, …): the reply service sends a text longer than
    /// its provider takes in parts, each a message of its own that carries the rest of the text
    /// on; absent on the first part and on a text sent whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    pub created_at: DateTime<Utc>,
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// `_exp` passed before OtomaX could be reached; never sent late.
    Expired,
    /// OtomaX refused the credentials.
    AuthFailed,
    /// OtomaX answered `ok:false` or a 4xx.
    Rejected,
    /// Transient errors outlasted every retry.
    RetriesExhausted,
    /// A worker stopped while the request was on the wire: it may or may not have arrived.
    /// Not retried automatically (that could do it twice); check the peer, then replay.
    Uncertain,
    /// The payload could not be understood.
    Invalid,
    /// The WhatsApp provider refused the message for good.
    SendFailed,
    /// A correctly signed webhook that ingress could not read (a provider changed its payload):
    /// kept raw so `dlq replay` can parse it again after an upgrade.
    Unreadable,
    /// The WhatsApp account that received the message is not in the routing table, and the
    /// table has no server named `default` to take it.
    UnknownAccount,
    /// The sender's phone number cannot be known (WhatsApp gave only a LID): never forwarded
    /// under a made-up number.
    NoPhoneNumber,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::AuthFailed => "auth_failed",
            Self::Rejected => "rejected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Uncertain => "uncertain",
            Self::Invalid => "invalid",
            Self::SendFailed => "send_failed",
            Self::Unreadable => "unreadable",
            Self::UnknownAccount => "unknown_account",
            Self::NoPhoneNumber => "no_phone_number",
        }
    }
}

/// A dead letter. Subject `wa.deadletter.inbound` or `wa.deadletter.outbound`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub version: u32,
    /// The id of the original (inbound dedupe id or outbound id).
    pub id: String,
    pub reason: DeadLetterReason,
    /// The last error, in words.
    pub error: String,
    /// Subject the original was consumed from; replay publishes it there again.
    pub subject: String,
    /// The original payload, unchanged.
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

/// One step of a message's way through wacenter, on `wa.trail.p.<phone>` (stream `WA_TRAIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailStep {
    /// Ingress accepted the webhook and queued the message.
    Received,
    /// The forwarder did not forward it (`detail` says why: group, media, own message, …).
    Skipped,
    /// OtomaX answered InsertInbox: `kode_inbox`, `status`, `statusDesc` in `detail`, the
    /// auto-reply queued (if any) in `reply`.
    Forwarded,
    /// InsertInbox failed for good (`detail`: the class and OtomaX's answer or the error).
    OtomaxFailed,
    /// A notice was queued for a sender whose command OtomaX never processed.
    NoticeQueued,
    /// The WhatsApp provider took a message (`detail`: the provider's message id).
    Sent,
    /// The WhatsApp provider refused a message for good, or it could not be sent.
    SendFailed,
    /// OtomaX posted an outbox row (`kode`, `kode_inbox`, `text`).
    OutboxReceived,
    /// The delivery of an outbox row was reported to OtomaX with UpdateStatusOutbox (`status`).
    OutboxStatus,
    /// The message became a dead letter (`detail`: the reason and the error).
    DeadLettered,
    /// An operator replayed its dead letter.
    Replayed,
}

impl TrailStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Skipped => "skipped",
            Self::Forwarded => "forwarded",
            Self::OtomaxFailed => "otomax_failed",
            Self::NoticeQueued => "notice_queued",
            Self::Sent => "sent",
            Self::SendFailed => "send_failed",
            Self::OutboxReceived => "outbox_received",
            Self::OutboxStatus => "outbox_status",
            Self::DeadLettered => "dead_lettered",
            Self::Replayed => "replayed",
        }
    }
}

/// Longest `text` / `reply` kept in a trail step, in characters: enough to recognise a command
/// or an answer, small enough that a week of steps stays on disk under 1 KB a message.
pub const TRAIL_TEXT_CHARS: usize = 120;

/// One step of one message. Subject `wa.trail.p.<phone>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailEvent {
    pub version: u32,
    pub at: DateTime<Utc>,
    pub step: TrailStep,
    /// The message: an inbound dedupe id (`<provider>:<account>:<message id>`) or an outbound id
    /// (`autoreply:<inbound id>`, `outbox:<kode>`, …).
    pub id: String,
    /// The reseller's phone number, digits only ("" when unknown).
    pub phone: String,
    /// The OtomaX server (routing table name), when known and not `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otomax: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kode_inbox: Option<i64>,
    /// OtomaX outbox row id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kode: Option<i64>,
    /// OtomaX's status code (inbox status after InsertInbox, 20/40 for UpdateStatusOutbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The message's text (a reseller's command, an outbox row, a text sent), shortened to
    /// [`TRAIL_TEXT_CHARS`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The auto-reply queued with a `forwarded` step, shortened the same way.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reply: String,
}

impl TrailEvent {
    /// A step `step` of message `id` about `phone`, now; the rest filled in by the caller.
    pub fn new(step: TrailStep, id: impl Into<String>, phone: impl Into<String>) -> Self {
        Self {
            version: crate::PAYLOAD_VERSION,
            at: Utc::now(),
            step,
            id: id.into(),
            phone: phone.into(),
            otomax: None,
            kode_inbox: None,
            kode: None,
            status: None,
            detail: String::new(),
            text: String::new(),
            reply: String::new(),
        }
    }

    /// `text`, shortened to [`TRAIL_TEXT_CHARS`] characters (with "…" when cut).
    pub fn shorten(text: &str) -> String {
        let mut chars = text.chars();
        let kept: String = chars.by_ref().take(TRAIL_TEXT_CHARS).collect();
        if chars.next().is_some() {
            format!("{kept}…")
        } else {
            kept
        }
    }
}

/// What kind of key a [`TrailKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrailKeyKind {
    /// A WhatsApp message id (the provider's).
    MessageId,
    /// OtomaX's inbox id, from InsertInbox.
    KodeInbox,
    /// OtomaX's outbox row id.
    Kode,
}

/// Where to find the steps of the message `key` names: the phone subject, when, and the
/// sequence in `WA_TRAIL` of the step that first knew the key. Subject
/// `wa.trail.k.<day>.<hash of key>` (see `names::trail_key_subject`), stream `WA_TRAIL_KEYS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailKey {
    pub version: u32,
    pub key: String,
    pub kind: TrailKeyKind,
    pub phone: String,
    pub at: DateTime<Utc>,
    /// `WA_TRAIL`'s sequence of the step this key was recorded with: a lookup reads the
    /// phone's steps from there, not from a time (no clock to trust, no scan of what came
    /// before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The id of the inbound message the key belongs to (a `kode_inbox` key: the message that
    /// InsertInbox answered; a key recorded by a replay: the replayed message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `kode_inbox` an outbox row answers (a `kode` key), to find the message it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kode_inbox: Option<i64>,
}

impl TrailKey {
    /// `key` (of `kind`) as recorded with `step`, the step that first knows it: on its phone, at
    /// its time, a `kode_inbox` key naming the message, a `kode` key carrying the row's
    /// `kode_inbox`. `seq` is filled in once the step is stored.
    pub fn for_step(step: &TrailEvent, key: impl Into<String>, kind: TrailKeyKind) -> Self {
        Self {
            version: crate::PAYLOAD_VERSION,
            key: key.into(),
            kind,
            phone: step.phone.clone(),
            at: step.at,
            seq: None,
            // A message id keyed again by a replay names the replayed message: its first keys
            // are older, and a lookup goes on to them.
            message: match kind {
                TrailKeyKind::KodeInbox => Some(step.id.clone()),
                TrailKeyKind::MessageId if step.step == TrailStep::Replayed => {
                    Some(step.id.clone())
                }
                _ => None,
            },
            kode_inbox: if kind == TrailKeyKind::Kode {
                step.kode_inbox
            } else {
                None
            },
        }
    }
}
