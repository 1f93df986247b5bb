//! The bus alone: what JetStream costs for one message's way through the pipeline, with no
//! service logic, no HTTP and no simulator involved.
//!
//! Each message makes the pipeline's NATS traffic, in the pipeline's order and with the same
//! client library and calls: published with a `Nats-Msg-Id` to a file-backed work-queue stream;
//! pulled by a durable consumer, claimed in a KV bucket (create-if-absent), its outcome recorded
//! (an update on the claim's revision), an answer published to a second work-queue stream, the
//! delivery acked; the answer pulled by a second consumer, claimed in another bucket, an id put
//! in a third, the outcome recorded, acked. Same number of messages in flight as the full-speed
//! run, on the same nats-server, from one connection. The pipeline does all of this and its HTTP
//! work on top, on the same cores, so this run's CPU per message and the HTTP work's added
//! together bound the ratio pipeline / baseline (`report::ratio_ceiling`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, kv, stream, Message};
use futures::StreamExt;
use tokio::sync::Semaphore;

/// The acknowledged JetStream writes of one WhatsApp message that gets an auto-reply:
/// 1. ingress publishes the inbound message;
/// 2. the forwarder claims it (`in_progress`), 3. records the outcome (`done`),
/// 4. publishes the auto-reply;
/// 5. the reply service claims that (`in_progress`), 6. records the provider's message id as
///    one of ours, 7. records the outcome (`done`).
///
/// Besides them each message is delivered twice (pulled by a consumer) and acked twice.
pub const DURABLE_WRITES_PER_MESSAGE: u32 = 7;

const IN_STREAM: &str = "BENCH_FLOOR_IN";
const OUT_STREAM: &str = "BENCH_FLOOR_OUT";
/// The claim buckets of each side and the own-message ids, as in the pipeline.
const BUCKETS: [&str; 3] = [
    "bench_floor_forwarded",
    "bench_floor_delivered",
    "bench_floor_own",
];

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
    own_ids: Option<kv::Store>,
    /// Where the answer goes (the forwarder's auto-reply); `None` on the last side.
    publish_to: Option<&'static str>,
    tally: Arc<Tally>,
}

/// Messages leaving the run, through the last side or by failing anywhere; each frees its place
/// in the window.
struct Tally {
    done: AtomicU64,
    failed: AtomicU64,
    slots: Semaphore,
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
    let [forwarded, delivered, own] = buckets;

    let tally = Arc::new(Tally {
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        slots: Semaphore::new(window),
    });
    let forwarder = Arc::new(Side {
        js: js.clone(),
        claims: forwarded,
        own_ids: None,
        publish_to: Some("bench.floor.out"),
        tally: tally.clone(),
    });
    let reply = Arc::new(Side {
        js: js.clone(),
        claims: delivered,
        own_ids: Some(own),
        publish_to: None,
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
            }
        });
        sent += 1;
    }
    // Every message through both sides, or failed.
    let all_back = tokio::time::timeout(Duration::from_secs(30), async {
        while tally.done.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < sent {
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
    [kv::Store; 3],
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
    let stores: [kv::Store; 3] = stores
        .try_into()
        .map_err(|_| anyhow::anyhow!("three buckets"))?;
    Ok((inbound, outbound, stores))
}

async fn remove_topology(js: &jetstream::Context) {
    for name in [IN_STREAM, OUT_STREAM] {
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

/// Claim, (answer | own id), outcome, ack: the writes a handler makes around its HTTP call.
async fn handle(side: &Side, msg: &Message) -> anyhow::Result<()> {
    let n = msg.subject.rsplit('.').next().unwrap_or("0").to_string();
    let record = msg.payload.clone();
    let revision = side
        .claims
        .create(&n, record.clone())
        .await
        .map_err(|e| anyhow::anyhow!("claim: {e}"))?;
    if let Some(own) = &side.own_ids {
        own.put(format!("own{n}"), record.clone())
            .await
            .map_err(|e| anyhow::anyhow!("own id: {e}"))?;
    }
    side.claims
        .update(&n, record.clone(), revision)
        .await
        .map_err(|e| anyhow::anyhow!("outcome: {e}"))?;
    if let Some(prefix) = side.publish_to {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("out-{n}").as_str());
        acked_publish(&side.js, format!("{prefix}.{n}"), headers, record).await?;
    }
    msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))
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
