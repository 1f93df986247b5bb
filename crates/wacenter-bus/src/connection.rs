//! The NATS connection and the JetStream topology wacenter declares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use tracing::{info, warn};
use wacenter_proto::names;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The NATS connection is down: callers answer 503 so the sender retries.
    #[error("NATS is not connected")]
    Disconnected,
    #[error("NATS publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    #[error("JetStream set-up failed: {0}")]
    Setup(String),
    #[error("NATS key-value operation failed: {0}")]
    Kv(String),
}

/// The shape of the inbound and outbound streams: a work queue (each message to one replica of
/// the consuming role, removed once acked) with a `Nats-Msg-Id` dedupe window.
pub fn work_queue_stream(name: &str, subjects: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![subjects.to_string()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        // Dedupe window for Nats-Msg-Id; longer-lived idempotency lives in KV buckets.
        duplicate_window: Duration::from_secs(10 * 60),
        max_age: Duration::from_secs(14 * 24 * 3600),
        ..Default::default()
    }
}

/// The stream behind an idempotency KV bucket, declared directly (the shape the client library
/// would create): its create-or-update helper asks for account details that nats-server 2.9
/// answers in a form it cannot read.
pub fn kv_bucket_stream(bucket: &str, max_age: Duration, replicas: usize) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(format!("wacenter idempotency records ({bucket})")),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        // Reads go to the stream leader: a direct get may be answered by a follower that has
        // not caught up (no read-your-writes on a cluster), and "is this id ours?" must not
        // miss a record just written.
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        duplicate_window: Duration::from_secs(2 * 60),
        ..Default::default()
    }
}

/// Replicas and limits of the declared topology.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    pub replicas: usize,
    /// How long a consumer waits for an ack before redelivering (must exceed the longest
    /// handler pause between progress acks).
    pub ack_wait: Duration,
    /// Failed attempts a message gets before the worker dead-letters it. Enforced by the
    /// worker, not the consumer: a server-side limit strands the message whose last delivery
    /// crashed (nats-jetstream reference, fact 14).
    pub max_attempts: i64,
    /// How long the message trail keeps each step (`TRAIL_RETENTION_DAYS`); zero: no trail.
    pub trail_retention: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            replicas: 1,
            ack_wait: Duration::from_secs(10),
            max_attempts: 20,
            trail_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What a dedupe publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOutcome {
    pub sequence: u64,
    /// JetStream already had a message with this `Nats-Msg-Id` inside its duplicate window.
    pub duplicate: bool,
}

/// Why one publish failed: worth sending again (no acknowledgement came) or not.
enum PublishFailure {
    Unacknowledged(BusError),
    Final(BusError),
}

/// One NATS connection with JetStream, shared by everything in the process.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    ready: Arc<AtomicBool>,
    trail: crate::trail::Trail,
}

/// `NATS_URL`: one server or a comma-separated list of them (`nats://a:4222,nats://b:4222`),
/// every one checked, so a typo stops the service at start with the offending entry named.
pub fn server_addrs(list: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let addrs = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<async_nats::ServerAddr>().map_err(|e| {
                BusError::Setup(format!(
                    "NATS_URL entry {s:?} is not a NATS server address ({e}); expected nats://host:4222[,nats://host2:4222...]"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(BusError::Setup(
            "NATS_URL is empty; expected nats://host:4222[,nats://host2:4222...]".into(),
        ));
    }
    Ok(addrs)
}

/// How long a publish that got no acknowledgement while connected is retried (same
/// `Nats-Msg-Id`, so JetStream keeps one copy) before the caller is told: about a JetStream
/// leader election on a cluster.
const PUBLISH_RETRY_FOR: Duration = Duration::from_secs(4);

impl Bus {
    /// Connects (retrying in the background if NATS is not up yet, so services can start
    /// before it) and names the connection after the service. `url` is `NATS_URL`: one server
    /// or a comma-separated list.
    pub async fn connect(url: &str, service: &str, topology: Topology) -> Result<Self, BusError> {
        let addrs = server_addrs(url)?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("wacenter-{service}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| async move {
                match event {
                    async_nats::Event::Connected => info!("NATS connected"),
                    async_nats::Event::Disconnected => warn!("NATS disconnected; reconnecting"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            })
            .connect(addrs)
            .await
            .map_err(|e| BusError::Setup(format!("cannot connect to NATS at {url}: {e}")))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(5));
        let trail =
            crate::trail::Trail::start((!topology.trail_retention.is_zero()).then(|| js.clone()));
        Ok(Self {
            client,
            js,
            topology,
            ready: Arc::new(AtomicBool::new(false)),
            trail,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// Where this process records the steps it takes (nothing when the trail is off).
    pub fn trail(&self) -> crate::trail::Trail {
        self.trail.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// `/readyz`: connected and the topology declared.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.is_connected() {
            return Err(format!(
                "NATS is not connected (state: {})",
                self.client.connection_state()
            ));
        }
        if !self.ready.load(Ordering::Relaxed) {
            return Err("JetStream streams are not declared yet".into());
        }
        Ok(())
    }

    /// Declares (creating or updating) every stream and bucket; idempotent, safe to run from
    /// every replica at start. Retries until NATS answers.
    pub async fn ensure_topology(&self) -> Result<(), BusError> {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.try_ensure_topology().await {
                Ok(()) => {
                    self.ready.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?wait, "JetStream set-up failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_ensure_topology(&self) -> Result<(), BusError> {
        let replicas = self.topology.replicas;
        for config in [
            work_queue_stream(names::INBOUND_STREAM, names::INBOUND_SUBJECTS, replicas),
            work_queue_stream(names::OUTBOUND_STREAM, names::OUTBOUND_SUBJECTS, replicas),
            stream::Config {
                name: names::DEADLETTER_STREAM.to_string(),
                subjects: vec![names::DEADLETTER_SUBJECTS.to_string()],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: Duration::from_secs(10 * 60),
                max_age: Duration::from_secs(30 * 24 * 3600),
                ..Default::default()
            },
        ] {
            self.declare_stream(config).await?;
        }
        for (bucket, max_age) in names::BUCKETS {
            self.declare_stream(kv_bucket_stream(bucket, max_age, replicas))
                .await?;
        }
        if !self.topology.trail_retention.is_zero() {
            for config in crate::trail::trail_streams(self.topology.trail_retention, replicas) {
                self.declare_stream(config).await?;
            }
        }
        // An account's next slot is only ever a second or two ahead; a day-old one is noise.
        self.declare_stream(kv_bucket_stream(
            names::PACING_BUCKET,
            Duration::from_secs(24 * 3600),
            replicas,
        ))
        .await?;
        Ok(())
    }

    /// Creates the stream, or updates it only when what wacenter sets differs. Every replica
    /// of every service declares the topology at start; updating an unchanged stream from
    /// several clients at once has crashed nats-server 2.9, and is pointless anyway.
    async fn declare_stream(&self, config: stream::Config) -> Result<(), BusError> {
        let name = config.name.clone();
        let err = |e: String| BusError::Setup(format!("stream {name}: {e}"));
        match self.js.get_stream(&name).await {
            Ok(existing) => {
                let have = &existing.cached_info().config;
                let same = have.subjects == config.subjects
                    && have.retention == config.retention
                    && have.max_age == config.max_age
                    && have.duplicate_window == config.duplicate_window
                    && have.num_replicas == config.num_replicas
                    && have.max_messages_per_subject == config.max_messages_per_subject
                    && have.allow_direct == config.allow_direct;
                if !same {
                    info!(stream = %name, "updating stream configuration");
                    self.js
                        .update_stream(config)
                        .await
                        .map_err(|e| err(e.to_string()))?;
                }
                Ok(())
            }
            Err(_) => match self.js.create_stream(config.clone()).await {
                Ok(_) => Ok(()),
                // Another replica created it between our look-up and our create.
                Err(_) if self.js.get_stream(&name).await.is_ok() => Ok(()),
                Err(e) => Err(err(e.to_string())),
            },
        }
    }

    /// The durable pull consumer `name` on `stream_name` taking the subjects `filters`, created
    /// or updated to the current configuration. Every replica of a service binds the same one
    /// and they share its work.
    pub async fn durable_consumer(
        &self,
        stream_name: &str,
        name: &str,
        filters: &[String],
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, BusError> {
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| BusError::Setup(format!("stream {stream_name}: {e}")))?;
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_string()),
                description: Some(format!("wacenter {name}: shared by all replicas")),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.topology.ack_wait,
                // Unlimited: the worker dead-letters after `max_attempts` (see Topology).
                max_deliver: -1,
                max_ack_pending,
                // One filter is written as `filter_subject`, which every nats-server and tool
                // reads; several need nats-server 2.10.
                filter_subject: match filters {
                    [one] => one.clone(),
                    _ => String::new(),
                },
                filter_subjects: match filters {
                    [_] => Vec::new(),
                    many => many.to_vec(),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| BusError::Setup(format!("consumer {name} on {stream_name}: {e}")))
    }

    /// [`Bus::durable_consumer`], retried every second until it binds; `None` if `shutdown`
    /// turns true first.
    pub async fn bind_consumer(
        &self,
        stream_name: &str,
        name: &str,
        filters: &[String],
        max_ack_pending: i64,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<consumer::PullConsumer> {
        loop {
            match self
                .durable_consumer(stream_name, name, filters, max_ack_pending)
                .await
            {
                Ok(c) => return Some(c),
                Err(e) => {
                    warn!(error = %e, "cannot bind the {name} consumer; retrying");
                    if *shutdown.borrow() {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// A KV bucket declared by [`Bus::ensure_topology`].
    pub async fn bucket(&self, name: &str) -> Result<kv::Store, BusError> {
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| BusError::Setup(format!("bucket {name}: {e}")))
    }

    /// Publishes an inbound WhatsApp message as ingress does: to `wa.inbound.<provider>` in the
    /// lane of `server` (the OtomaX server its account belongs to), with its dedupe id as
    /// `Nats-Msg-Id` (a provider re-sending it is kept once) and its WhatsApp id in
    /// `Wa-Message-Id`.
    pub async fn publish_inbound(
        &self,
        msg: &wacenter_proto::InboundMessage,
        server: &str,
    ) -> Result<PublishOutcome, BusError> {
        let payload = serde_json::to_vec(msg).expect("inbound messages serialize");
        let mut headers = HeaderMap::new();
        headers.insert(names::HEADER_WA_MESSAGE_ID, msg.message_id.as_str());
        self.publish(
            &names::inbound_subject(msg.provider, server),
            msg.dedupe_id().as_str(),
            headers,
            payload.into(),
        )
        .await
    }

    /// Publishes to JetStream with `Nats-Msg-Id` = `msg_id` and waits for the stream's ack.
    /// Fails fast with [`BusError::Disconnected`] while NATS is down (the caller answers 503).
    /// Connected but unacknowledged (no stream leader during an election, an ack timeout), the
    /// same message is sent again for a few seconds: the id makes JetStream keep it once.
    pub async fn publish(
        &self,
        subject: &str,
        msg_id: &str,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishOutcome, BusError> {
        headers.insert(names::HEADER_MSG_ID, msg_id);
        let give_up_at = tokio::time::Instant::now() + PUBLISH_RETRY_FOR;
        loop {
            match self
                .publish_once(subject, headers.clone(), payload.clone())
                .await
            {
                Err(PublishFailure::Unacknowledged(e))
                    if tokio::time::Instant::now() < give_up_at =>
                {
                    tracing::debug!(subject, error = %e, "publish not acknowledged; sending it again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(PublishFailure::Unacknowledged(e) | PublishFailure::Final(e)) => return Err(e),
                Ok(outcome) => return Ok(outcome),
            }
        }
    }

    async fn publish_once(
        &self,
        subject: &str,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishOutcome, PublishFailure> {
        use async_nats::jetstream::context::PublishErrorKind as Kind;
        if !self.is_connected() {
            return Err(PublishFailure::Final(BusError::Disconnected));
        }
        if headers.get(names::HEADER_TRACEPARENT).is_none() {
            if let Some(tp) = wacenter_trace::current_traceparent() {
                headers.insert(names::HEADER_TRACEPARENT, tp.as_str());
            }
        }
        let err = |e: async_nats::jetstream::context::PublishError| {
            let retry = matches!(
                e.kind(),
                Kind::StreamNotFound | Kind::TimedOut | Kind::BrokenPipe | Kind::Other
            );
            let e = if self.is_connected() {
                BusError::Publish {
                    subject: subject.to_string(),
                    reason: e.to_string(),
                }
            } else {
                BusError::Disconnected
            };
            match e {
                BusError::Disconnected => PublishFailure::Final(e),
                e if retry => PublishFailure::Unacknowledged(e),
                e => PublishFailure::Final(e),
            }
        };
        let ack = self
            .js
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(err)?
            .await
            .map_err(err)?;
        Ok(PublishOutcome {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Number of messages the durable consumer has not yet had acknowledged (pending +
    /// in flight), for health and autoscaling.
    pub async fn consumer_lag(&self, stream_name: &str, name: &str) -> Result<u64, BusError> {
        let mut consumer: consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(name, stream_name)
            .await
            .map_err(|e| BusError::Setup(format!("consumer {name}: {e}")))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| BusError::Setup(format!("consumer {name}: {e}")))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }

    /// Messages in a stream (e.g. the dead-letter count).
    pub async fn stream_messages(&self, stream_name: &str) -> Result<u64, BusError> {
        let mut stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| BusError::Setup(format!("stream {stream_name}: {e}")))?;
        let info = stream
            .info()
            .await
            .map_err(|e| BusError::Setup(format!("stream {stream_name}: {e}")))?;
        Ok(info.state.messages)
    }

    /// Flushes what is buffered and closes the connection, giving up after 5 s: with NATS down
    /// a drain would wait for a reconnect forever and the process would never exit.
    pub async fn drain(&self) {
        let close = async {
            // The steps of the last messages first.
            self.trail.flush(Duration::from_secs(2)).await;
            let _ = self.client.flush().await;
            let _ = self.client.drain().await;
        };
        if tokio::time::timeout(Duration::from_secs(5), close)
            .await
            .is_err()
        {
            warn!("NATS unreachable at shutdown; closing without flushing");
        }
    }
}
