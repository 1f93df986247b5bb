//! One inbound message, start to finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn, Instrument};
use wacenter_bus::claims::{Begun, ClaimRecord, ClaimState, Claims};
use wacenter_bus::own::OwnMessages;
use wacenter_bus::trail::Trail;
use wacenter_bus::{worker, Bus, Delivery, Disposition, WorkerConfig};
use wacenter_config::{ForwarderConfig, ForwardingFlags, OtomaxConfig, RoutingTable};
use wacenter_otomax::{
    ClientConfig, InsertInboxRequest, InsertInboxResult, OtomaxClient, OtomaxError,
};
use wacenter_proto::{
    names, DeadLetterReason, InboundId, InboundMessage, OutboundId, OutboundKind, OutboundMessage,
    PhoneNumber, TrailEvent, TrailKeyKind, TrailStep, PAYLOAD_VERSION,
};

use crate::flags::skip_reason;

#[derive(Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    forwarded: Claims,
    own_messages: OwnMessages,
    /// The routing table; `None` when OtomaX is off (every message is skipped).
    routing: Option<RoutingTable>,
    /// A client per OtomaX server of the table, by name.
    servers: HashMap<String, Otomax>,
    flags: ForwardingFlags,
    auto_reply: bool,
    /// Auto-replies and notices quote the message they answer (`WA_QUOTE_REPLIES`).
    quote_replies: bool,
    /// What a sender is told once when OtomaX never processed the command, per class.
    notices: wacenter_config::Notices,
    concurrency: usize,
    /// Where each outcome is recorded.
    trail: Trail,
}

/// An OtomaX server messages go to, and what every InsertInbox to it carries.
struct Otomax {
    client: OtomaxClient,
    config: OtomaxConfig,
}

/// Where one message goes: its server, and the terminal of the account that received it.
struct Route<'a> {
    server: &'a str,
    otomax: &'a Otomax,
    kode_terminal: i64,
}

impl Forwarder {
    pub async fn new(config: &ForwarderConfig, bus: Bus) -> anyhow::Result<Self> {
        let servers = config
            .routing
            .iter()
            .flat_map(RoutingTable::servers)
            .map(|server| {
                let otomax = Otomax {
                    client: OtomaxClient::new(ClientConfig::for_server(
                        server.name.as_str(),
                        &server.otomax,
                    )),
                    config: server.otomax.clone(),
                };
                (server.name.to_string(), otomax)
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                forwarded: Claims::new(bus.bucket(names::FORWARDED_BUCKET).await?),
                own_messages: OwnMessages::new(Claims::new(
                    bus.bucket(names::OWN_MESSAGES_BUCKET).await?,
                )),
                trail: bus.trail(),
                bus,
                routing: config.routing.clone(),
                servers,
                flags: config.flags,
                auto_reply: config.auto_reply,
                quote_replies: config.quote_replies,
                notices: config.notices.clone(),
                concurrency: config.concurrency,
            }),
        })
    }

    /// Consumes every server's lane until `shutdown`, then finishes in-flight messages.
    ///
    /// Each OtomaX server has its own consumer and its own `concurrency` (spec §3a), so a
    /// server that is down or slow holds only its own messages. The `default` lane is always
    /// consumed: messages of accounts the table does not know travel in it.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let lanes = self
            .lanes()
            .into_iter()
            .map(|(lane, concurrency)| {
                let (consumer, filters) = names::forwarder_lane(&lane);
                WorkerConfig {
                    name: "forwarder",
                    lane,
                    stream: names::INBOUND_STREAM,
                    consumer,
                    filters,
                    concurrency,
                    dead_letter_subject: names::DEADLETTER_INBOUND,
                }
            })
            .collect();
        let bus = self.inner.bus.clone();
        worker::run_lanes(
            bus,
            lanes,
            move |d, msg| self.clone().handle(d, msg),
            shutdown,
        )
        .await;
    }

    /// Every lane and its concurrency: the table's servers with theirs, and `default` (with
    /// `FORWARDER_CONCURRENCY` when the table has no server of that name).
    fn lanes(&self) -> Vec<(String, usize)> {
        let me = &self.inner;
        let servers = me.routing.iter().flat_map(RoutingTable::servers);
        let mut lanes: Vec<(String, usize)> = servers
            .map(|s| (s.name.to_string(), s.concurrency))
            .collect();
        if !lanes.iter().any(|(name, _)| name == names::DEFAULT_LANE) {
            lanes.insert(0, (names::DEFAULT_LANE.to_string(), me.concurrency));
        }
        lanes
    }

    /// Handles one delivery of `msg` (decoded and version-checked by the worker). Public for
    /// tests that drive the handler directly.
    pub async fn handle(self, d: Delivery, msg: InboundMessage) -> Disposition {
        // Every line about this message carries its WhatsApp id, and its kode_inbox once known.
        let span = tracing::info_span!(
            "inbound",
            wa_message_id = %msg.message_id,
            provider = %msg.provider,
            sender = msg.sender.as_deref().unwrap_or(""),
            kode_inbox = tracing::field::Empty,
            otomax = tracing::field::Empty,
        );
        self.process(d, msg).instrument(span).await
    }

    async fn process(&self, d: Delivery, msg: InboundMessage) -> Disposition {
        let me = &self.inner;
        let id = msg.dedupe_id();
        if let Some(reason) = skip_reason(&msg, &me.flags) {
            info!(reason, "not forwarded");
            metrics::counter!("wacenter_forwarder_skipped_total", "reason" => reason).increment(1);
            // Nothing ends silently: the trail says why it went no further. Not for what the
            // business's own phone sent (mostly the provider echoing wacenter's own sends,
            // whose `sent` step is already on the trail).
            if !msg.from_me {
                let mut step = trail_step(&msg, None, TrailStep::Skipped);
                step.detail = format!("not forwarded: {reason}");
                me.trail.record(&step);
            }
            return Disposition::Ack;
        }
        if msg.from_me {
            // An auto-reply or outbox delivery of ours, echoed back by the provider: forwarding
            // it would make OtomaX and wacenter answer each other forever.
            match me
                .own_messages
                .is_ours(&msg.message_id, &msg.account, &msg.chat, &msg.text)
                .await
            {
                Ok(true) => {
                    info!(reason = "own_message", "not forwarded");
                    metrics::counter!("wacenter_forwarder_skipped_total", "reason" => "own_message").increment(1);
                    return Disposition::Ack;
                }
                // The provider can echo our message before the reply service has recorded its
                // id (the echo races the send's answer): look again shortly before believing a
                // person typed it on the phone.
                Ok(false) if d.delivered < OWN_ECHO_CHECKS => {
                    return Disposition::Wait(Duration::from_millis(700));
                }
                Ok(false) => {}
                Err(e) => return Disposition::nats_trouble(e, "checking own messages"),
            }
        }
        // skip_reason has turned away every message when OtomaX is off.
        let Some(routing) = &me.routing else {
            return Disposition::Ack;
        };
        let Some(sender) = &msg.sender else {
            // WhatsApp showed the sender only as a LID and no field gave the number: inserting
            // the LID's digits as `pengirim` would make up a reseller.
            warn!(chat = %msg.chat, "the sender's phone number is not in the message (only a LID); not forwarded");
            return Disposition::dead_letter(
                id.as_str(),
                DeadLetterReason::NoPhoneNumber,
                format!(
                    "WhatsApp gave the sender only as a LID ({}), with no phone number in any field; OtomaX needs the number (pengirim). Ask the reseller to message from a chat that shows their number, or add them to the number's contacts",
                    msg.chat
                ),
            );
        };
        let Some(route) = self.route(routing, &msg) else {
            warn!(account = %msg.account, servers = ?routing.names(), "the account that received it is not in the routing table and no server is named default");
            return Disposition::dead_letter(
                id.as_str(),
                DeadLetterReason::UnknownAccount,
                format!(
                    "account {:?} ({}) is not in the routing table, and no server is named default; add it as an [[account]] with its server and terminal",
                    msg.account, msg.provider
                ),
            );
        };
        tracing::Span::current().record("otomax", route.server);
        let otomax = route.otomax;
        let key = names::kv_key(id.as_str());
        let exp = otomax.config.exp.deadline(msg.timestamp);
        let expired = Utc::now() >= exp;
        let expired_error = || format!("_exp {exp} had passed when the forwarder received it");
        // One write claims the message in the state its work starts in: `in_progress` (InsertInbox
        // follows at once), or `failed` when it arrived expired and will never be sent.
        let first = if expired {
            failed_record(
                d.stream_sequence,
                DeadLetterReason::Expired,
                &expired_error(),
            )
        } else {
            ClaimRecord::new(ClaimState::InProgress, d.stream_sequence)
        };
        let revision = match me.forwarded.begin(&key, &first).await {
            Err(e) => return Disposition::nats_trouble(e, "claiming the message"),
            Ok(Begun::Fresh { .. }) if expired => {
                return expired_on_arrival(route.server, id.as_str(), exp, expired_error())
            }
            Ok(Begun::Fresh { revision }) => revision,
            Ok(Begun::Duplicate(record)) => {
                info!(first_seq = record.seq, state = ?record.state, "duplicate delivery of an already claimed message; dropped");
                metrics::counter!("wacenter_forwarder_duplicates_total", "otomax" => route.server.to_string()).increment(1);
                return Disposition::Ack;
            }
            Ok(Begun::StillRunning) => {
                info!("another delivery of this message is still being handled; looking again shortly");
                return Disposition::Wait(Duration::from_secs(1));
            }
            Ok(Begun::Uncertain) => {
                warn!("a previous attempt stopped while OtomaX was being called; not retried");
                return Disposition::dead_letter(id.as_str(), DeadLetterReason::Uncertain, "the forwarder stopped while InsertInbox was on the wire; OtomaX may or may not have it. Check OtomaX's inbox before replaying".to_string());
            }
            Ok(Begun::Done(record)) => {
                // Forwarded; finish what may not have happened after it (the auto-reply).
                let result: InsertInboxResult =
                    serde_json::from_value(record.detail).unwrap_or_default();
                if let Some(kode) = result.kode_inbox {
                    tracing::Span::current().record("kode_inbox", kode);
                }
                return self
                    .auto_reply(route.server, &msg, sender, &result, None)
                    .await;
            }
            Ok(Begun::Failed(record)) => {
                return self
                    .dead_letter_failed(route.server, &msg, sender, &id, &record)
                    .await
            }
        };
        let req = InsertInboxRequest::whatsapp(
            msg.text.clone(),
            otomax.config.default_reseller.clone(),
            sender.to_string(),
            route.kode_terminal,
            exp,
        );
        // The seed's debug line: what is forwarded, to whom (never the token or keys).
        tracing::debug!(pesan = %req.pesan, pengirim = %req.pengirim, kode_reseller = %req.kode_reseller, kode_terminal = req.kode_terminal, exp = %req.exp, "forwarding WhatsApp message to OtomaX InsertInbox");
        // The lease is renewed while the call is on the wire, however long OtomaX takes.
        let (answer, revision) = me
            .forwarded
            .hold(&key, &first, revision, otomax.client.insert_inbox(&req))
            .await;
        match answer {
            Ok(resp) => {
                let result = resp.result;
                if let Some(kode) = result.kode_inbox {
                    tracing::Span::current().record("kode_inbox", kode);
                }
                metrics::counter!("wacenter_forwarder_forwarded_total", "status" => result.status.to_string(), "otomax" => route.server.to_string()).increment(1);
                let mut record = ClaimRecord::new(ClaimState::Done, d.stream_sequence);
                record.detail = serde_json::to_value(&result).unwrap_or_default();
                self.inner
                    .forwarded
                    .advance_durably(&key, &record, revision)
                    .await;
                self.auto_reply(route.server, &msg, sender, &result, Some(resp.attempts))
                    .await
            }
            Err(e) => {
                // `Uncertain` before all else: once OtomaX may have the message, it is never
                // reported as "did not happen" (a replay of that would insert it twice).
                let reason = match &e {
                    OtomaxError::Uncertain { .. } => DeadLetterReason::Uncertain,
                    OtomaxError::Expired { .. } => DeadLetterReason::Expired,
                    OtomaxError::Auth { .. } => DeadLetterReason::AuthFailed,
                    e if e.is_transient() => DeadLetterReason::RetriesExhausted,
                    _ => DeadLetterReason::Rejected,
                };
                warn!(error = %e, reason = reason.as_str(), "InsertInbox failed");
                let mut step = trail_step(&msg, Some(route.server), TrailStep::OtomaxFailed);
                step.detail = format!("{} ({}): {e}", reason.as_str(), e.kind());
                me.trail.record(&step);
                metrics::counter!("wacenter_forwarder_failed_total", "kind" => e.kind(), "otomax" => route.server.to_string())
                    .increment(1);
                // It reached us in time and OtomaX never had it: the sender is told, or they
                // wait for an answer that will never come. Not for `uncertain`: OtomaX may have
                // it and answer yet.
                let tell_sender = matches!(
                    reason,
                    DeadLetterReason::Expired
                        | DeadLetterReason::RetriesExhausted
                        | DeadLetterReason::AuthFailed
                        | DeadLetterReason::Rejected
                );
                if reason == DeadLetterReason::Expired {
                    metrics::counter!("wacenter_forwarder_expired_total", "otomax" => route.server.to_string()).increment(1);
                }
                let mut record = failed_record(d.stream_sequence, reason, &e.to_string());
                if tell_sender {
                    record.detail["tell_sender"] = json!(true);
                }
                me.forwarded.advance_durably(&key, &record, revision).await;
                self.dead_letter_failed(route.server, &msg, sender, &id, &record)
                    .await
            }
        }
    }

    /// The server and terminal of the account that received `msg`.
    fn route<'a>(&'a self, routing: &'a RoutingTable, msg: &InboundMessage) -> Option<Route<'a>> {
        let (server, kode_terminal) = routing.inbound(msg.provider.into(), &msg.account)?;
        let otomax = self.inner.servers.get(server.name.as_str())?;
        Some(Route {
            server: server.name.as_str(),
            otomax,
            kode_terminal,
        })
    }

    /// Publishes OtomaX's immediate answer as an auto-reply (idempotent by its `Nats-Msg-Id`)
    /// in `server`'s lane, then logs the message's one line: what OtomaX said and what became of
    /// the auto-reply. `attempts` is the InsertInbox call's, or `None` when an earlier delivery
    /// made it.
    async fn auto_reply(
        &self,
        server: &str,
        msg: &InboundMessage,
        sender: &PhoneNumber,
        result: &InsertInboxResult,
        attempts: Option<u32>,
    ) -> Disposition {
        let me = &self.inner;
        let reply_text = match me.auto_reply {
            true => result.auto_reply_text(),
            false => None,
        };
        if let Some(attempts) = attempts {
            let mut step = trail_step(msg, Some(server), TrailStep::Forwarded);
            step.kode_inbox = result.kode_inbox;
            step.status = Some(result.status);
            step.detail = format!(
                "{} ({attempts} attempt{})",
                result.status_desc,
                if attempts == 1 { "" } else { "s" }
            );
            step.reply = reply_text.map(TrailEvent::shorten).unwrap_or_default();
            match result.kode_inbox {
                Some(kode) => {
                    me.trail
                        .record_with_key(&step, &kode.to_string(), TrailKeyKind::KodeInbox)
                }
                None => me.trail.record(&step),
            }
        }
        let forwarded = |auto_reply: &str| {
            let what = if attempts.is_some() {
                "forwarded to OtomaX"
            } else {
                "already forwarded to OtomaX"
            };
            info!(kode_inbox = ?result.kode_inbox, status = result.status, status_desc = %result.status_desc, attempts, auto_reply, "{what}");
        };
        if !me.auto_reply {
            forwarded("disabled");
            return Disposition::Ack;
        }
        let Some(text) = reply_text else {
            forwarded("none for this status");
            metrics::counter!("wacenter_forwarder_auto_replies_total", "outcome" => "none", "otomax" => server.to_string())
                .increment(1);
            return Disposition::Ack;
        };
        let id = OutboundId::auto_reply(&msg.dedupe_id());
        match self
            .answer(server, msg, sender, id, text, result.kode_inbox)
            .await
        {
            Ok(_) => {
                forwarded("queued");
                metrics::counter!("wacenter_forwarder_auto_replies_total", "outcome" => "queued", "otomax" => server.to_string())
                    .increment(1);
                Disposition::Ack
            }
            // Forwarded and recorded: the redelivery publishes the reply (deduplicated by id).
            Err(e) => {
                forwarded("not queued yet");
                Disposition::nats_trouble(e, "queueing the auto-reply")
            }
        }
    }

    /// Queues the notice of `reason`'s class for the sender of a message OtomaX never processed:
    /// `OTOMAX_EXPIRED_REPLY` (expired, or OtomaX unreachable through every retry),
    /// `OTOMAX_AUTH_FAILED_REPLY`, `OTOMAX_REJECTED_REPLY`. Its id is derived from the message's,
    /// so a redelivery queues it once; sent through the account that received the message, like
    /// an auto-reply.
    async fn tell_sender(
        &self,
        server: &str,
        msg: &InboundMessage,
        sender: &PhoneNumber,
        reason: DeadLetterReason,
    ) -> Result<(), Disposition> {
        let me = &self.inner;
        let dedupe = msg.dedupe_id();
        let (text, id, class) = match reason {
            DeadLetterReason::AuthFailed => (
                &me.notices.auth_failed,
                OutboundId::failure_notice(reason.as_str(), &dedupe),
                "auth_failed",
            ),
            DeadLetterReason::Rejected => (
                &me.notices.rejected,
                OutboundId::failure_notice(reason.as_str(), &dedupe),
                "rejected",
            ),
            _ => (
                &me.notices.expired,
                OutboundId::expired_notice(&dedupe),
                "expired",
            ),
        };
        let Some(text) = text else {
            return Ok(());
        };
        match self.answer(server, msg, sender, id, text, None).await {
            Ok(_) => {
                info!(
                    notice = class,
                    "the sender is told the message was not processed"
                );
                let mut step = trail_step(msg, Some(server), TrailStep::NoticeQueued);
                step.detail = format!("{class} notice queued");
                step.reply = TrailEvent::shorten(text);
                me.trail.record(&step);
                metrics::counter!("wacenter_forwarder_notices_total", "class" => class, "otomax" => server.to_string()).increment(1);
                Ok(())
            }
            // The claim records the failure and asks for the notice: the redelivery comes back.
            Err(e) => Err(Disposition::nats_trouble(e, "queueing the notice")),
        }
    }

    /// Queues `text` as the answer `id` to `msg`: to its sender, through the account that
    /// received it (quoting it with `WA_QUOTE_REPLIES`), in `server`'s lane. Published with its
    /// id as `Nats-Msg-Id`, so a redelivery queues it once.
    async fn answer(
        &self,
        server: &str,
        msg: &InboundMessage,
        sender: &PhoneNumber,
        id: OutboundId,
        text: &str,
        kode_inbox: Option<i64>,
    ) -> Result<(), wacenter_bus::BusError> {
        let out = OutboundMessage {
            version: PAYLOAD_VERSION,
            id,
            kind: OutboundKind::AutoReply,
            provider: Some(msg.provider),
            account: msg.account.clone(),
            to: sender.clone(),
            text: text.to_string(),
            reply_to: self.inner.quote_replies.then(|| msg.message_id.clone()),
            in_reply_to: Some(msg.message_id.clone()),
            otomax: (server != names::DEFAULT_LANE).then(|| server.to_string()),
            outbox_kode: None,
            kode_inbox,
            part: None,
            created_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&out).expect("outbound messages serialize");
        let mut headers = wacenter_bus::HeaderMap::new();
        headers.insert(names::HEADER_WA_MESSAGE_ID, msg.message_id.as_str());
        self.inner
            .bus
            .publish(
                &names::auto_reply_subject(server),
                out.id.as_str(),
                headers,
                payload.into(),
            )
            .await
            .map(drop)
    }

    /// Dead-letters a message whose claim records a definite failure, first telling the sender
    /// when the record asks for it (again on a redelivery: the notice's id makes it once).
    async fn dead_letter_failed(
        &self,
        server: &str,
        msg: &InboundMessage,
        sender: &PhoneNumber,
        id: &InboundId,
        record: &ClaimRecord,
    ) -> Disposition {
        let reason = record
            .detail
            .get("reason")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .unwrap_or(DeadLetterReason::Rejected);
        let error = record.error().to_string();
        if record.detail.get("tell_sender") == Some(&json!(true)) {
            if let Err(retry) = self.tell_sender(server, msg, sender, reason).await {
                return retry;
            }
        }
        Disposition::dead_letter(id.as_str(), reason, error)
    }
}

/// A trail step about `msg` (in `server`'s lane, when known).
fn trail_step(msg: &InboundMessage, server: Option<&str>, step: TrailStep) -> TrailEvent {
    let phone = msg.sender.as_ref().map(|p| p.as_str()).unwrap_or("");
    let mut event = TrailEvent::new(step, msg.dedupe_id().as_str(), phone);
    event.otomax = server
        .filter(|s| *s != names::DEFAULT_LANE)
        .map(str::to_string);
    event
}

/// The record of a definite failure: the reason and the last error, for a redelivery to repeat.
fn failed_record(seq: u64, reason: DeadLetterReason, error: &str) -> ClaimRecord {
    let mut record = ClaimRecord::new(ClaimState::Failed, seq);
    record.detail = json!({"reason": reason, "error": error});
    record
}

/// A message whose `_exp` passed before it reached the forwarder: never sent to OtomaX.
fn expired_on_arrival(
    server: &str,
    id: &str,
    exp: chrono::DateTime<Utc>,
    error: String,
) -> Disposition {
    warn!(%exp, "arrived already expired; not sent to OtomaX");
    metrics::counter!("wacenter_forwarder_expired_total", "otomax" => server.to_string())
        .increment(1);
    Disposition::dead_letter(id, DeadLetterReason::Expired, error)
}

/// Deliveries of a from-me message spent waiting for the reply service to record it as ours.
const OWN_ECHO_CHECKS: i64 = 4;
