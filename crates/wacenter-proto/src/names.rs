//! Names of streams, subjects, durable consumers, KV buckets and headers.

/// The lane of the OtomaX server named `default` (the one the seed's settings make): its
/// subjects and consumers keep the names a one-server deployment has always had.
pub const DEFAULT_LANE: &str = "default";

/// Every OtomaX server has a lane of its own: its subjects, and durable consumers that take
/// only those, each with its own concurrency, so a server that is down or slow never holds up
/// another's messages (spec §3a). The default server's subjects are the plain ones
/// (`wa.inbound.gowa`); another server's end in its name (`wa.inbound.gowa.jaya`).
fn in_lane(base: &str, server: &str) -> String {
    if server == DEFAULT_LANE {
        base.to_string()
    } else {
        format!("{base}.{server}")
    }
}

/// The default lane's consumer is named after the role; another server's after the role and
/// the server (`forwarder-jaya`).
fn consumer_of(role: &str, server: &str) -> String {
    if server == DEFAULT_LANE {
        role.to_string()
    } else {
        format!("{role}-{server}")
    }
}

/// Inbound WhatsApp messages, one subject per provider (and server): `wa.inbound.gowa`,
/// `wa.inbound.meta`, `wa.inbound.gowa.jaya`.
pub const INBOUND_STREAM: &str = "WA_INBOUND";
pub const INBOUND_SUBJECTS: &str = "wa.inbound.>";
pub fn inbound_subject(provider: crate::Provider, server: &str) -> String {
    in_lane(&format!("wa.inbound.{}", provider.as_str()), server)
}

/// Outbound WhatsApp messages: auto-replies and OtomaX outbox deliveries.
pub const OUTBOUND_STREAM: &str = "WA_OUTBOUND";
pub const OUTBOUND_SUBJECTS: &str = "wa.outbound.>";
pub const OUTBOUND_AUTO_REPLY: &str = "wa.outbound.autoreply";
pub const OUTBOUND_OUTBOX: &str = "wa.outbound.outbox";
/// Auto-replies (and notices) to messages that went to `server`.
pub fn auto_reply_subject(server: &str) -> String {
    in_lane(OUTBOUND_AUTO_REPLY, server)
}
/// Outbox rows `server` posted.
pub fn outbox_subject(server: &str) -> String {
    in_lane(OUTBOUND_OUTBOX, server)
}

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

/// Durable pull consumers, named after the role (and server) so every replica binds the same
/// one.
pub const FORWARDER_CONSUMER: &str = "forwarder";
pub const REPLY_CONSUMER: &str = "reply";

/// The forwarder's consumer of `server`'s lane, and the subjects it takes.
pub fn forwarder_lane(server: &str) -> (String, Vec<String>) {
    let filters = if server == DEFAULT_LANE {
        crate::Provider::ALL
            .iter()
            .map(|p| inbound_subject(*p, server))
            .collect()
    } else {
        vec![format!("wa.inbound.*.{server}")]
    };
    (consumer_of(FORWARDER_CONSUMER, server), filters)
}

/// The reply service's consumer of `server`'s lane, and the subjects it takes.
pub fn reply_lane(server: &str) -> (String, Vec<String>) {
    let filters = if server == DEFAULT_LANE {
        vec![OUTBOUND_AUTO_REPLY.to_string(), OUTBOUND_OUTBOX.to_string()]
    } else {
        vec![format!("wa.outbound.*.{server}")]
    };
    (consumer_of(REPLY_CONSUMER, server), filters)
}

/// KV bucket: inbound claims, one per WhatsApp message. A copy that arrives after its `_exp`
/// is refused as expired whatever the bucket says, so a claim need only outlive `_exp`
/// (at most [`MAX_EXP`]) and the provider's retries.
pub const FORWARDED_BUCKET: &str = "wa_forwarded";
/// KV bucket: claims of outbox rows that carry a `kode`, which OtomaX may post again (its
/// callback retries, a restart) for a day.
pub const DELIVERED_BUCKET: &str = "wa_delivered";
/// KV bucket: claims of auto-replies, expired notices and outbox rows without a `kode`: only
/// their own redeliveries and the forwarder's re-publishing of a message still before `_exp`
/// can repeat them.
pub const REPLIED_BUCKET: &str = "wa_replied";
/// KV bucket: provider message ids (and fingerprints) of messages wacenter sent, so their
/// echoes are never forwarded back. An echo comes within seconds.
pub const OWN_MESSAGES_BUCKET: &str = "wa_own_messages";

/// KV bucket: when each WhatsApp account may send next (`WA_SEND_RATE`, an account's
/// `send_rate`), shared by every reply replica so that three replicas do not send three times
/// the rate. One small record per account; it only matters for the next second.
pub const PACING_BUCKET: &str = "wa_pacing";

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);

/// Every idempotency bucket and how long its records live (max age): each as long as the
/// promise it serves needs and no longer, since nats-server keeps about 300 bytes of memory per
/// live record (contract §9; the bench measures it).
pub const BUCKETS: [(&str, std::time::Duration); 4] = [
    (FORWARDED_BUCKET, HOUR),
    (DELIVERED_BUCKET, std::time::Duration::from_secs(24 * 3600)),
    (REPLIED_BUCKET, HOUR),
    (OWN_MESSAGES_BUCKET, HOUR),
];

/// The longest `OTOMAX_EXP_SECONDS` the inbound claims' hour covers, with room for a backlog's
/// delay and clock differences between WhatsApp and us.
pub const MAX_EXP: std::time::Duration = std::time::Duration::from_secs(50 * 60);

/// The bucket that holds an outbound message's claim: outbox rows with a `kode` are kept for a
/// day, everything else for an hour.
pub fn outbound_bucket(outbox_kode: Option<i64>) -> &'static str {
    if outbox_kode.is_some() {
        DELIVERED_BUCKET
    } else {
        REPLIED_BUCKET
    }
}

/// Headers. Names are case-sensitive on NATS.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_WA_MESSAGE_ID: &str = "Wa-Message-Id";

/// The message trail (spec §4): every step of every message, kept `TRAIL_RETENTION_DAYS`.
pub const TRAIL_STREAM: &str = "WA_TRAIL";
/// Every step about one phone number: `wa.trail.p.<digits>` (`unknown` when there is none).
pub const TRAIL_PHONE_SUBJECTS: &str = "wa.trail.p.>";
/// The keys that find a message's steps, in a stream of their own: a lookup scans the keys,
/// which are a small fraction of the trail's bytes, then reads the steps from the sequence a
/// key points at.
pub const TRAIL_KEYS_STREAM: &str = "WA_TRAIL_KEYS";
/// Keys: `wa.trail.k.<yyyymmdd>.<00..ff>`.
pub const TRAIL_KEY_SUBJECTS: &str = "wa.trail.k.>";

/// The subject of the steps about `phone`. One subject per phone number, not per message:
/// nats-server keeps state for every subject in memory, and phone numbers are few (a business's
/// resellers) where messages are hundreds of thousands a week.
pub fn trail_phone_subject(phone: &str) -> String {
    let token: String = phone
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    if token.is_empty() {
        "wa.trail.p.unknown".to_string()
    } else {
        format!("wa.trail.p.{token}")
    }
}

/// `key`'s bucket (a WhatsApp message id, a `kode_inbox`, an outbox `kode`): one of 256, by
/// FNV-1a of the key, so a lookup reads 1/256 of the keys and the subjects stay few.
fn trail_key_bucket(key: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.trim().bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:02x}", hash & 0xff)
}

/// The subject that holds `key`, recorded on `day` (UTC): `wa.trail.k.<yyyymmdd>.<bucket>`.
/// By day, so nats-server's per-subject index (first and last block of each subject) lets a
/// lookup read one day's keys without touching the others' blocks, newest day first.
pub fn trail_key_subject(key: &str, day: chrono::NaiveDate) -> String {
    format!(
        "wa.trail.k.{}.{}",
        day.format("%Y%m%d"),
        trail_key_bucket(key)
    )
}

/// Every day's subject of `key`'s bucket: `wa.trail.k.*.<bucket>`.
pub fn trail_key_days(key: &str) -> String {
    format!("wa.trail.k.*.{}", trail_key_bucket(key))
}

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
    fn the_default_lane_keeps_the_one_server_names_and_lanes_never_overlap() {
        use crate::Provider;
        assert_eq!(
            inbound_subject(Provider::Gowa, DEFAULT_LANE),
            "wa.inbound.gowa"
        );
        assert_eq!(
            inbound_subject(Provider::Meta, "jaya"),
            "wa.inbound.meta.jaya"
        );
        assert_eq!(auto_reply_subject("jaya"), "wa.outbound.autoreply.jaya");
        assert_eq!(outbox_subject(DEFAULT_LANE), OUTBOUND_OUTBOX);
        assert_eq!(
            forwarder_lane(DEFAULT_LANE),
            (
                "forwarder".to_string(),
                vec!["wa.inbound.gowa".to_string(), "wa.inbound.meta".to_string()]
            )
        );
        assert_eq!(
            reply_lane("jaya"),
            (
                "reply-jaya".to_string(),
                vec!["wa.outbound.*.jaya".to_string()]
            )
        );
        // Each subject is taken by exactly one lane's consumer (a work queue allows no more).
        let matches = |filter: &str, subject: &str| {
            let (f, s): (Vec<_>, Vec<_>) =
                (filter.split('.').collect(), subject.split('.').collect());
            f.len() == s.len() && f.iter().zip(&s).all(|(f, s)| *f == "*" || f == s)
        };
        let lanes = [DEFAULT_LANE, "jaya", "makmur"];
        for server in lanes {
            for subject in [
                inbound_subject(Provider::Gowa, server),
                inbound_subject(Provider::Meta, server),
            ] {
                let takers: Vec<_> = lanes
                    .iter()
                    .filter(|l| forwarder_lane(l).1.iter().any(|f| matches(f, &subject)))
                    .collect();
                assert_eq!(takers, [&server], "{subject}");
            }
            for subject in [auto_reply_subject(server), outbox_subject(server)] {
                let takers: Vec<_> = lanes
                    .iter()
                    .filter(|l| reply_lane(l).1.iter().any(|f| matches(f, &subject)))
                    .collect();
                assert_eq!(takers, [&server], "{subject}");
            }
        }
    }

    #[test]
    fn trail_subjects_are_few_and_valid() {
        assert_eq!(
            trail_phone_subject("6281234567890"),
            "wa.trail.p.6281234567890"
        );
        assert_eq!(trail_phone_subject(""), "wa.trail.p.unknown");
        assert_eq!(trail_phone_subject("12.3 *>"), "wa.trail.p.123");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let a = trail_key_subject("3EB0C1", day);
        assert_eq!(a, trail_key_subject(" 3EB0C1 ", day));
        assert!(
            a.starts_with("wa.trail.k.20261203.") && a.len() == "wa.trail.k.20261203.00".len(),
            "{a}"
        );
        let bucket = a.rsplit('.').next().unwrap();
        assert_eq!(trail_key_days("3EB0C1"), format!("wa.trail.k.*.{bucket}"));
        let buckets: std::collections::HashSet<String> = (0..10_000)
            .map(|n| trail_key_subject(&n.to_string(), day))
            .collect();
        assert_eq!(buckets.len(), 256);
    }

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
