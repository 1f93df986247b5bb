//! The pull-consumer worker loop every consuming service runs.
//!
//! * at most `concurrency` messages are handled at once per replica;
//! * while a handler works, the message gets an "in progress" ack so JetStream does not hand it
//!   to another replica;
//! * the handler's [`Disposition`] decides: ack, retry after a delay (nak with delay: a plain nak
//!   would redeliver at once), wait (the same, but not a failed attempt), or dead-letter (copied
//!   to the dead-letter subject *before* the original is terminated, so nothing is lost);
//! * nothing ends silently: the consumer redelivers without limit and the worker enforces
//!   [`crate::Topology::max_attempts`] itself, so a message whose last attempt crashed, lost its
//!   ack or could not write its dead letter comes back and is dead-lettered then (a limit at the
//!   server would strand it in the stream, out of every lag figure, until `max_age`); a handler
//!   that panics is dead-lettered at once, as `uncertain`;
//! * consumer errors (missed heartbeats, NATS restarts) re-create the pull instead of ending the
//!   loop;
//! * on shutdown it stops pulling and waits for in-flight handlers to finish and ack.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{AckKind, Message};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::FutureExt;
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, error, info, warn};
use wacenter_proto::{DeadLetter, DeadLetterReason, PAYLOAD_VERSION};

use crate::Bus;

/// One message handed to a handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
    /// The stream sequence: the same across redeliveries of this message, different for a
    /// second copy of the same content.
    pub stream_sequence: u64,
    /// 1 on the first delivery, 2 on the first redelivery, … (waits included).
    pub delivered: i64,
    /// Which attempt this is: deliveries less the [`Disposition::Wait`]s this replica saw.
    pub attempt: i64,
    /// The attempts a message gets ([`crate::Topology::max_attempts`]).
    pub max_attempts: i64,
}

impl Delivery {
    /// The first delivery of the message stored at `stream_sequence`, as a consumer hands it
    /// out (what tests drive a handler with).
    pub fn first(subject: &str, payload: Bytes, stream_sequence: u64) -> Self {
        Self {
            subject: subject.to_string(),
            payload,
            headers: None,
            stream_sequence,
            delivered: 1,
            attempt: 1,
            max_attempts: crate::Topology::default().max_attempts,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }

    /// No attempt follows this one: a failure now must end the message (and say so to whoever
    /// waits for its outcome), or the worker dead-letters it as `retries_exhausted`.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// What to do with a handled message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Done (forwarded, sent, or deliberately skipped).
    Ack,
    /// This attempt failed: try again after this delay (the message stays in the stream). On
    /// the last attempt the worker dead-letters it as `retries_exhausted` instead.
    RetryIn(Duration),
    /// Not a failure: look again after this delay (sending is paced, the recipient is held
    /// back, another owner is still at work). Does not use up an attempt; the handler bounds
    /// how long it waits.
    Wait(Duration),
    /// It cannot succeed: copy it to the dead-letter subject with the reason, then terminate it.
    DeadLetter {
        id: String,
        reason: DeadLetterReason,
        error: String,
    },
}

impl Disposition {
    /// Dead-letter the message `id` with `reason` and the last error.
    pub fn dead_letter(id: &str, reason: DeadLetterReason, error: String) -> Self {
        Self::DeadLetter {
            id: id.to_string(),
            reason,
            error,
        }
    }

    /// NATS itself failed while handling (a KV write, a publish): try again in a second.
    pub fn nats_trouble(e: impl std::fmt::Display, doing: &str) -> Self {
        warn!(error = %e, "NATS trouble while {doing}; will retry");
        Self::RetryIn(Duration::from_secs(1))
    }
}

/// What a consuming role brings; how often progress is acked, how many deliveries a message
/// gets and how many acks may be pending follow from the bus's [`crate::Topology`] and
/// `concurrency`, the same for every role.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// For logs and metrics: `forwarder`, `reply`.
    pub name: &'static str,
    /// The OtomaX server whose lane this worker consumes (the `otomax` label of its metrics).
    pub lane: String,
    /// The stream consumed, the durable consumer every replica of the role binds for this
    /// lane, and the subjects it takes.
    pub stream: &'static str,
    pub consumer: String,
    pub filters: Vec<String>,
    pub concurrency: usize,
    /// Where dead letters go.
    pub dead_letter_subject: &'static str,
}

/// The payload a consuming role works on. The worker decodes it once, dead-letters one that
/// does not decode or whose version is newer than this build understands as `invalid`, and
/// hands the handler the typed value: no handler reads raw bytes.
pub trait Job: serde::de::DeserializeOwned + Send + 'static {
    /// Its name in errors: `InboundMessage`, `OutboundMessage`.
    const KIND: &'static str;
    /// Its own id, the one dead letters and replay use (the `Nats-Msg-Id` header is not it
    /// for a replayed message).
    fn id(&self) -> String;
    /// Its payload version.
    fn version(&self) -> u32;
}

impl Job for wacenter_proto::InboundMessage {
    const KIND: &'static str = "InboundMessage";
    fn id(&self) -> String {
        self.dedupe_id().to_string()
    }
    fn version(&self) -> u32 {
        self.version
    }
}

impl Job for wacenter_proto::OutboundMessage {
    const KIND: &'static str = "OutboundMessage";
    fn id(&self) -> String {
        self.id.to_string()
    }
    fn version(&self) -> u32 {
        self.version
    }
}

/// Decodes a delivery's payload as `J`: the dead letter `invalid` (named by the delivery's
/// `Nats-Msg-Id`, `unknown` without one) when it is not one, or is newer than this build.
pub fn decode<J: Job>(d: &Delivery, role: &str) -> Result<J, Disposition> {
    let job: J = serde_json::from_slice(&d.payload).map_err(|e| {
        warn!(worker = role, seq = d.stream_sequence, error = %e, "payload is not an {}", J::KIND);
        Disposition::dead_letter(
            d.header(wacenter_proto::names::HEADER_MSG_ID)
                .unwrap_or("unknown"),
            DeadLetterReason::Invalid,
            format!("payload does not match the {} schema: {e}", J::KIND),
        )
    })?;
    if job.version() > PAYLOAD_VERSION {
        return Err(Disposition::dead_letter(
            &job.id(),
            DeadLetterReason::Invalid,
            format!(
                "payload version {} is newer than this {role} understands ({PAYLOAD_VERSION}); upgrade the {role}, then replay",
                job.version()
            ),
        ));
    }
    Ok(job)
}

/// Replicas of one service a lane's consumer has room for.
pub const REPLICAS_PER_LANE: usize = 16;

/// What a lane's consumer lets out at once. Every replica binds the same consumer, so this is
/// the sum of their shares: [`REPLICAS_PER_LANE`] replicas each handling `concurrency` messages,
/// and as many again on their way back (acks in flight, deliveries not yet pulled in). One
/// replica's share capped the consumer at four replicas' worth (the bench's scale-out stopped
/// at 4). A replica still never handles more than `concurrency` at once, and an OtomaX call's
/// retries happen inside its handler, so a slow lane does not pull more of its backlog.
pub fn max_ack_pending(concurrency: usize) -> usize {
    concurrency.saturating_mul(REPLICAS_PER_LANE * 2)
}

/// Binds the role's consumer (retrying until it binds), then runs until `shutdown` becomes
/// true, finishes in-flight work and returns. Each message is decoded as `J` ([`decode`]) and
/// handed to `handler` with its delivery.
pub async fn run<J, H, Fut>(
    bus: Bus,
    config: WorkerConfig,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    J: Job,
    H: Fn(Delivery, J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let max_ack_pending = i64::try_from(max_ack_pending(config.concurrency)).unwrap_or(i64::MAX);
    let waits = Waits::default();
    let Some(consumer) = bus
        .bind_consumer(
            config.stream,
            &config.consumer,
            &config.filters,
            max_ack_pending,
            &shutdown,
        )
        .await
    else {
        return;
    };
    info!(
        worker = config.name,
        otomax = %config.lane,
        concurrency = config.concurrency,
        "consuming {} ({}) as {}",
        config.stream,
        config.filters.join(", "),
        config.consumer
    );
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let config = Arc::new(config);
    let mut backoff = Duration::from_millis(100);
    'pull: while !*shutdown.borrow() {
        let stream = consumer
            .stream()
            .max_messages_per_batch(config.concurrency)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match stream {
            Ok(m) => m,
            Err(e) => {
                warn!(worker = config.name, error = %e, retry_in = ?backoff, "cannot pull from NATS; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break 'pull,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = shutdown.changed() => break 'pull,
            };
            let next = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => break 'pull,
            };
            match next {
                Some(Ok(msg)) => {
                    backoff = Duration::from_millis(100);
                    let (bus, handler, config) = (bus.clone(), handler.clone(), config.clone());
                    let waits = waits.clone();
                    tokio::spawn(async move {
                        handle(bus, msg, &config, handler.as_ref(), &waits).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    // Heartbeats missed, NATS restarting, consumer briefly gone: pull again.
                    warn!(worker = config.name, error = %e, "consumer error; pulling again");
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break 'pull,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue 'pull;
                }
                None => continue 'pull,
            }
        }
    }
    // Graceful shutdown: every permit back means every in-flight handler finished and acked.
    let total = u32::try_from(config.concurrency).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(total).await;
    debug!(
        worker = config.name,
        "worker stopped; in-flight work finished"
    );
}

/// [`run`] for each of `lanes` at once (each its own consumer and concurrency), with one
/// handler; returns when all have stopped.
pub async fn run_lanes<J, H, Fut>(
    bus: Bus,
    lanes: Vec<WorkerConfig>,
    handler: H,
    shutdown: watch::Receiver<bool>,
) where
    J: Job,
    H: Fn(Delivery, J) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Disposition> + Send + 'static,
{
    let workers = lanes
        .into_iter()
        .map(|config| run(bus.clone(), config, handler.clone(), shutdown.clone()));
    futures::future::join_all(workers).await;
}

/// How often each message waited on this replica (stream sequence → waits, last seen), so
/// waits do not count as attempts. Another replica's waits are not known here: they count, and
/// such a message may be dead-lettered sooner, never later.
#[derive(Clone, Default)]
struct Waits(Arc<std::sync::Mutex<std::collections::HashMap<u64, (i64, Instant)>>>);

impl Waits {
    fn of(&self, seq: u64) -> i64 {
        let map = self.0.lock().expect("waits lock");
        map.get(&seq).map_or(0, |(n, _)| *n)
    }

    fn waited(&self, seq: u64) {
        let mut map = self.0.lock().expect("waits lock");
        // Messages that moved on to another replica leave entries behind: forget old ones.
        if map.len() > 10_000 {
            map.retain(|_, (_, seen)| seen.elapsed() < Duration::from_secs(3600));
        }
        let entry = map.entry(seq).or_insert((0, Instant::now()));
        *entry = (entry.0 + 1, Instant::now());
    }

    fn forget(&self, seq: u64) {
        self.0.lock().expect("waits lock").remove(&seq);
    }
}

async fn handle<J, H, Fut>(
    bus: Bus,
    msg: Message,
    config: &WorkerConfig,
    handler: &H,
    waits: &Waits,
) where
    J: Job,
    H: Fn(Delivery, J) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let (stream_sequence, delivered) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(e) => {
            error!(worker = config.name, error = %e, "message without JetStream metadata; leaving it for redelivery");
            return;
        }
    };
    let topology = bus.topology();
    let delivery = Delivery {
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers: msg.headers.clone(),
        stream_sequence,
        delivered,
        attempt: (delivered - waits.of(stream_sequence)).max(1),
        max_attempts: topology.max_attempts,
    };
    let last_attempt = delivery.is_last_attempt();
    let attempt = delivery.attempt;
    // The handler runs in a span continuing the publisher's trace.
    let span = tracing::info_span!("consume", worker = config.name, lane = %config.lane, subject = %delivery.subject, seq = stream_sequence, delivered);
    let incoming = delivery
        .header(wacenter_proto::names::HEADER_TRACEPARENT)
        .map(str::to_owned);
    let job = decode::<J>(&delivery, config.name);
    let id = match &job {
        Ok(job) => job.id(),
        Err(_) => format!("seq:{stream_sequence}"),
    };
    let disposition = match job {
        Err(invalid) => Ok(invalid),
        Ok(job) => {
            metrics::gauge!("wacenter_in_flight", "worker" => config.name, "otomax" => config.lane.clone()).increment(1.0);
            // A panic is caught here, not left to kill the task: the message would come back
            // into the same panic until the stream forgot it.
            let work = std::panic::AssertUnwindSafe(wacenter_trace::in_trace(
                span.clone(),
                incoming.clone(),
                handler(delivery, job),
            ))
            .catch_unwind();
            tokio::pin!(work);
            // Well inside the ack wait, so a slow handler's message is never handed to another
            // replica.
            let mut progress = tokio::time::interval(topology.ack_wait / 3);
            progress.tick().await;
            let disposition = loop {
                tokio::select! {
                    d = &mut work => break d,
                    _ = progress.tick() => {
                        if let Err(e) = msg.ack_with(AckKind::Progress).await {
                            warn!(worker = config.name, error = %e, "progress ack failed");
                        }
                    }
                }
            };
            metrics::gauge!("wacenter_in_flight", "worker" => config.name, "otomax" => config.lane.clone()).decrement(1.0);
            disposition
        }
    };
    let disposition = match disposition {
        Ok(Disposition::RetryIn(_)) if last_attempt => Disposition::DeadLetter {
            id: id.clone(),
            reason: DeadLetterReason::RetriesExhausted,
            error: format!("still failing after {attempt} attempts"),
        },
        Ok(other) => other,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            error!(worker = config.name, seq = stream_sequence, panic = %what, "handler panicked; dead-lettering the message");
            metrics::counter!("wacenter_handler_panics_total", "worker" => config.name, "otomax" => config.lane.clone())
                .increment(1);
            Disposition::DeadLetter {
                id,
                reason: DeadLetterReason::Uncertain,
                error: format!("the {} handler crashed (panic: {what}); whatever it was doing may or may not have happened. Check before replaying", config.name),
            }
        }
    };
    match &disposition {
        Disposition::Wait(_) => waits.waited(stream_sequence),
        Disposition::RetryIn(_) => {}
        Disposition::Ack | Disposition::DeadLetter { .. } => waits.forget(stream_sequence),
    }
    let result = match disposition {
        Disposition::Ack => msg.ack().await,
        Disposition::RetryIn(delay) | Disposition::Wait(delay) => {
            msg.ack_with(AckKind::Nak(Some(delay))).await
        }
        Disposition::DeadLetter { id, reason, error } => {
            let letter = DeadLetter {
                version: PAYLOAD_VERSION,
                id: id.clone(),
                reason,
                error,
                subject: msg.subject.to_string(),
                payload: serde_json::from_slice(&msg.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&msg.payload).into_owned())
                }),
                attempts: u32::try_from(attempt).unwrap_or(u32::MAX),
                failed_at: chrono::Utc::now(),
            };
            // In the message's trace, like everything else done for it.
            let write =
                publish_dead_letter(&bus, config.dead_letter_subject, &letter, stream_sequence);
            let write = tracing::Instrument::instrument(write, span.clone());
            match wacenter_trace::carry_on(incoming, write).await {
                Ok(()) => {
                    metrics::counter!("wacenter_dead_letters_total", "worker" => config.name, "otomax" => config.lane.clone(), "reason" => reason.as_str()).increment(1);
                    bus.trail().record(&crate::trail::dead_lettered(&letter));
                    msg.ack_with(AckKind::Term).await
                }
                Err(e) => {
                    // Never terminate what was not safely copied: try again later.
                    error!(worker = config.name, id, error = %e, "cannot write dead letter; will retry");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                        .await
                }
            }
        }
    };
    if let Err(e) = result {
        warn!(worker = config.name, error = %e, "ack failed; the message will be redelivered and deduplicated");
    }
}

async fn publish_dead_letter(
    bus: &Bus,
    subject: &str,
    letter: &DeadLetter,
    stream_sequence: u64,
) -> Result<(), crate::BusError> {
    let payload = serde_json::to_vec(letter).expect("dead letters serialize");
    // Unique per original stream message: a redelivery of the same message does not write a
    // second letter, but a replayed message failing again does.
    let msg_id = format!("dlq:{}:{}", letter.id, stream_sequence);
    let mut headers = HeaderMap::new();
    headers.insert(
        wacenter_proto::names::HEADER_WA_MESSAGE_ID,
        letter.id.as_str(),
    );
    bus.publish(subject, &msg_id, headers, payload.into())
        .await
        .map(|_| ())
}
