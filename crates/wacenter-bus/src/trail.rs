//! The message trail (spec §4): every step of every message, on NATS, kept
//! `TRAIL_RETENTION_DAYS`, and how to find one message's steps again.
//!
//! Writing costs one JetStream publish per step, made by a writer task (see [`Trail`]): a step
//! is a record of what happened, never a reason to hold a message up or to fail it. Steps go to
//! one subject per phone number (`wa.trail.p.<digits>` in `WA_TRAIL`), never one per message:
//! nats-server keeps every subject's state in memory, and a week of messages would be hundreds
//! of thousands of subjects.
//!
//! The keys an operator searches by (a WhatsApp message id, a `kode_inbox`, an outbox `kode`)
//! go to a stream of their own, `WA_TRAIL_KEYS`, on a subject per day and hash bucket
//! (`wa.trail.k.<yyyymmdd>.<xx>`), each with the phone and the `WA_TRAIL` sequence of the step
//! that first knew it. Finding a message reads the key's bucket day by day, newest first, then
//! the phone's steps from that sequence on, for [`Lookup::follow`] of the steps' own time. No
//! lookup reads the steps stream by time, so none depends on a clock, and none reads a phone's
//! whole week.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wacenter_proto::{names, DeadLetter, TrailEvent, TrailKey, TrailKeyKind, TrailStep};

use crate::{Bus, BusError};

/// The streams of the trail, kept `retention`: the steps (`WA_TRAIL`), then the keys
/// (`WA_TRAIL_KEYS`). In that order: a trail declared before the keys had a stream of their own
/// took every `wa.trail.>` subject, and must give the keys' up first.
pub fn trail_streams(
    retention: Duration,
    replicas: usize,
) -> [async_nats::jetstream::stream::Config; 2] {
    use async_nats::jetstream::stream;
    let config = |name: &str, subjects: &str| stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        max_age: retention,
        // Steps carry no Nats-Msg-Id; a short window keeps the dedupe map empty anyway.
        duplicate_window: Duration::from_secs(60),
        // JSON steps compress well; the trail is written once and read rarely.
        compression: Some(stream::Compression::S2),
        ..Default::default()
    };
    [
        config(names::TRAIL_STREAM, names::TRAIL_PHONE_SUBJECTS),
        config(names::TRAIL_KEYS_STREAM, names::TRAIL_KEY_SUBJECTS),
    ]
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
        /// Published once the step is stored, with the step's sequence.
        key: Option<Box<TrailKey>>,
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

    fn queue(&self, event: &TrailEvent, key: Option<TrailKey>) {
        let Some(writer) = &self.writer else {
            return;
        };
        let command = Command::Publish {
            subject: names::trail_phone_subject(&event.phone),
            payload: serde_json::to_vec(event)
                .expect("trail steps serialize")
                .into(),
            key: key.map(Box::new),
        };
        if writer.try_send(command).is_err() {
            tracing::warn!(
                step = event.step.as_str(),
                id = %event.id,
                "trail step not recorded: the trail writer is full (NATS away or far behind)"
            );
            metrics::counter!("wacenter_trail_failed_total").increment(1);
        }
    }

    /// Records `event` on its phone's subject: queues it for the writer and returns at once.
    pub fn record(&self, event: &TrailEvent) {
        self.queue(event, None);
    }

    /// Records `event`, and `key` (of `kind`) pointing at it: the step that first knows a key.
    /// A `kode_inbox` key names the message `event` is about; a `kode` key carries the
    /// `kode_inbox` its row answers, so either finds the whole message.
    pub fn record_with_key(&self, event: &TrailEvent, key: &str, kind: TrailKeyKind) {
        let key = key.trim();
        if key.is_empty() {
            return self.queue(event, None);
        }
        let record = TrailKey::for_step(event, key, kind);
        self.queue(event, Some(record));
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
                Some(Command::Publish { subject, payload, key }) => {
                    let js = js.clone();
                    in_flight.push(async move {
                        let err = |e: &dyn std::fmt::Display| e.to_string();
                        let ack = js
                            .publish(subject, payload)
                            .await
                            .map_err(|e| err(&e))?
                            .await
                            .map_err(|e| err(&e))?;
                        let Some(mut key) = key else {
                            return Ok(());
                        };
                        key.seq = Some(ack.sequence);
                        let payload = serde_json::to_vec(&key).expect("trail keys serialize");
                        let subject = names::trail_key_subject(&key.key, key.at.date_naive());
                        js.publish(subject, payload.into())
                            .await
                            .map_err(|e| err(&e))?
                            .await
                            .map(drop)
                            .map_err(|e| err(&e))
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
///
/// A key is found in `WA_TRAIL_KEYS` day by day, newest first; the keys it leads to (a row's
/// `kode_inbox`, that message's id) were recorded before it, and are found by reading
/// backwards from it in chunks. Then the phone's steps are read from the keys' sequences for
/// [`Lookup::follow`].
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
    let reader = Reader::open(bus).await?;
    // "gowa:<account>:<message id>" is searched by its message id.
    let key = query.rsplit(':').next().unwrap_or(query).trim();
    // A number can be a phone as well as a kode: its recent messages are read meanwhile. One
    // written as a phone (0…, +…, or the country code and ten digits or more) is only a phone.
    let phone = phone_of(query, country_code);
    let only_phone = phone.is_some() && written_as_phone(query, country_code);
    let keyed = async {
        if only_phone {
            Ok(Vec::new())
        } else {
            keyed(&reader, key, lookup).await
        }
    };
    let recent = async {
        match phone {
            Some(phone) => {
                let since = Utc::now()
                    - chrono::Duration::from_std(lookup.phone_window).unwrap_or_default();
                reader.recent(&phone, since, lookup.limit.max(1)).await
            }
            None => Ok(Vec::new()),
        }
    };
    let (keyed, recent) = tokio::join!(keyed, recent);
    let mut timelines: BTreeMap<String, Timeline> =
        keyed?.into_iter().map(|t| (t.id.clone(), t)).collect();
    for timeline in recent? {
        timelines.entry(timeline.id.clone()).or_insert(timeline);
    }
    let mut out: Vec<Timeline> = timelines.into_values().collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.started));
    out.truncate(lookup.limit.max(1));
    Ok(out)
}

/// The timelines of the messages `key` names.
async fn keyed(reader: &Reader, key: &str, lookup: Lookup) -> Result<Vec<Timeline>, BusError> {
    let follow = chrono::Duration::from_std(lookup.follow).unwrap_or_default();
    let mut kinds = Vec::new();
    // Per phone: the first sequence to read from, and the time to read until (a message's
    // keys all point at the same phone, close together: one read covers them).
    let mut windows: BTreeMap<String, (u64, DateTime<Utc>)> = BTreeMap::new();
    for found in reader.keys(key, Scan::All).await? {
        kinds.push(found.key.kind);
        for start in reader.starts(&found).await? {
            let until = start.at + follow;
            let window = windows.entry(start.phone).or_insert((start.seq, until));
            *window = (window.0.min(start.seq), window.1.max(until));
        }
    }
    let mut steps: BTreeMap<u64, TrailEvent> = BTreeMap::new();
    for (phone, (seq, until)) in windows {
        reader.steps_after(&phone, seq, until, &mut steps).await?;
    }
    Ok(group(steps.into_values().collect())
        .into_iter()
        .filter(|t| kinds.iter().any(|kind| matches(t, key, *kind)))
        .collect())
}

/// A key as found in `WA_TRAIL_KEYS`, with its sequence there.
struct FoundKey {
    key: TrailKey,
    seq: u64,
}

/// Where a message's steps start on its phone's subject.
struct Start {
    phone: String,
    seq: u64,
    at: DateTime<Utc>,
}

/// Which part of `WA_TRAIL_KEYS` a key is looked for in.
#[derive(Clone, Copy)]
enum Scan {
    /// Every day, newest first, up to the first that holds the key: it could be from any time.
    All,
    /// Before this sequence, nearest first: a key recorded before one that is known (the
    /// message a row answers was forwarded before the row came).
    Before(u64),
}

/// Days of keys read at once: nats-server filters each on its own core.
const SCAN_READERS: usize = 2;
/// Keys read by the first backwards chunk; each next chunk is four times larger.
const BACK_CHUNK: u64 = 4_096;
/// At most this many of one phone's steps are read per start (a runaway phone).
const STEPS_PER_START: usize = 2_000;

/// The trail's two streams, for one lookup.
struct Reader {
    steps: async_nats::jetstream::stream::Stream,
    keys: Option<async_nats::jetstream::stream::Stream>,
}

fn lookup_error(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Setup(format!("reading the trail ({what}): {e}"))
}

impl Reader {
    async fn open(bus: &Bus) -> Result<Self, BusError> {
        let js = bus.jetstream();
        let steps = js
            .get_stream(names::TRAIL_STREAM)
            .await
            .map_err(|e| lookup_error(names::TRAIL_STREAM, e))?;
        // A trail written before the keys had their own stream has no keys stream yet.
        let keys = js.get_stream(names::TRAIL_KEYS_STREAM).await.ok();
        Ok(Self { steps, keys })
    }

    /// The records of `key` in `scan`.
    async fn keys(&self, key: &str, scan: Scan) -> Result<Vec<FoundKey>, BusError> {
        let Some(stream) = &self.keys else {
            return Ok(Vec::new());
        };
        match scan {
            Scan::All => {
                // The days that hold the key's bucket, newest first, two read at once; the
                // first days that hold the key end the search (a replay's key leads on to the
                // older ones, see `starts`).
                let mut days: Vec<String> = stream
                    .info_with_subjects(names::trail_key_days(key))
                    .await
                    .map_err(|e| lookup_error(names::TRAIL_KEYS_STREAM, e))?
                    .filter_map(|s| async move { s.ok().map(|(subject, _)| subject) })
                    .collect()
                    .await;
                days.sort_unstable_by(|a, b| b.cmp(a));
                for pair in days.chunks(SCAN_READERS) {
                    let reads = pair.iter().map(|subject| async move {
                        let mut found = Vec::new();
                        read_range(stream, subject, 1, u64::MAX, collect_key(key, &mut found))
                            .await?;
                        Ok::<_, BusError>(found)
                    });
                    let found: Vec<FoundKey> = futures::future::try_join_all(reads)
                        .await?
                        .into_iter()
                        .flatten()
                        .collect();
                    if !found.is_empty() {
                        return Ok(found);
                    }
                }
                Ok(Vec::new())
            }
            Scan::Before(before) => {
                let mut found = Vec::new();
                read_backwards(
                    stream,
                    names::TRAIL_KEYS_STREAM,
                    &names::trail_key_days(key),
                    before.saturating_sub(1),
                    |chunk| {
                        {
                            let mut take = collect_key(key, &mut found);
                            for (seq, payload) in chunk {
                                take(*seq, payload);
                            }
                        }
                        !found.is_empty()
                    },
                )
                .await?;
                Ok(found)
            }
        }
    }

    /// Where the steps of the message `found` names start: from its received step when the
    /// trail has it, and from the step `found` points at.
    async fn starts(&self, found: &FoundKey) -> Result<Vec<Start>, BusError> {
        let own = |k: &TrailKey| {
            k.seq.map(|seq| Start {
                phone: k.phone.clone(),
                seq,
                at: k.at,
            })
        };
        let mut starts: Vec<Start> = own(&found.key).into_iter().collect();
        let mut message = found.key.message.clone();
        let mut before = found.seq;
        if found.key.kind == TrailKeyKind::Kode {
            // The row's kode_inbox was recorded when its message was forwarded, before the row.
            if let Some(kode_inbox) = found.key.kode_inbox {
                let forwarded = self
                    .keys(&kode_inbox.to_string(), Scan::Before(found.seq))
                    .await?
                    .into_iter()
                    .find(|k| k.key.kind == TrailKeyKind::KodeInbox);
                if let Some(k) = forwarded {
                    starts.extend(own(&k.key));
                    message = k.key.message.clone();
                    before = k.seq;
                }
            }
        }
        if let Some(message) = message {
            let bare = message.rsplit(':').next().unwrap_or(&message).to_string();
            let received = self
                .keys(&bare, Scan::Before(before))
                .await?
                .into_iter()
                .find(|k| k.key.kind == TrailKeyKind::MessageId);
            if let Some(k) = received {
                starts.extend(own(&k.key));
            }
        }
        Ok(starts)
    }

    /// `phone`'s steps from `WA_TRAIL` sequence `seq` on, until one later than `until`.
    async fn steps_after(
        &self,
        phone: &str,
        seq: u64,
        until: DateTime<Utc>,
        into: &mut BTreeMap<u64, TrailEvent>,
    ) -> Result<(), BusError> {
        let subject = names::trail_phone_subject(phone);
        let mut taken = 0;
        read_range(&self.steps, &subject, seq, u64::MAX, |seq, payload| {
            let Ok(step) = serde_json::from_slice::<TrailEvent>(payload) else {
                return true;
            };
            if step.at > until {
                return false;
            }
            into.insert(seq, step);
            taken += 1;
            taken < STEPS_PER_START
        })
        .await
    }

    /// `phone`'s newest `limit` messages since `since`: read backwards from its last step in
    /// growing chunks, so a busy phone costs a few reads and a quiet one no more than its day.
    async fn recent(
        &self,
        phone: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timeline>, BusError> {
        let subject = names::trail_phone_subject(phone);
        let Ok(last) = self.steps.get_last_raw_message_by_subject(&subject).await else {
            return Ok(Vec::new());
        };
        let mut steps: BTreeMap<u64, TrailEvent> = BTreeMap::new();
        read_backwards(
            &self.steps,
            names::TRAIL_STREAM,
            &subject,
            last.sequence,
            |chunk| {
                let mut older = false;
                for (seq, payload) in chunk {
                    if let Ok(step) = serde_json::from_slice::<TrailEvent>(payload) {
                        older |= step.at < since;
                        steps.insert(*seq, step);
                    }
                }
                let messages = steps
                    .values()
                    .filter(|s| s.step == TrailStep::Received && s.at >= since)
                    .count();
                older || messages >= limit
            },
        )
        .await?;
        let mut out: Vec<Timeline> = group(steps.into_values().collect())
            .into_iter()
            .filter(|t| t.started >= since)
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.started));
        out.truncate(limit);
        Ok(out)
    }
}

/// Reads `subject` of `stream` (named `name`) backwards from sequence `end`, in chunks that grow
/// fourfold from [`BACK_CHUNK`], each read forwards and handed to `enough`, until `enough` says
/// so or the stream's first message is read: what was recorded shortly before is found in one
/// small read, what is far back in a few.
async fn read_backwards(
    stream: &async_nats::jetstream::stream::Stream,
    name: &str,
    subject: &str,
    end: u64,
    mut enough: impl FnMut(&[(u64, Bytes)]) -> bool,
) -> Result<(), BusError> {
    let first = stream
        .get_info()
        .await
        .map_err(|e| lookup_error(name, e))?
        .state
        .first_sequence
        .max(1);
    let mut end = end;
    let mut chunk = BACK_CHUNK;
    while end >= first {
        let start = end.saturating_sub(chunk - 1).max(first);
        let mut read = Vec::new();
        read_range(stream, subject, start, end, |seq, payload| {
            read.push((seq, payload.clone()));
            true
        })
        .await?;
        if enough(&read) || start == first {
            break;
        }
        end = start - 1;
        chunk = chunk.saturating_mul(4);
    }
    Ok(())
}

/// A reader's `take` that keeps the records of `key` (its hash subject holds others).
fn collect_key<'a>(
    key: &'a str,
    found: &'a mut Vec<FoundKey>,
) -> impl FnMut(u64, &Bytes) -> bool + 'a {
    move |seq, payload| {
        if let Ok(k) = serde_json::from_slice::<TrailKey>(payload) {
            if k.key == key {
                found.push(FoundKey { key: k, seq });
            }
        }
        true
    }
}

/// Reads `subject`'s messages of `stream` from sequence `start` to `end`, handing each to
/// `take` until it answers `false`.
async fn read_range(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
    start: u64,
    end: u64,
    mut take: impl FnMut(u64, &Bytes) -> bool,
) -> Result<(), BusError> {
    let err = |e: &dyn std::fmt::Display| lookup_error(subject, e);
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .map_err(|_| err(&"no answer from NATS within 5 s"))?
    {
        let msg = next.map_err(|e| err(&e))?;
        let info = msg.info().map_err(|e| err(&e))?;
        if info.stream_sequence > end || !take(info.stream_sequence, &msg.payload) {
            break;
        }
        if info.pending == 0 {
            break;
        }
    }
    Ok(())
}

/// Whether `query` is written the way phone numbers are and OtomaX's sequential codes are not:
/// in local form (`0…`), with a `+`, or starting with the country code with ten digits or more.
fn written_as_phone(query: &str, country_code: &str) -> bool {
    let query = query.trim_start();
    let digits = query.chars().filter(char::is_ascii_digit).count();
    query.starts_with('0')
        || query.starts_with('+')
        || (!country_code.is_empty() && query.starts_with(country_code) && digits >= 10)
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

/// Every message on `subject` of `WA_TRAIL` from `since` on.
async fn read_since(
    bus: &Bus,
    subject: &str,
    since: DateTime<Utc>,
) -> Result<Vec<bytes::Bytes>, BusError> {
    let err = |e: &dyn std::fmt::Display| lookup_error(subject, e);
    let stream = bus
        .jetstream()
        .get_stream(names::TRAIL_STREAM)
        .await
        .map_err(|e| err(&e))?;
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(
        since.timestamp_nanos_opt().unwrap_or(0).into(),
    )
    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(5), messages.next())
        .await
        .map_err(|_| err(&"no answer from NATS within 5 s"))?
    {
        let msg = next.map_err(|e| err(&e))?;
        let last = msg.info().map_err(|e| err(&e))?.pending == 0;
        out.push(msg.payload.clone());
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
    for payload in read_since(bus, names::TRAIL_PHONE_SUBJECTS, since).await? {
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
        // Searched as a phone only; a number OtomaX could have given is searched as a key too.
        assert!(written_as_phone("0812-3456-789", "62"));
        assert!(written_as_phone("+62 812 3456 789", "62"));
        assert!(written_as_phone("628123456789", "62"));
        assert!(!written_as_phone("218223", "62"));
        assert!(!written_as_phone("9000350000", "62"));
    }
}
