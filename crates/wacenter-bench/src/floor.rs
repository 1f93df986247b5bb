//! The durable-writes floor: what JetStream alone costs for the acknowledged writes one message
//! makes on its way through the pipeline, with no service, no HTTP and no simulator involved.
//!
//! Each message of the pipeline makes [`DURABLE_WRITES_PER_MESSAGE`] writes that JetStream
//! stores and acknowledges before the pipeline goes on (the promises rest on them). This run makes
//! the same number of acknowledged writes per message, one after the other as in the pipeline,
//! with the same number of messages in flight, to a file-backed stream on the same nats-server,
//! from one connection. The pipeline does all of this and the baseline's HTTP work on top, on
//! the same cores, so the two runs' CPU per message added together bound the ratio
//! pipeline / baseline while every one of those writes is kept (`report::ratio_ceiling`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use tokio::sync::Semaphore;

/// The acknowledged JetStream writes of one WhatsApp message that gets an auto-reply:
/// 1. ingress publishes the inbound message;
/// 2. the forwarder claims it (`in_progress`), 3. records the outcome (`done`),
/// 4. publishes the auto-reply;
/// 5. the reply service claims that (`in_progress`), 6. records the provider's message id as
///    one of ours, 7. records the outcome (`done`).
///
/// The two consumer acks and the pull requests are not waited for and are not counted.
pub const DURABLE_WRITES_PER_MESSAGE: u32 = 7;

const STREAM: &str = "BENCH_FLOOR";

#[derive(Debug, Clone)]
pub struct FloorResult {
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
}

/// Runs `count` messages' worth of writes (or as many as fit in `time_cap`), `window` in flight.
pub async fn run(
    nats_url: &str,
    count: u64,
    window: usize,
    time_cap: Duration,
) -> anyhow::Result<FloorResult> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("cannot connect to {nats_url} for the durable-writes floor"))?;
    let js = jetstream::new(client);
    // Like the wacenter streams: file storage, one replica. Made afresh and removed afterwards.
    let _ = js.delete_stream(STREAM).await;
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["bench.floor.>".into()],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .context("cannot create the BENCH_FLOOR stream")?;
    let payload = bytes::Bytes::from(vec![b'x'; 300]); // about the size of an inbound message
    let slots = Arc::new(Semaphore::new(window));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + time_cap;
    let mut sent = 0;
    while sent < count {
        let permit = match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
            Ok(p) => p?,
            Err(_) => break,
        };
        let (js, payload, done, failed) =
            (js.clone(), payload.clone(), done.clone(), failed.clone());
        let subject = format!("bench.floor.{sent}");
        tokio::spawn(async move {
            for _ in 0..DURABLE_WRITES_PER_MESSAGE {
                let ack = match js.publish(subject.clone(), payload.clone()).await {
                    Ok(ack) => ack.await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if ack.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    return;
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
        sent += 1;
    }
    // Every permit back: every message's writes finished.
    let _ = tokio::time::timeout(
        Duration::from_secs(30),
        slots.acquire_many(u32::try_from(window).unwrap_or(u32::MAX)),
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let _ = js.delete_stream(STREAM).await;
    let failed = failed.load(Ordering::Relaxed);
    anyhow::ensure!(
        failed == 0,
        "{failed} messages' writes were not acknowledged by JetStream"
    );
    let messages = done.load(Ordering::Relaxed);
    Ok(FloorResult {
        messages,
        seconds,
        msgs_per_s: messages as f64 / seconds.max(1e-9),
    })
}
