//! One outbound message, start to finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};
use wacenter_bus::claims::{Begun, ClaimRecord, ClaimState, Claims};
use wacenter_bus::own::OwnMessages;
use wacenter_bus::trail::Trail;
use wacenter_bus::{worker, Bus, Delivery, Disposition, WorkerConfig};
use wacenter_config::{ReplyConfig, SendConfig};
use wacenter_otomax::{outbox_status, ClientConfig, OtomaxClient};
use wacenter_proto::{
    names, DeadLetterReason, OutboundMessage, PhoneNumber, TrailEvent, TrailStep,
};
use wacenter_whatsapp::{GowaSender, MetaSender, SendError, SendErrorClass, Sender};

use crate::pacing::{Pace, Pacer, Priority};

#[derive(Clone)]
pub struct Replier {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    /// Claims of outbox rows with a `kode` (kept a day).
    delivered: Claims,
    /// Claims of everything else: auto-replies, notices, rows without a `kode` (kept an hour).
    replied: Claims,
    own_messages: OwnMessages,
    /// `OTOMAX_FORWARD_OUTGOING`: echoes of our sends reach the forwarder, so each send is
    /// fingerprinted before it leaves and its provider id recorded after. Off, nothing reads
    /// those records, so none is written: a JetStream write per send saved.
    record_own_sends: bool,
    sender: Sender,
    default_account: String,
    /// A client per OtomaX server that outbox rows are reported to, by name; empty when
    /// `OTOMAX_OUTBOX_ACK` (or OtomaX) is off.
    otomax: HashMap<String, OtomaxClient>,
    concurrency: usize,
    /// The servers whose lanes this service consumes, and each account's own `send_rate`.
    lanes: wacenter_config::Lanes,
    /// Each account's send slots, shared by every replica.
    pacer: Pacer,
    /// `WA_SEND_RATE`: sends a second per account unless it has its own (0 = unlimited).
    send_rate: u32,
    /// Recipients Meta asked us to slow down for, and until when.
    held_back: Mutex<HashMap<PhoneNumber, Instant>>,
    /// Where each send and each UpdateStatusOutbox is recorded.
    trail: Trail,
}

impl Replier {
    pub async fn new(config: &ReplyConfig, bus: Bus) -> anyhow::Result<Self> {
        let http = wacenter_otomax::client::shared_http_client();
        let (sender, default_account) = match &config.send {
            SendConfig::Gowa {
                url,
                basic_auth,
                device_id,
            } => (
                Sender::Gowa(GowaSender::new(
                    url.clone(),
                    basic_auth
                        .as_ref()
                        .map(|c| (c.user.clone(), c.password.expose().to_string())),
                    http,
                )),
                device_id.clone(),
            ),
            SendConfig::Meta {
                graph_url,
                access_token,
                phone_number_id,
            } => (
                Sender::Meta(MetaSender::new(
                    graph_url.clone(),
                    access_token.expose(),
                    http,
                )),
                phone_number_id.clone(),
            ),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                delivered: Claims::new(bus.bucket(names::DELIVERED_BUCKET).await?),
                replied: Claims::new(bus.bucket(names::REPLIED_BUCKET).await?),
                own_messages: OwnMessages::new(Claims::new(
                    bus.bucket(names::OWN_MESSAGES_BUCKET).await?,
                )),
                pacer: Pacer::new(bus.bucket(names::PACING_BUCKET).await?),
                trail: bus.trail(),
                send_rate: config.send_rate,
                record_own_sends: config.record_own_sends,
                bus,
                sender,
                default_account,
                otomax: config
                    .outbox_ack
                    .iter()
                    .flat_map(|table| table.servers())
                    .map(|server| {
                        let client = OtomaxClient::new(ClientConfig::for_server(
                            server.name.as_str(),
                            &server.otomax,
                        ));
                        (server.name.to_string(), client)
                    })
                    .collect(),
                concurrency: config.concurrency,
                lanes: config.lanes.clone(),
                held_back: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Consumes every server's lane (each its own consumer with `REPLY_CONCURRENCY`, so a
    /// server slow to take its `UpdateStatusOutbox` reports holds only its own rows) until
    /// `shutdown`, then finishes in-flight messages.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let bus = self.inner.bus.clone();
        let lanes = self
            .inner
            .lanes
            .names()
            .map(|lane| {
                let (consumer, filters) = names::reply_lane(lane);
                WorkerConfig {
                    name: "reply",
                    lane: lane.to_string(),
                    stream: names::OUTBOUND_STREAM,
                    consumer,
                    filters,
                    concurrency: self.inner.concurrency,
                    dead_letter_subject: names::DEADLETTER_OUTBOUND,
                }
            })
            .collect();
        info!(provider = %self.inner.sender.provider(), "reply service sends through this provider");
        worker::run_lanes(
            bus,
            lanes,
            move |d, out| self.clone().handle(d, out),
            shutdown,
        )
        .await;
    }

    /// Handles one delivery of `out` (decoded and version-checked by the worker).
    pub async fn handle(self, d: Delivery, out: OutboundMessage) -> Disposition {
        let span = tracing::info_span!(
            "outbound",
            outbound_id = %out.id,
            wa_message_id = out.in_reply_to.as_deref().unwrap_or(""),
            kode_inbox = out.kode_inbox.unwrap_or_default(),
            outbox_kode = out.outbox_kode.unwrap_or_default(),
        );
        self.process(d, out).instrument(span).await
    }

    async fn process(&self, d: Delivery, out: OutboundMessage) -> Disposition {
        let me = &self.inner;
        let to = &out.to;
        // Held back (the provider rate-limited this recipient): wait before claiming anything.
        if let Some(wait) = self.held_back(to) {
            return Disposition::Wait(wait);
        }
        // A text longer than the provider takes goes out part by part: this message sends the
        // first, then hands the rest on as a message of its own (see `send_rest`).
        // In a form the provider takes (no control characters, no blank start or end).
        let cleaned = wacenter_whatsapp::sendable(&out.text);
        let (text, rest) = wacenter_whatsapp::split_text(&cleaned, me.sender.max_text_chars());
        let key = names::kv_key(out.id.as_str());
        let claims = self.claims(&out);
        // One write claims the message as `in_progress`: the send follows at once.
        let in_progress = ClaimRecord::new(ClaimState::InProgress, d.stream_sequence);
        let revision = match claims.begin(&key, &in_progress).await {
            Err(e) => return Disposition::nats_trouble(e, "claiming the message"),
            Ok(Begun::Fresh { revision }) => revision,
            Ok(Begun::Duplicate(record)) => {
                info!(first_seq = record.seq, state = ?record.state, "duplicate outbound message; dropped");
                metrics::counter!("wacenter_reply_duplicates_total", "otomax" => server_of(&out))
                    .increment(1);
                // Sent: its rest may not have been handed on (the chain's own ids and claims
                // keep every part once).
                if let (ClaimState::Done, Some(rest)) = (record.state, rest) {
                    return self.send_rest(&d, &out, rest).await;
                }
                // OtomaX posting a row again may mean it never heard what became of it.
                let status = match record.state {
                    ClaimState::Done => Some(outbox_status::DELIVERED),
                    ClaimState::Failed => Some(outbox_status::FAILED),
                    // The owner reports when it finishes.
                    ClaimState::Claimed | ClaimState::InProgress => None,
                };
                if let Some(status) = status {
                    if let Err(retry) = self.report_outbox(&out, status).await {
                        return retry;
                    }
                }
                return Disposition::Ack;
            }
            Ok(Begun::StillRunning) => {
                info!("another delivery of this message is still being handled; looking again shortly");
                return Disposition::Wait(Duration::from_secs(1));
            }
            Ok(Begun::Uncertain) => {
                warn!("a previous attempt stopped while the provider was being called; not resent");
                return Disposition::dead_letter(out.id.as_str(), DeadLetterReason::Uncertain, "the reply service stopped while the send was on the wire; the recipient may or may not have it. Check before replaying".into());
            }
            Ok(Begun::Done(_)) => {
                if let Some(rest) = rest {
                    return self.send_rest(&d, &out, rest).await;
                }
                return match self.report_outbox(&out, outbox_status::DELIVERED).await {
                    Ok(()) => Disposition::Ack,
                    Err(retry) => retry,
                };
            }
            Ok(Begun::Failed(record)) => {
                if let Err(retry) = self.report_outbox(&out, outbox_status::FAILED).await {
                    return retry;
                }
                return Disposition::dead_letter(
                    out.id.as_str(),
                    DeadLetterReason::SendFailed,
                    record.error().to_string(),
                );
            }
        };
        let account = match out.provider {
            Some(p) if p == me.sender.provider() && !out.account.is_empty() => out.account.as_str(),
            _ => me.default_account.as_str(),
        };
        let kind = match out.kind {
            wacenter_proto::OutboundKind::AutoReply => "auto_reply",
            wacenter_proto::OutboundKind::Outbox => "outbox",
        };
        // Paced: the send waits for its account's next slot (auto-replies first). A message
        // without a slot gives its claim back and waits: neither a failure nor an attempt.
        if let Err(wait) = self.pace(&out, account).await {
            claims.release_unstarted(&key, &in_progress).await;
            return wait;
        }
        // With outgoing forwarding on, what is about to be sent is recorded first: if the
        // send's answer is lost its id is never known, and its echo may come back before it.
        if me.record_own_sends {
            if let Err(e) = me
                .own_messages
                .record_sending(account, to, text, out.id.as_str())
                .await
            {
                claims.release_unstarted(&key, &in_progress).await;
                return Disposition::nats_trouble(e, "recording what is about to be sent");
            }
        }
        // The lease is renewed while the send is on the wire.
        let send = me
            .sender
            .send_text(account, to, text, out.reply_to.as_deref());
        let (sent, revision) = claims.hold(&key, &in_progress, revision, send).await;
        match sent {
            Ok(sent) => {
                if rest.is_some() || out.part.is_some() {
                    // Part n of how many: those sent before this one, and this text's parts.
                    let part = out.part.unwrap_or(1);
                    let parts = part as usize - 1
                        + wacenter_whatsapp::split::parts(&cleaned, me.sender.max_text_chars())
                            .len();
                    info!(to = %to, provider_message_id = %sent.provider_message_id, part, parts, "sent part {part} of {parts}");
                } else {
                    info!(to = %to, provider_message_id = %sent.provider_message_id, "sent");
                }
                metrics::counter!("wacenter_reply_sent_total", "kind" => kind, "otomax" => server_of(&out)).increment(1);
                let mut step = trail_step(&out, TrailStep::Sent);
                step.detail = match out.part {
                    Some(part) => format!(
                        "part {part}; provider message id {}",
                        sent.provider_message_id
                    ),
                    None => format!("provider message id {}", sent.provider_message_id),
                };
                step.text = TrailEvent::shorten(text);
                me.trail.record(&step);
                // Recorded first: the provider may already be echoing it back to ingress.
                if me.record_own_sends && !sent.provider_message_id.is_empty() {
                    me.own_messages
                        .record_sent(&sent.provider_message_id, out.id.as_str())
                        .await;
                }
                let mut record = ClaimRecord::new(ClaimState::Done, d.stream_sequence);
                record.detail = json!({"provider_message_id": sent.provider_message_id});
                claims.advance_durably(&key, &record, revision).await;
                if let Some(rest) = rest {
                    return self.send_rest(&d, &out, rest).await;
                }
                match self.report_outbox(&out, outbox_status::DELIVERED).await {
                    Ok(()) => Disposition::Ack,
                    Err(retry) => retry,
                }
            }
            Err(e) => self.send_failed(&d, &out, &key, revision, e, kind).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_failed(
        &self,
        d: &Delivery,
        out: &OutboundMessage,
        key: &str,
        revision: u64,
        e: SendError,
        kind: &'static str,
    ) -> Disposition {
        let class = e.class();
        let label = match class {
            SendErrorClass::RateLimited { .. } => "rate_limited",
            SendErrorClass::Transient => "transient",
            SendErrorClass::Permanent => "permanent",
            SendErrorClass::Ambiguous => "ambiguous",
        };
        metrics::counter!("wacenter_reply_send_failed_total", "class" => label, "kind" => kind, "otomax" => server_of(out))
            .increment(1);
        let last_chance = d.is_last_attempt();
        match class {
            SendErrorClass::RateLimited { .. } | SendErrorClass::Transient if !last_chance => {
                // Definitely not sent: give the claim back so the retry can send.
                if let Err(err) = self
                    .claims(out)
                    .advance(
                        key,
                        &ClaimRecord::new(ClaimState::Claimed, d.stream_sequence),
                        revision,
                    )
                    .await
                {
                    warn!(error = %err, "cannot release the claim; the retry will dead-letter it as uncertain");
                }
                let wait = match class {
                    SendErrorClass::RateLimited {
                        retry_after,
                        per_recipient,
                    } => {
                        let wait = retry_after.unwrap_or_else(|| backoff(d.delivered));
                        if per_recipient {
                            self.hold_back(&out.to, wait);
                        }
                        wait
                    }
                    _ => backoff(d.delivered),
                };
                warn!(error = %e, class = label, retry_in = ?wait, "send failed; will retry");
                Disposition::RetryIn(wait)
            }
            SendErrorClass::Ambiguous => {
                warn!(error = %e, "send outcome unknown; not resent");
                Disposition::dead_letter(
                    out.id.as_str(),
                    DeadLetterReason::Uncertain,
                    e.to_string(),
                )
            }
            _ => {
                warn!(error = %e, class = label, "send failed for good");
                let mut step = trail_step(out, TrailStep::SendFailed);
                step.detail = format!("{label}: {e}");
                self.inner.trail.record(&step);
                let mut record = ClaimRecord::new(ClaimState::Failed, d.stream_sequence);
                record.detail = json!({"error": e.to_string()});
                self.claims(out)
                    .advance_durably(key, &record, revision)
                    .await;
                if let Err(retry) = self.report_outbox(out, outbox_status::FAILED).await {
                    return retry;
                }
                let reason = if last_chance && class != SendErrorClass::Permanent {
                    DeadLetterReason::RetriesExhausted
                } else {
                    DeadLetterReason::SendFailed
                };
                Disposition::dead_letter(out.id.as_str(), reason, e.to_string())
            }
        }
    }

    /// Waits for `account`'s next send slot when sending is paced (`WA_SEND_RATE`, the account's
    /// `send_rate`); `Err` is the disposition when there is no slot for this message yet.
    async fn pace(&self, out: &OutboundMessage, account: &str) -> Result<(), Disposition> {
        let me = &self.inner;
        let provider = me.sender.provider();
        let rate = me
            .lanes
            .send_rate(provider.into(), account)
            .unwrap_or(me.send_rate);
        if rate == 0 {
            return Ok(());
        }
        let priority = match out.kind {
            wacenter_proto::OutboundKind::AutoReply => Priority::AutoReply,
            wacenter_proto::OutboundKind::Outbox => Priority::Bulk,
        };
        match me
            .pacer
            .book(&format!("{provider}:{account}"), rate, priority)
            .await
        {
            Ok(Pace::SendAfter(wait)) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok(())
            }
            Ok(Pace::WaitFor(wait)) => {
                debug!(account, rate, ?wait, "paced: no send slot yet");
                metrics::counter!("wacenter_reply_paced_total", "otomax" => server_of(out))
                    .increment(1);
                Err(Disposition::Wait(wait))
            }
            Err(e) => Err(Disposition::nats_trouble(e, "booking a send slot")),
        }
    }

    /// Hands the rest of a long text on once its part is sent: the next part, a message of its
    /// own (`<first id>#<n>`, so publishing it again is deduplicated and its claim sends it once),
    /// published to the same subject. It exists only after this part went out, so the parts
    /// arrive in order; the last one reports the outbox row to OtomaX.
    async fn send_rest(&self, d: &Delivery, out: &OutboundMessage, rest: &str) -> Disposition {
        let part = out.part.unwrap_or(1) + 1;
        let next = OutboundMessage {
            id: out.id.part(part),
            text: rest.to_string(),
            // The first part quoted the reseller's message; the rest follows it.
            reply_to: None,
            part: Some(part),
            created_at: Utc::now(),
            ..out.clone()
        };
        let payload = serde_json::to_vec(&next).expect("outbound messages serialize");
        let mut headers = wacenter_bus::HeaderMap::new();
        if let Some(id) = &out.in_reply_to {
            headers.insert(names::HEADER_WA_MESSAGE_ID, id.as_str());
        }
        match self
            .inner
            .bus
            .publish(&d.subject, next.id.as_str(), headers, payload.into())
            .await
        {
            Ok(_) => {
                info!(next = %next.id, "the rest of the text goes on as part {part}");
                Disposition::Ack
            }
            // This part is recorded sent: the redelivery hands the rest on.
            Err(e) => Disposition::nats_trouble(e, "handing on the rest of a long text"),
        }
    }

    /// Tells OtomaX what became of an outbox row (when it came from one and OTOMAX_OUTBOX_ACK).
    /// Until OtomaX has it, the message is not acked: `Err` is the retry, and the redelivery
    /// finds the send recorded and reports again (setting a status twice is harmless). Only
    /// OtomaX refusing the report for good (unknown `kode`, bad credentials) ends the attempts.
    async fn report_outbox(&self, out: &OutboundMessage, status: i64) -> Result<(), Disposition> {
        let Some(kode) = out.outbox_kode else {
            return Ok(());
        };
        if self.inner.otomax.is_empty() {
            return Ok(()); // OTOMAX_OUTBOX_ACK is off
        }
        let server = out
            .otomax
            .as_deref()
            .unwrap_or(wacenter_config::DEFAULT_SERVER);
        let Some(otomax) = self.inner.otomax.get(server) else {
            warn!(
                outbox_kode = kode,
                otomax = server,
                "the row's OtomaX server is not in the routing table; UpdateStatusOutbox not sent"
            );
            return Ok(());
        };
        match otomax.update_status_outbox(kode, status).await {
            Ok(_) => {
                info!(outbox_kode = kode, status, "UpdateStatusOutbox done");
                let mut step = trail_step(out, TrailStep::OutboxStatus);
                step.status = Some(status);
                step.detail = format!("UpdateStatusOutbox {status} reported to OtomaX");
                self.inner.trail.record(&step);
                metrics::counter!("wacenter_outbox_acks_total", "status" => status.to_string(), "outcome" => "ok", "otomax" => server.to_string()).increment(1);
                Ok(())
            }
            Err(e) if e.class() == wacenter_otomax::FailureClass::Final => {
                warn!(outbox_kode = kode, status, error = %e, "OtomaX refused UpdateStatusOutbox; not reported");
                metrics::counter!("wacenter_outbox_acks_total", "status" => status.to_string(), "outcome" => "refused", "otomax" => server.to_string()).increment(1);
                Ok(())
            }
            Err(e) => {
                warn!(outbox_kode = kode, status, error = %e, "UpdateStatusOutbox failed; will report again");
                metrics::counter!("wacenter_outbox_acks_total", "status" => status.to_string(), "outcome" => "error", "otomax" => server.to_string()).increment(1);
                Err(Disposition::RetryIn(Duration::from_secs(5)))
            }
        }
    }

    /// Where `out`'s claim lives: a day for an outbox row with a `kode`, an hour otherwise.
    fn claims(&self, out: &OutboundMessage) -> &Claims {
        match names::outbound_bucket(out.outbox_kode) {
            names::DELIVERED_BUCKET => &self.inner.delivered,
            _ => &self.inner.replied,
        }
    }

    fn held_back(&self, to: &PhoneNumber) -> Option<Duration> {
        let mut map = self.inner.held_back.lock().expect("hold-back lock");
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.get(to).map(|until| *until - now)
    }

    fn hold_back(&self, to: &PhoneNumber, wait: Duration) {
        self.inner
            .held_back
            .lock()
            .expect("hold-back lock")
            .insert(to.clone(), Instant::now() + wait);
    }
}

/// 0.5 s, 1 s, 2 s, … capped at a minute.
fn backoff(delivered: i64) -> Duration {
    let exp = u32::try_from(delivered.clamp(1, 8) - 1).unwrap_or(0);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(Duration::from_secs(60))
}

/// The OtomaX server `out` belongs to: the `otomax` label of its metrics.
/// A trail step about `out`: its id, recipient, server and OtomaX codes.
fn trail_step(out: &OutboundMessage, step: TrailStep) -> TrailEvent {
    let mut event = TrailEvent::new(step, out.id.as_str(), out.to.as_str());
    event.otomax = out.otomax.clone();
    event.kode_inbox = out.kode_inbox;
    event.kode = out.outbox_kode;
    event
}

fn server_of(out: &OutboundMessage) -> String {
    out.otomax
        .as_deref()
        .unwrap_or(wacenter_config::DEFAULT_SERVER)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(50), Duration::from_secs(60));
    }
}
