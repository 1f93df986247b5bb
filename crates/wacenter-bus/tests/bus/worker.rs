//! The worker loop against a real nats-server: nothing ends without a dead letter, whatever
//! happens on a message's last delivery.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use tokio::sync::watch;
use wacenter_bus::{worker, Bus, Delivery, Disposition, Topology, WorkerConfig};
use wacenter_proto::{names, DeadLetter, DeadLetterReason};
use wacenter_test_support::{eventually, NatsServer};

const DEAD_LETTERS: &str = "test.deadletter";

fn topology(max_attempts: i64) -> Topology {
    Topology {
        replicas: 1,
        ack_wait: Duration::from_secs(1),
        max_attempts,
        ..Topology::default()
    }
}

async fn bus(nats: &NatsServer, max_attempts: i64) -> Bus {
    let bus = Bus::connect(&nats.url(), "test", topology(max_attempts))
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    bus
}

/// Where the test's dead letters go: a stream of its own, created when the test says so.
async fn dead_letter_stream(bus: &Bus) {
    bus.jetstream()
        .create_stream(stream::Config {
            name: "TEST_DEADLETTER".into(),
            subjects: vec![format!("{DEAD_LETTERS}")],
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn dead_letters(bus: &Bus) -> Vec<DeadLetter> {
    let Ok(stream) = bus.jetstream().get_stream("TEST_DEADLETTER").await else {
        return Vec::new();
    };
    let info = stream.get_info().await.unwrap();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&m.payload).unwrap());
        }
    }
    out
}

async fn inbound_left(bus: &Bus) -> u64 {
    bus.stream_messages(names::INBOUND_STREAM).await.unwrap()
}

fn config() -> WorkerConfig {
    WorkerConfig {
        name: "test",
        lane: names::DEFAULT_LANE.into(),
        stream: names::INBOUND_STREAM,
        consumer: "test-worker".into(),
        filters: Vec::new(),
        concurrency: 4,
        dead_letter_subject: DEAD_LETTERS,
    }
}

/// The test's payload: what the worker decodes before a handler sees it.
#[derive(serde::Deserialize)]
struct Hello {
    hello: String,
}

impl worker::Job for Hello {
    const KIND: &'static str = "Hello";
    fn id(&self) -> String {
        format!("hello:{}", self.hello)
    }
    fn version(&self) -> u32 {
        1
    }
}

async fn publish_one(bus: &Bus, id: &str) {
    bus.publish(
        "wa.inbound.gowa",
        id,
        wacenter_bus::HeaderMap::new(),
        r#"{"hello":"world"}"#.into(),
    )
    .await
    .unwrap();
}

fn start<H, Fut>(bus: &Bus, handler: H) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>)
where
    H: Fn(Delivery, Hello) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Disposition> + Send + 'static,
{
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(worker::run(bus.clone(), config(), handler, shutdown));
    (stop, task)
}

/// A handler that panics does not leave its message to be redelivered into the same panic until
/// the stream forgets it: it is dead-lettered at once, as `uncertain` (whatever it was doing
/// may have happened).
#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_panics_is_dead_lettered() {
    let nats = NatsServer::start();
    let bus = bus(&nats, 5).await;
    dead_letter_stream(&bus).await;
    publish_one(&bus, "panics").await;
    let (stop, task) = start(&bus, |_d, _| async { panic!("a bug in the handler") });
    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        Some(dead_letters(&bus).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters[0].reason, DeadLetterReason::Uncertain);
    assert!(
        letters[0].error.contains("a bug in the handler"),
        "{}",
        letters[0].error
    );
    eventually(
        Duration::from_secs(5),
        "the message to leave the stream",
        || async { (inbound_left(&bus).await == 0).then_some(()) },
    )
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// The worker that had a message on its last allowed attempt died (its connection gone, its
/// progress acks stopped): the message comes back and is dead-lettered, not left in the stream
/// where only `max_age` would ever remove it.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_on_the_last_attempt_still_ends_in_a_dead_letter() {
    let nats = NatsServer::start();
    let doomed = bus(&nats, 1).await;
    dead_letter_stream(&doomed).await;
    publish_one(&doomed, "crashes").await;
    let seen = Arc::new(AtomicI64::new(0));
    let seen_by_handler = seen.clone();
    let (_stop_doomed, _task) = start(&doomed, move |_d, _| {
        seen_by_handler.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<Disposition>()
    });
    eventually(Duration::from_secs(10), "the first delivery", || async {
        (seen.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // The process dies mid-call: its connection goes, nothing more is acked from it.
    doomed.drain().await;
    let survivor = bus(&nats, 1).await;
    let (stop, task) = start(&survivor, |_d, _| async {
        Disposition::RetryIn(Duration::from_millis(10))
    });
    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        Some(dead_letters(&survivor).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters[0].reason, DeadLetterReason::RetriesExhausted);
    assert_eq!(inbound_left(&survivor).await, 0);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// The dead letter could not be written on the last attempt (its stream was not there): the
/// message stays and is dead-lettered once writing works again, instead of being stranded.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_that_could_not_be_written_is_written_later() {
    let nats = NatsServer::start();
    let bus = bus(&nats, 1).await;
    publish_one(&bus, "no-dlq-yet").await;
    let calls = Arc::new(AtomicI64::new(0));
    let counted = calls.clone();
    let (stop, task) = start(&bus, move |_d, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Disposition::RetryIn(Duration::from_millis(10)) }
    });
    eventually(Duration::from_secs(20), "the first attempt", || async {
        (calls.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // Long enough for the failed letter write (4 s of publish retries) and its nak.
    tokio::time::sleep(Duration::from_secs(6)).await;
    dead_letter_stream(&bus).await;
    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        Some(dead_letters(&bus).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, DeadLetterReason::RetriesExhausted);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Waiting (pacing, a held-back recipient, another owner still at work) is not a failed
/// attempt: a message that waited more times than it may fail is still handled, and the
/// handler is told which attempt it is on.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_does_not_use_up_attempts() {
    let nats = NatsServer::start();
    let bus = bus(&nats, 2).await;
    dead_letter_stream(&bus).await;
    publish_one(&bus, "waits").await;
    let calls = Arc::new(AtomicI64::new(0));
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (counted, seen) = (calls.clone(), attempts.clone());
    let (stop, task) = start(&bus, move |d: Delivery, _| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        seen.lock().unwrap().push((d.attempt, d.is_last_attempt()));
        async move {
            match n {
                0..=4 => Disposition::Wait(Duration::from_millis(20)),
                5 => Disposition::RetryIn(Duration::from_millis(20)),
                _ => Disposition::Ack,
            }
        }
    });
    eventually(
        Duration::from_secs(20),
        "the message to be acked",
        || async { (inbound_left(&bus).await == 0).then_some(()) },
    )
    .await;
    assert!(
        dead_letters(&bus).await.is_empty(),
        "waiting is not failing"
    );
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (1, false),
            (1, false),
            (1, false),
            (1, false),
            (1, false),
            (1, false),
            (2, true)
        ]
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A consumer declared by an older version with a delivery limit at the server (which strands
/// the message that reaches it) is bound without one.
#[tokio::test(flavor = "multi_thread")]
async fn the_consumer_leaves_the_limit_to_the_worker() {
    let nats = NatsServer::start();
    let bus = bus(&nats, 3).await;
    let stream = bus
        .jetstream()
        .get_stream(names::INBOUND_STREAM)
        .await
        .unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("test-worker".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_deliver: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    let (stop, task) = start(&bus, |_d, _| async { Disposition::Ack });
    let max_deliver = eventually(
        Duration::from_secs(10),
        "the consumer to be updated",
        || async {
            let mut c: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer("test-worker").await.ok()?;
            let info = c.info().await.ok()?;
            (info.config.max_deliver != 20).then_some(info.config.max_deliver)
        },
    )
    .await;
    assert_eq!(max_deliver, -1);
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// A payload that is not the role's job never reaches the handler: the worker dead-letters it
/// as `invalid`, saying what it expected.
#[tokio::test(flavor = "multi_thread")]
async fn a_payload_that_is_not_the_job_is_dead_lettered_invalid() {
    let nats = NatsServer::start();
    let bus = bus(&nats, 5).await;
    dead_letter_stream(&bus).await;
    bus.publish(
        "wa.inbound.gowa",
        "not-hello",
        wacenter_bus::HeaderMap::new(),
        r#"{"nope":1}"#.into(),
    )
    .await
    .unwrap();
    let (stop, task) = start(&bus, |_d, _| async {
        panic!("never handed an invalid payload")
    });
    let letters = eventually(Duration::from_secs(20), "the dead letter", || async {
        Some(dead_letters(&bus).await).filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(letters[0].reason, DeadLetterReason::Invalid);
    assert_eq!(letters[0].id, "not-hello", "named by its Nats-Msg-Id");
    assert!(
        letters[0].error.contains("Hello schema"),
        "{}",
        letters[0].error
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// Replicas add up: every replica of a service binds the same consumer, so what the consumer
/// lets out at once (its max ack pending) must not be one replica's share. Eight replicas of
/// concurrency 1 work on eight messages at the same time.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_sharing_a_consumer_work_side_by_side() {
    const REPLICAS: usize = 8;
    let nats = NatsServer::start();
    let bus = bus(&nats, 5).await;
    for i in 0..2 * REPLICAS {
        publish_one(&bus, &format!("side-by-side-{i}")).await;
    }
    let (now, most) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..REPLICAS {
        let (now, most) = (now.clone(), most.clone());
        let handler = move |_d, _: Hello| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let working = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(working, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Disposition::Ack
            }
        };
        let config = WorkerConfig {
            concurrency: 1,
            ..config()
        };
        tasks.push(tokio::spawn(worker::run(
            bus.clone(),
            config,
            handler,
            shutdown.clone(),
        )));
    }
    eventually(Duration::from_secs(20), "every message handled", || async {
        (inbound_left(&bus).await == 0).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        REPLICAS as i64,
        "messages handled at once by {REPLICAS} replicas of concurrency 1"
    );
}
