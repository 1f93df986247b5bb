//! Dead-letter tools: list what is in `WA_DEADLETTER`, and replay letters to their original
//! subject. Replaying clears the message's idempotency record (it failed, so nothing was done
//! that a second attempt could duplicate) and removes the letter once the original is queued
//! again. Two letters are not replayed as asked:
//! * an `uncertain` one needs `force`: OtomaX (or the recipient) may already have it, and only
//!   the operator, having looked, can decide that it does not;
//! * one whose record now says `done` (a later delivery finished the work) is never replayed:
//!   its record is what keeps the work from happening twice.

use wacenter_proto::{names, DeadLetter, DeadLetterReason, InboundMessage, Provider, TrailKeyKind};

use crate::claims::{ClaimState, Claims};
use crate::{Bus, BusError};

/// A dead letter and where it sits in the stream.
#[derive(Debug, Clone)]
pub struct StoredLetter {
    pub sequence: u64,
    pub letter: DeadLetter,
}

/// Every dead letter, oldest first (up to `limit`).
pub async fn list(bus: &Bus, limit: usize) -> Result<Vec<StoredLetter>, BusError> {
    let stream = bus
        .jetstream()
        .get_stream(names::DEADLETTER_STREAM)
        .await
        .map_err(|e| BusError::Setup(e.to_string()))?;
    let info = stream
        .get_info()
        .await
        .map_err(|e| BusError::Setup(e.to_string()))?;
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return Ok(out);
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if out.len() >= limit {
            break;
        }
        // Gaps are letters already replayed (deleted).
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        match serde_json::from_slice::<DeadLetter>(&msg.payload) {
            Ok(letter) => out.push(StoredLetter {
                sequence: seq,
                letter,
            }),
            Err(e) => tracing::warn!(seq, error = %e, "unreadable dead letter skipped"),
        }
    }
    Ok(out)
}

/// Which letters to replay.
#[derive(Debug, Clone)]
pub enum Selector {
    All,
    /// A letter's `id` (e.g. `gowa:628…@s.whatsapp.net:3EB0…`) or its stream sequence.
    One(String),
}

/// How to replay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Give an inbound message a new timestamp (so a new `_exp`): to re-drive expired messages
    /// on purpose.
    pub fresh: bool,
    /// Replay `uncertain` letters too, after checking that the peer does not have them.
    pub force: bool,
}

/// What replay did with one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Queued again on its original subject; the letter is gone.
    Replayed,
    /// `uncertain` and no `force`: left as it is.
    NeedsForce,
    /// Its record says the work is done: left as it is, never sent again.
    AlreadyDone,
    /// An `unreadable` webhook that this version cannot parse either: left as it is.
    StillUnreadable,
}

/// Parses a kept webhook body again: what ingress does, given to [`replay`] by the caller so
/// that this crate need not know the providers' payloads nor the routing table. Each message
/// comes with the lane (OtomaX server) it is published in.
pub type Reparse<'a> =
    &'a (dyn Fn(Provider, &[u8]) -> Result<Vec<(InboundMessage, String)>, String> + Sync);

impl ReplayOutcome {
    /// What the operator reads about a letter that was not replayed.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Replayed => "replayed",
            Self::NeedsForce => "uncertain: OtomaX (or the recipient) may already have it. Check there first; replay with --force only if it is missing",
            Self::AlreadyDone => "its record says it was done after the letter was written; replaying would do it twice",
            Self::StillUnreadable => "this version of wacenter cannot parse the webhook either; upgrade, then replay",
        }
    }
}

/// One selected letter and what became of it.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub sequence: u64,
    pub id: String,
    pub subject: String,
    pub outcome: ReplayOutcome,
}

/// Re-publishes the selected letters to their original subjects (see the module's notes on
/// `uncertain` and `done`).
pub async fn replay(
    bus: &Bus,
    selector: &Selector,
    options: ReplayOptions,
    reparse: Option<Reparse<'_>>,
) -> Result<Vec<Replayed>, BusError> {
    let letters = list(bus, usize::MAX).await?;
    let chosen: Vec<_> = letters
        .into_iter()
        .filter(|l| match selector {
            Selector::All => true,
            Selector::One(key) => l.letter.id == *key || l.sequence.to_string() == *key,
        })
        .collect();
    let stream = bus
        .jetstream()
        .get_stream(names::DEADLETTER_STREAM)
        .await
        .map_err(|e| BusError::Setup(e.to_string()))?;
    let mut done = Vec::new();
    for stored in chosen {
        let letter = &stored.letter;
        if letter.reason == DeadLetterReason::Unreadable {
            let outcome = replay_webhook(bus, &stored, reparse).await?;
            if outcome == ReplayOutcome::Replayed {
                stream
                    .delete_message(stored.sequence)
                    .await
                    .map_err(|e| BusError::Setup(e.to_string()))?;
            }
            done.push(Replayed {
                sequence: stored.sequence,
                id: letter.id.clone(),
                subject: letter.subject.clone(),
                outcome,
            });
            continue;
        }
        let bucket = if letter.subject.starts_with("wa.inbound.") {
            names::FORWARDED_BUCKET
        } else if letter.subject.starts_with("wa.outbound.") {
            names::outbound_bucket(letter.payload["outbox_kode"].as_i64())
        } else {
            tracing::warn!(seq = stored.sequence, subject = %letter.subject, "dead letter from an unknown subject; not replayed");
            continue;
        };
        let outcome = |outcome| Replayed {
            sequence: stored.sequence,
            id: letter.id.clone(),
            subject: letter.subject.clone(),
            outcome,
        };
        if letter.reason == DeadLetterReason::Uncertain && !options.force {
            done.push(outcome(ReplayOutcome::NeedsForce));
            continue;
        }
        let mut payload = letter.payload.clone();
        if options.fresh && bucket == names::FORWARDED_BUCKET {
            payload["timestamp"] = serde_json::json!(chrono::Utc::now());
        }
        let kv = bus.bucket(bucket).await?;
        let key = names::kv_key(&letter.id);
        let record = Claims::new(kv.clone()).get(&key).await?;
        if let Some((record, _)) = &record {
            if record.state == ClaimState::Done {
                done.push(outcome(ReplayOutcome::AlreadyDone));
                continue;
            }
        }
        // Only the record just read: one that became `done` meanwhile is kept.
        kv.purge_expect_revision(&key, record.map(|(_, revision)| revision))
            .await
            .map_err(|e| {
                BusError::Kv(format!(
                    "clear the record of {}: {e} (did it change meanwhile? run the replay again)",
                    letter.id
                ))
            })?;
        // Stamped now: the replayed message may be forwarded before this step is recorded.
        let step = crate::trail::replayed(letter, letter.reason == DeadLetterReason::Uncertain);
        let bytes = serde_json::to_vec(&payload).expect("JSON values serialize");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(names::HEADER_WA_MESSAGE_ID, letter.id.as_str());
        // A new Nats-Msg-Id: the original id may still be inside the stream's dedupe window.
        bus.publish(
            &letter.subject,
            &format!("replay:{}:{}", letter.id, stored.sequence),
            headers,
            bytes.into(),
        )
        .await?;
        stream
            .delete_message(stored.sequence)
            .await
            .map_err(|e| BusError::Setup(e.to_string()))?;
        // Keyed again: what the replayed message does next may be days after its first steps.
        let trail = bus.trail();
        match (letter.payload.get("sender").is_some(), step.kode) {
            (true, _) => {
                let message_id = letter.id.rsplit(':').next().unwrap_or(&letter.id);
                trail.record_with_key(&step, message_id, TrailKeyKind::MessageId)
            }
            (false, Some(kode)) => {
                trail.record_with_key(&step, &kode.to_string(), TrailKeyKind::Kode)
            }
            (false, None) => trail.record(&step),
        }
        done.push(outcome(ReplayOutcome::Replayed));
    }
    Ok(done)
}

/// Parses an `unreadable` webhook's kept body again and publishes what it holds as ingress
/// would (same `Nats-Msg-Id`, so a message the provider re-sent meanwhile is not doubled).
async fn replay_webhook(
    bus: &Bus,
    stored: &StoredLetter,
    reparse: Option<Reparse<'_>>,
) -> Result<ReplayOutcome, BusError> {
    let letter = &stored.letter;
    let provider = serde_json::from_value::<Provider>(letter.payload["provider"].clone());
    let body = letter.payload["body"].as_str();
    let (Some(reparse), Ok(provider), Some(body)) = (reparse, provider, body) else {
        return Ok(ReplayOutcome::StillUnreadable);
    };
    let messages = match reparse(provider, body.as_bytes()) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!(seq = stored.sequence, error = %e, "kept webhook still cannot be parsed");
            return Ok(ReplayOutcome::StillUnreadable);
        }
    };
    for (msg, lane) in &messages {
        bus.publish_inbound(msg, lane).await?;
    }
    Ok(ReplayOutcome::Replayed)
}
