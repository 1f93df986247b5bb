//! The bus alone: what JetStream costs for one message's way through the pipeline, with no
//! service logic, no HTTP and no simulator involved.
//!
//! Each message makes the pipeline's NATS traffic, in the pipeline's order and with the same
//! client library and calls: published with a `Nats-Msg-Id` to a file-backed work-queue stream;
//! pulled by a durable consumer, claimed in a KV bucket (create-if-absent), its outcome recorded
//! (an update on the claim's revision), an answer published to a second work-queue stream, the
//! delivery acked; the answer pulled by a second consumer, claimed in another bucket, the outcome
//! recorded, acked. Beside its way, as the services' trail writers do, the message's trail: a
//! step where it arrives (with its message-id key), one where it is forwarded (with its
//! `kode_inbox` key) and one where it is sent, each key written after its step's ack. Same
//! number of messages in flight as the full-speed run, on the same nats-server, from one
//! connection. The pipeline does all of this and its HTTP
//! work on top, on the same cores, so this run's CPU per message and the HTTP work's added
//! together bound the ratio pipeline / baseline (`report::ratio_ceiling`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, kv, stream, Message};
use futures::StreamExt;
use tokio::sync::Semaphore;

/// The acknowledged JetStream writes on the way of one WhatsApp message that gets an
/// auto-reply:
/// 1. ingress publishes the inbound message;
/// 2. the forwarder claims it (`in_progress`), 3. records the outcome (`done`),
/// 4. publishes the auto-reply;
/// 5. the reply service claims that (`in_progress`), 6. records the outcome (`done`).
///
/// (The provider's message id of the send is recorded too only with `OTOMAX_FORWARD_OUTGOING`
/// on, which the bench leaves off.) Besides them each message is delivered twice (pulled by a
/// consumer) and acked twice.
pub const DURABLE_WRITES_PER_MESSAGE: u32 = 6;

/// The acknowledged trail writes beside its way: three steps (received, forwarded, sent) and
/// two keys (message id, `kode_inbox`).
pub const TRAIL_WRITES_PER_MESSAGE: u32 = 5;

const IN_STREAM: &str = "BENCH_FLOOR_IN";
const OUT_STREAM: &str = "BENCH_FLOOR_OUT";
const TRAIL_STREAM: &str = "BENCH_FLOOR_TRAIL";
const TRAIL_KEYS_STREAM: &str = "BENCH_FLOOR_TRAIL_KEYS";
/// The claim buckets of each side, as in the pipeline.
const BUCKETS: [&str; 2] = ["bench_floor_forwarded", "bench_floor_delivered"];
/// Trail subjects are per phone, as the pipeline's: this many phones.
const PHONES: u64 = 1000;

#[derive(Debug, Clone)]
pub struct FloorResult {
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
}

/// Everything one side's handler writes to, shared by its tasks.
struct Side {
    js: jetstream::Context,
    claims: kv::Store,
    /// Where the answer goes (the forwarder's auto-reply); `None` on the last side.
    publish_to: Option<&'static str>,
    /// The side's trail step carries a key (the forwarder's `kode_inbox`).
    trail_key: bool,
    tally: Arc<Tally>,
}

/// Messages leaving the run, through the last side or by failing anywhere; each frees its place
/// in the window. Trail writes are counted apart: they hold no message up.
struct Tally {
    done: AtomicU64,
    failed: AtomicU64,
    slots: Semaphore,
    trail_pending: AtomicU64,
    trail_failed: AtomicU64,
}

impl Tally {
    fn leave(&self, outcome: &anyhow::Result<()>) {
        let counter = if outcome.is_ok() {
            &self.done
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.slots.add_permits(1);
    }
}

/// Runs `count` messages (or as many as fit in `time_cap`), `window` in flight.
pub async fn run(
    nats_url: &str,
    count: u64,
    window: usize,
    time_cap: Duration,
) -> anyhow::Result<FloorResult> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to {nats_url} for the bus-alone run"))?;
    let js = jetstream::new(client);
    remove_topology(&js).await;
    let (inbound, outbound, buckets) = declare_topology(&js, window).await?;
    let [forwarded, delivered] = buckets;

    let tally = Arc::new(Tally {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        slots: Semaphore::new(window),
        trail_pending: AtomicU64::new(0),
        trail_failed: AtomicU64::new(0),
    });
    let forwarder = Arc::new(Side {
        js: js.clone(),
        claims: forwarded,
        publish_to: Some("bench.floor.out"),
        trail_key: true,
        tally: tally.clone(),
    });
    let reply = Arc::new(Side {
        js: js.clone(),
        claims: delivered,
        publish_to: None,
        trail_key: false,
        tally: tally.clone(),
    });
    let consumers = [
        tokio::spawn(consume(inbound, window, forwarder)),
        tokio::spawn(consume(outbound, window, reply)),
    ];

    let payload = bytes::Bytes::from(vec![b'x'; 300]); // about the size of an inbound message
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + time_cap;
    let mut sent = 0;
    while sent < count {
        // A place in the window comes back when the reply side is done with a message.
        match tokio::time::timeout_at(deadline, tally.slots.acquire()).await {
            Ok(p) => p?.forget(),
            Err(_) => break,
        }
        let (js, payload, tally) = (js.clone(), payload.clone(), tally.clone());
        tokio::spawn(async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("in-{sent}").as_str());
            let subject = format!("bench.floor.in.{sent}");
            let published = acked_publish(&js, subject, headers, payload).await;
            if published.is_err() {
                tally.leave(&published);
            } else {
                record_trail(&js, &tally, sent, true);
            }
        });
        sent += 1;
    }
    // Every message through both sides, or failed.
    let all_back = tokio::time::timeout(Duration::from_secs(30), async {
        while tally.done.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < sent
            || tally.trail_pending.load(Ordering::Relaxed) > 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    for c in consumers {
        c.abort();
    }
    remove_topology(&js).await;
    let (done, failed) = (
        tally.done.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    anyhow::ensure!(
        failed == 0,
        "{failed} messages' writes were not acknowledged by JetStream"
    );
    let trail_failed = tally.trail_failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        trail_failed == 0,
        "{trail_failed} trail writes were not acknowledged by JetStream"
    );
    anyhow::ensure!(
        all_back.is_ok(),
        "{} of {sent} messages were still on the bus 30 s after the last was sent",
        sent - done
    );
    let messages = done;
    Ok(FloorResult {
        messages,
        seconds,
        msgs_per_s: messages as f64 / seconds.max(1e-9),
    })
}

/// How long anything of this run outlives it, should removing it fail: not the pipeline's days.
const LEFTOVERS_AGE: Duration = Duration::from_secs(600);

/// The pipeline's own stream shapes (`wacenter_bus`), one replica, short-lived.
async fn declare_topology(
    js: &jetstream::Context,
    window: usize,
) -> anyhow::Result<(
    consumer::PullConsumer,
    consumer::PullConsumer,
    [kv::Store; 2],
)> {
    let mut consumers = Vec::new();
    for (name, subjects) in [
        (IN_STREAM, "bench.floor.in.>"),
        (OUT_STREAM, "bench.floor.out.>"),
    ] {
        let s = js
            .create_stream(stream::Config {
                max_age: LEFTOVERS_AGE,
                ..wacenter_bus::work_queue_stream(name, subjects, 1)
            })
            .await
            .with_context(|| format!("cannot create the {name} stream"))?;
        consumers.push(
            s.create_consumer(consumer::pull::Config {
                durable_name: Some("bench".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: i64::try_from(window).unwrap_or(i64::MAX),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create the consumer on {name}"))?,
        );
    }
    let [steps, keys] = wacenter_bus::trail::trail_streams(LEFTOVERS_AGE, 1);
    for (config, name, subjects) in [
        (steps, TRAIL_STREAM, "bench.floor.trail.p.>"),
        (keys, TRAIL_KEYS_STREAM, "bench.floor.trail.k.>"),
    ] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            ..config
        })
        .await
        .with_context(|| format!("cannot create the {name} stream"))?;
    }
    let mut stores = Vec::new();
    for bucket in BUCKETS {
        js.create_stream(stream::Config {
            max_age: LEFTOVERS_AGE,
            ..wacenter_bus::kv_bucket_stream(bucket, LEFTOVERS_AGE, 1)
        })
        .await
        .with_context(|| format!("cannot create the {bucket} bucket"))?;
        stores.push(js.get_key_value(bucket).await?);
    }
    let outbound = consumers.pop().expect("two consumers");
    let inbound = consumers.pop().expect("two consumers");
    let stores: [kv::Store; 2] = stores
        .try_into()
        .map_err(|_| anyhow::anyhow!("two buckets"))?;
    Ok((inbound, outbound, stores))
}

async fn remove_topology(js: &jetstream::Context) {
    for name in [IN_STREAM, OUT_STREAM, TRAIL_STREAM, TRAIL_KEYS_STREAM] {
        let _ = js.delete_stream(name).await;
    }
    for bucket in BUCKETS {
        let _ = js.delete_stream(format!("KV_{bucket}")).await;
    }
}

/// One side's worker: pulls in batches of `window` and handles each message on its own task, as
/// `wacenter_bus::worker` does.
async fn consume(consumer: consumer::PullConsumer, window: usize, side: Arc<Side>) {
    let Ok(mut messages) = consumer
        .stream()
        .max_messages_per_batch(window)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
    else {
        return;
    };
    while let Some(Ok(msg)) = messages.next().await {
        let side = side.clone();
        tokio::spawn(async move {
            let outcome = handle(&side, &msg).await;
            // A message leaves after the last side, or wherever it failed.
            if outcome.is_err() || side.publish_to.is_none() {
                side.tally.leave(&outcome);
            }
        });
    }
}

/// Claim, outcome, (answer), ack: the writes a handler makes around its HTTP call, and its
/// trail step beside them.
async fn handle(side: &Side, msg: &Message) -> anyhow::Result<()> {
    let n = msg.subject.rsplit('.').next().unwrap_or("0").to_string();
    let record = msg.payload.clone();
    let revision = side
        .claims
        .create(&n, record.clone())
        .await
        .map_err(|e| anyhow::anyhow!("claim: {e}"))?;
    side.claims
        .update(&n, record.clone(), revision)
        .await
        .map_err(|e| anyhow::anyhow!("outcome: {e}"))?;
    record_trail(
        &side.js,
        &side.tally,
        n.parse().unwrap_or(0),
        side.trail_key,
    );
    if let Some(prefix) = side.publish_to {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("out-{n}").as_str());
        acked_publish(&side.js, format!("{prefix}.{n}"), headers, record).await?;
    }
    msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))
}

/// A trail step on its phone's subject and, with `key`, a key written after the step's ack (it
/// carries the step's sequence): off the message's way, as the services' trail writers do.
fn record_trail(js: &jetstream::Context, tally: &Arc<Tally>, n: u64, key: bool) {
    tally.trail_pending.fetch_add(1, Ordering::Relaxed);
    let (js, tally) = (js.clone(), tally.clone());
    tokio::spawn(async move {
        let step = bytes::Bytes::from(vec![b's'; 350]); // about a step's JSON
        let written = async {
            let subject = format!("bench.floor.trail.p.62812{:07}", n % PHONES);
            let ack = js
                .publish(subject, step)
                .await
                .map_err(|e| anyhow::anyhow!("trail step: {e}"))?
                .await
                .map_err(|e| anyhow::anyhow!("trail step ack: {e}"))?;
            if key {
                let record = format!("{{\"key\":\"{n}\",\"seq\":{}}}{:>100}", ack.sequence, "");
                let subject = format!("bench.floor.trail.k.{:02x}", n % 256);
                js.publish(subject, record.into())
                    .await
                    .map_err(|e| anyhow::anyhow!("trail key: {e}"))?
                    .await
                    .map_err(|e| anyhow::anyhow!("trail key ack: {e}"))?;
            }
            anyhow::Ok(())
        }
        .await;
        if written.is_err() {
            tally.trail_failed.fetch_add(1, Ordering::Relaxed);
        }
        tally.trail_pending.fetch_sub(1, Ordering::Relaxed);
    });
}

async fn acked_publish(
    js: &jetstream::Context,
    subject: String,
    headers: async_nats::HeaderMap,
    payload: bytes::Bytes,
) -> anyhow::Result<()> {
    js.publish_with_headers(subject, headers, payload)
        .await
        .map_err(|e| anyhow::anyhow!("publish: {e}"))?
        .await
        .map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
    Ok(())
}
