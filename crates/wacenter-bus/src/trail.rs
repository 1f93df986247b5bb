//! The message trail (spec §4): every step of every message, on NATS, kept
//! `TRAIL_RETENTION_DAYS`, and how to find one message's steps again.
//!
//! Writing costs one JetStream publish per step, made by a writer task (see [`Trail`]): a step
//! is a record of what happened, never a reason to hold a message up or to fail it. Steps go to one subject per
//! phone number (`wa.trail.p.<digits>`), never one per message: nats-server keeps every
//! subject's state in memory, and a week of messages would be hundreds of thousands of subjects.
//! The keys an operator searches by (a WhatsApp message id, a `kode_inbox`, an outbox `kode`)
//! go to 256 hash subjects (`wa.trail.k.<xx>`) with the phone and the time, so a lookup reads
//! 1/256 of the keys and then one phone's steps from that time on.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wacenter_proto::{
    names, DeadLetter, TrailEvent, TrailKey, TrailKeyKind, TrailStep, PAYLOAD_VERSION,
};

use crate::{Bus, BusError};

/// The stream that holds the trail, kept `retention`.
pub fn trail_stream(retention: Duration, replicas: usize) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream;
    stream::Config {
        name: names::TRAIL_STREAM.to_string(),
        subjects: vec![names::TRAIL_SUBJECTS.to_string()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: retention,
        // Steps carry no Nats-Msg-Id; a short window keeps the dedupe map empty anyway.
        duplicate_window: Duration::from_secs(60),
        // JSON steps compress well; the trail is written once and read rarely.
        compression: Some(stream::Compression::S2),
        ..Default::default()
    }
}

/// Records steps. Cheap to clone (every clone feeds the same writer); does nothing when the trail
/// is off (`TRAIL_RETENTION_DAYS=0`).
///
/// A step is handed to a writer task and the caller goes on at once: recording what happened
/// never holds the message up, nor fails it. The writer publishes to JetStream and waits for
/// the acks with up to [`IN_FLIGHT`] publishes outstanding, so a burst is stored, not dropped
/// (nats-server drops core publishes it cannot ingest fast enough). Only a step that finds the
/// writer's queue full ([`QUEUED`] steps: NATS away or far behind), or that JetStream refuses,
/// is lost; it is counted in `wacenter_trail_failed_total` and logged.
#[derive(Clone)]
pub struct Trail {
    writer: Option<mpsc::Sender<Command>>,
}

enum Command {
    Publish {
        subject: String,
        payload: Bytes,
    },
    /// Answered once everything queued before it is acknowledged (or failed).
    Flush(oneshot::Sender<()>),
}

/// Publishes the writer keeps unacknowledged at once.
const IN_FLIGHT: usize = 256;
/// Steps waiting for the writer before new ones are dropped.
const QUEUED: usize = 16_384;

impl Trail {
    /// The trail of a process, writing through `js`; `None`: off.
    pub(crate) fn start(js: Option<async_nats::jetstream::Context>) -> Self {
        let Some(js) = js else {
            return Self::off();
        };
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(write(js, rx));
        Self { writer: Some(tx) }
    }

    /// A trail that records nothing (for tests of handlers that do not look at it).
    pub fn off() -> Self {
        Self { writer: None }
    }

    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    fn queue(&self, subject: String, payload: Vec<u8>, what: &dyn std::fmt::Display) {
        let Some(writer) = &self.writer else {
            return;
        };
        let command = Command::Publish {
            subject,
            payload: payload.into(),
        };
        if writer.try_send(command).is_err() {
            tracing::warn!(%what, "trail step not recorded: the trail writer is full (NATS away or far behind)");
            metrics::counter!("wacenter_trail_failed_total").increment(1);
        }
    }

    /// Records `event` on its phone's subject.
    pub async fn record(&self, event: &TrailEvent) {
        if self.writer.is_none() {
            return;
        }
        let payload = serde_json::to_vec(event).expect("trail steps serialize");
        let what = format_args!("{} {}", event.step.as_str(), event.id);
        self.queue(names::trail_phone_subject(&event.phone), payload, &what);
    }

    /// Records that `key` (of `kind`) names a message whose steps are on `phone`'s subject from
    /// `at` on.
    pub async fn record_key(&self, key: &str, kind: TrailKeyKind, phone: &str, at: DateTime<Utc>) {
        let key = key.trim();
        if self.writer.is_none() || key.is_empty() {
            return;
        }
        let record = TrailKey {
            version: PAYLOAD_VERSION,
            key: key.to_string(),
            kind,
            phone: phone.to_string(),
            at,
        };
        let payload = serde_json::to_vec(&record).expect("trail keys serialize");
        let what = format_args!("key {key}");
        self.queue(names::trail_key_subject(key), payload, &what);
    }

    /// Records `event`, and its id's key when the step is the first to know it.
    pub async fn record_with_key(&self, event: &TrailEvent, key: &str, kind: TrailKeyKind) {
        self.record_key(key, kind, &event.phone, event.at).await;
        self.record(event).await;
    }

    /// Waits (at most `limit`) until every step queued so far is stored: before a process
    /// exits, and in tests that read what they just recorded.
    pub async fn flush(&self, limit: Duration) {
        let Some(writer) = &self.writer else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if writer.send(Command::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(limit, wait).await;
        }
    }
}

/// The writer: publishes what is queued, with up to [`IN_FLIGHT`] acks outstanding.
async fn write(js: async_nats::jetstream::Context, mut rx: mpsc::Receiver<Command>) {
    let mut in_flight = FuturesUnordered::new();
    let settle = |outcome: Result<(), String>| {
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "trail step not recorded");
            metrics::counter!("wacenter_trail_failed_total").increment(1);
        }
    };
    loop {
        tokio::select! {
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => settle(outcome),
            command = rx.recv(), if in_flight.len() < IN_FLIGHT => match command {
                None => break,
                Some(Command::Flush(done)) => {
                    while let Some(outcome) = in_flight.next().await {
                        settle(outcome);
                    }
                    let _ = done.send(());
                }
                Some(Command::Publish { subject, payload }) => {
                    let js = js.clone();
                    in_flight.push(async move {
                        let ack = js
                            .publish(subject, payload)
                            .await
                            .map_err(|e| e.to_string())?;
                        ack.await.map(drop).map_err(|e| e.to_string())
                    });
                }
            },
        }
    }
    while let Some(outcome) = in_flight.next().await {
        settle(outcome);
    }
}

/// The step of `letter` becoming a dead letter, with the phone and OtomaX codes its original
/// carries (an InboundMessage's `sender`, an OutboundMessage's `to`).
pub fn dead_lettered(letter: &DeadLetter) -> TrailEvent {
    let original = &letter.payload;
    let text = |k: &str| original.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let phone = match text("sender") {
        "" => text("to"),
        sender => sender,
    };
    let mut event = TrailEvent::new(TrailStep::DeadLettered, letter.id.clone(), phone);
    event.at = letter.failed_at;
    event.kode_inbox = original.get("kode_inbox").and_then(|v| v.as_i64());
    event.kode = original.get("outbox_kode").and_then(|v| v.as_i64());
    event.otomax = original
        .get("otomax")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    event.detail = format!("{}: {}", letter.reason.as_str(), letter.error);
    event
}

/// The step of an operator replaying `letter`.
pub fn replayed(letter: &DeadLetter, forced: bool) -> TrailEvent {
    let mut event = dead_lettered(letter);
    event.step = TrailStep::Replayed;
    event.at = Utc::now();
    event.detail = if forced {
        format!("replayed with --force (was {})", letter.reason.as_str())
    } else {
        format!("replayed (was {})", letter.reason.as_str())
    };
    event
}

/// One message's steps, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The message's id (inbound dedupe id or outbound id).
    pub id: String,
    pub phone: String,
    pub started: DateTime<Utc>,
    pub steps: Vec<TrailEvent>,
}

/// How far a lookup looks: a phone's messages of the last `phone_window`, at most `limit`
/// timelines (the newest).
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    pub phone_window: Duration,
    pub limit: usize,
    /// How long after a key's time its message's later steps (an outbox row hours later) are
    /// looked for.
    pub follow: Duration,
}

impl Default for Lookup {
    fn default() -> Self {
        Self {
            phone_window: Duration::from_secs(24 * 3600),
            limit: 20,
            follow: Duration::from_secs(24 * 3600),
        }
    }
}

/// The timelines `query` names: a WhatsApp message id (or a whole inbound id), a phone number
/// (its recent messages), a `kode_inbox` or an outbox `kode`. Newest first; empty when nothing
/// matches.
pub async fn find(
    bus: &Bus,
    query: &str,
    country_code: &str,
    lookup: Lookup,
) -> Result<Vec<Timeline>, BusError> {
    let query = query.trim();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    // "gowa:<account>:<message id>" is searched by its message id.
    let key = query.rsplit(':').next().unwrap_or(query).trim();
    let mut timelines: BTreeMap<String, Timeline> = BTreeMap::new();
    let keys: Vec<TrailKey> = read(bus, &names::trail_key_subject(key), None)
        .await?
        .into_iter()
        .filter_map(|(payload, _)| serde_json::from_slice::<TrailKey>(&payload).ok())
        .filter(|k| k.key == key)
        .collect();
    for k in &keys {
        let since = k.at - chrono::Duration::seconds(5);
        let until = k.at + chrono::Duration::from_std(lookup.follow).unwrap_or_default();
        let steps = steps_of(bus, &k.phone, since, Some(until)).await?;
        for timeline in group(steps) {
            if matches(&timeline, key, k.kind) {
                timelines.insert(timeline.id.clone(), timeline);
            }
        }
    }
    if let Some(phone) = phone_of(query, country_code) {
        let since =
            Utc::now() - chrono::Duration::from_std(lookup.phone_window).unwrap_or_default();
        for timeline in group(steps_of(bus, &phone, since, None).await?) {
            timelines.entry(timeline.id.clone()).or_insert(timeline);
        }
    }
    let mut out: Vec<Timeline> = timelines.into_values().collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.started));
    out.truncate(lookup.limit.max(1));
    Ok(out)
}

/// `query` as a phone number's digits, when it reads as one.
fn phone_of(query: &str, country_code: &str) -> Option<String> {
    let digits: String = query
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '+' | '(' | ')'))
        .collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = match digits.strip_prefix('0') {
        Some(rest) => format!("{country_code}{rest}"),
        None => digits,
    };
    wacenter_proto::PhoneNumber::from_digits(digits)
        .ok()
        .map(|p| p.to_string())
}

/// Whether `timeline` is the message `key` (of `kind`) names.
fn matches(timeline: &Timeline, key: &str, kind: TrailKeyKind) -> bool {
    timeline.steps.iter().any(|s| match kind {
        TrailKeyKind::MessageId => s.id.rsplit(':').next() == Some(key),
        TrailKeyKind::KodeInbox => s.kode_inbox.map(|k| k.to_string()).as_deref() == Some(key),
        TrailKeyKind::Kode => s.kode.map(|k| k.to_string()).as_deref() == Some(key),
    })
}

/// The message a step belongs to: an answer (`autoreply:<inbound id>`, `expired:<inbound id>`,
/// parts `…#2`) belongs to the inbound message it answers.
fn root_of(id: &str) -> &str {
    let id = id.split('#').next().unwrap_or(id);
    for prefix in ["autoreply:", "expired:", "auth_failed:", "rejected:"] {
        if let Some(rest) = id.strip_prefix(prefix) {
            return rest;
        }
    }
    id
}

/// Steps grouped into timelines, an outbox row joined to the message whose `kode_inbox` it
/// carries.
fn group(steps: Vec<TrailEvent>) -> Vec<Timeline> {
    let mut by_root: BTreeMap<String, Timeline> = BTreeMap::new();
    let mut root_of_inbox: BTreeMap<i64, String> = BTreeMap::new();
    // Outbox rows joined to a message, so their later steps follow.
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for step in steps {
        let mut root = root_of(&step.id).to_string();
        if step.step == TrailStep::Forwarded {
            if let Some(k) = step.kode_inbox {
                root_of_inbox.insert(k, root.clone());
            }
        }
        if root.starts_with("outbox:") {
            if let Some(r) = joined.get(&root) {
                root = r.clone();
            } else if let Some(r) = step.kode_inbox.and_then(|k| root_of_inbox.get(&k)) {
                joined.insert(root, r.clone());
                root = r.clone();
            }
        }
        let timeline = by_root.entry(root.clone()).or_insert_with(|| Timeline {
            id: root,
            phone: step.phone.clone(),
            started: step.at,
            steps: Vec::new(),
        });
        timeline.started = timeline.started.min(step.at);
        timeline.steps.push(step);
    }
    let mut out: Vec<Timeline> = by_root.into_values().collect();
    for t in &mut out {
        t.steps.sort_by_key(|s| s.at);
    }
    out
}

/// `phone`'s steps from `since` (until `until`, when given).
async fn steps_of(
    bus: &Bus,
    phone: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<Vec<TrailEvent>, BusError> {
    let subject = names::trail_phone_subject(phone);
    Ok(read(bus, &subject, Some((since, until)))
        .await?
        .into_iter()
        .filter_map(|(payload, _)| serde_json::from_slice::<TrailEvent>(&payload).ok())
        .collect())
}

/// Every message on `subject` (from a time, up to another), with its stream time.
async fn read(
    bus: &Bus,
    subject: &str,
    window: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
) -> Result<Vec<(bytes::Bytes, DateTime<Utc>)>, BusError> {
    let err = |e: String| BusError::Setup(format!("reading the trail ({subject}): {e}"));
    let stream = bus
        .jetstream()
        .get_stream(names::TRAIL_STREAM)
        .await
        .map_err(|e| err(e.to_string()))?;
    let deliver_policy = match window {
        Some((since, _)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                since.timestamp_nanos_opt().unwrap_or(0).into(),
            )
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        },
        None => DeliverPolicy::All,
    };
    let until = window.and_then(|(_, until)| until);
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .map_err(|_| err("no answer from NATS within 5 s".into()))?
    {
        let msg = next.map_err(|e| err(e.to_string()))?;
        let info = msg.info().map_err(|e| err(e.to_string()))?;
        let at =
            DateTime::<Utc>::from_timestamp_nanos(info.published.unix_timestamp_nanos() as i64);
        let last = info.pending == 0;
        if until.is_some_and(|u| at > u) {
            break;
        }
        out.push((msg.payload.clone(), at));
        if last {
            break;
        }
    }
    Ok(out)
}

/// What the trail holds since a time, counted: the console's "today".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub received: u64,
    pub forwarded: u64,
    /// Forwarded messages by OtomaX's inbox status (`21`, `41`, …).
    pub forwarded_by_status: BTreeMap<String, u64>,
    pub auto_replies: u64,
    pub sent: u64,
    pub outbox_rows: u64,
    pub send_failures: u64,
    pub notices: u64,
    /// Not forwarded, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Dead letters, by reason.
    pub dead_letters: BTreeMap<String, u64>,
}

/// Counts every step since `since`.
pub async fn tally(bus: &Bus, since: DateTime<Utc>) -> Result<Tally, BusError> {
    let mut t = Tally::default();
    for (payload, _) in read(bus, names::TRAIL_PHONE_SUBJECTS, Some((since, None))).await? {
        let Ok(step) = serde_json::from_slice::<TrailEvent>(&payload) else {
            continue;
        };
        // The first word of a detail is its reason (`expired: …`, `not forwarded: group`).
        let reason = |detail: &str, prefix: &str| {
            let rest = detail.strip_prefix(prefix).unwrap_or(detail);
            rest.split([':', ' ']).next().unwrap_or("").to_string()
        };
        match step.step {
            TrailStep::Received => t.received += 1,
            TrailStep::Forwarded => {
                t.forwarded += 1;
                let status = step.status.map(|s| s.to_string()).unwrap_or_default();
                *t.forwarded_by_status.entry(status).or_default() += 1;
                if !step.reply.is_empty() {
                    t.auto_replies += 1;
                }
            }
            TrailStep::Sent => t.sent += 1,
            TrailStep::OutboxReceived => t.outbox_rows += 1,
            TrailStep::SendFailed => t.send_failures += 1,
            TrailStep::NoticeQueued => t.notices += 1,
            TrailStep::Skipped => {
                *t.skipped
                    .entry(reason(&step.detail, "not forwarded: "))
                    .or_default() += 1
            }
            TrailStep::DeadLettered => {
                *t.dead_letters.entry(reason(&step.detail, "")).or_default() += 1
            }
            TrailStep::OtomaxFailed | TrailStep::OutboxStatus | TrailStep::Replayed => {}
        }
    }
    Ok(t)
}

/// One line about `step`, for people: what happened and the codes that matter.
pub fn describe(step: &TrailEvent) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = step.kode_inbox {
        parts.push(format!("kode_inbox {k}"));
    }
    if let Some(k) = step.kode {
        parts.push(format!("kode {k}"));
    }
    if let Some(s) = step.status {
        parts.push(format!("status {s}"));
    }
    if !step.detail.is_empty() {
        parts.push(step.detail.clone());
    }
    if !step.text.is_empty() {
        parts.push(format!("{:?}", step.text));
    }
    if !step.reply.is_empty() {
        parts.push(format!("reply {:?}", step.reply));
    }
    if let Some(server) = &step.otomax {
        parts.push(format!("otomax {server}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: TrailStep, id: &str, secs: i64) -> TrailEvent {
        let mut e = TrailEvent::new(step, id, "628123");
        e.at = DateTime::<Utc>::from_timestamp(1_700_000_000 + secs, 0).unwrap();
        e
    }

    #[test]
    fn answers_and_outbox_rows_join_the_message_they_belong_to() {
        let inbound = "gowa:acct:3EB0";
        let mut forwarded = step(TrailStep::Forwarded, inbound, 1);
        forwarded.kode_inbox = Some(77);
        let mut row = step(TrailStep::OutboxReceived, "outbox:9", 30);
        row.kode_inbox = Some(77);
        row.kode = Some(9);
        let mut other_row = step(TrailStep::OutboxReceived, "outbox:10", 31);
        other_row.kode_inbox = Some(78);
        let steps = vec![
            step(TrailStep::Received, inbound, 0),
            forwarded,
            step(TrailStep::Sent, &format!("autoreply:{inbound}"), 2),
            step(TrailStep::Sent, &format!("autoreply:{inbound}#2"), 3),
            row,
            step(TrailStep::Sent, "outbox:9", 32),
            other_row,
        ];
        let timelines = group(steps);
        let ids: Vec<&str> = timelines.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, [inbound, "outbox:10"]);
        let kinds: Vec<TrailStep> = timelines[0].steps.iter().map(|s| s.step).collect();
        assert_eq!(
            kinds,
            [
                TrailStep::Received,
                TrailStep::Forwarded,
                TrailStep::Sent,
                TrailStep::Sent,
                TrailStep::OutboxReceived,
                TrailStep::Sent
            ]
        );
        assert!(matches(&timelines[0], "3EB0", TrailKeyKind::MessageId));
        assert!(matches(&timelines[0], "77", TrailKeyKind::KodeInbox));
        assert!(matches(&timelines[0], "9", TrailKeyKind::Kode));
        assert!(!matches(&timelines[0], "10", TrailKeyKind::Kode));
    }

    #[test]
    fn phone_queries() {
        assert_eq!(
            phone_of("0812-3456-789", "62").as_deref(),
            Some("628123456789")
        );
        assert_eq!(
            phone_of("+62 812 3456 789", "62").as_deref(),
            Some("628123456789")
        );
        assert_eq!(phone_of("3EB0C1", "62"), None);
    }
}
