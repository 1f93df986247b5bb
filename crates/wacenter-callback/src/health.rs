//! `GET /otomax/health`: the truth about the integration. OtomaX reachability (a Test call,
//! cached a few seconds so probes do not hammer OtomaX), the NATS connection, consumer lag,
//! dead letters, and the last successful / failed OtomaX call. 200 when healthy, 503 with the
//! reasons when not.
//!
//! Also the OpenAPI descriptions of the ops endpoints (`/healthz`, `/readyz`, `/metrics`), which
//! `wacenter-service` serves for every service.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use utoipa::ToSchema;
use wacenter_otomax::{OtomaxClient, OtomaxError};
use wacenter_proto::names;

use crate::envelope::ApiError;
use crate::{Callback, RestOtomax};

/// How long an OtomaX probe result is reused.
pub const PROBE_CACHE: Duration = Duration::from_secs(5);
/// Longest a probe may take before OtomaX counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest each JetStream look-up (lag, dead letters) may take; the health answer must come
/// quickly even when NATS is connected but JetStream is struggling.
const NATS_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// When the probe ran (monotonic and wall clock) and what it found.
type Probe = (Instant, DateTime<Utc>, Result<Duration, String>);

#[derive(Default)]
pub struct ProbeCache {
    last: Mutex<Option<Probe>>,
}

/// `code` of the health answer: `SUCCESS` with 200, `UNAVAILABLE` with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCode {
    Success,
    Unavailable,
}

/// The envelope of `/otomax/health`: the same report with 200 and 503.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthEnvelope {
    pub code: HealthCode,
    /// `healthy`, or `unhealthy: ` and the problems.
    #[schema(example = "unhealthy: NATS is not connected")]
    pub message: String,
    pub results: HealthReport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// What is wrong, one line each; empty when healthy.
    pub problems: Vec<String>,
    /// The OtomaX server the REST API talks to by default (`default`, else the routing
    /// table's first).
    pub otomax: OtomaxHealth,
    /// Every OtomaX server of the routing table, by name (the one above included).
    pub servers: BTreeMap<String, OtomaxHealth>,
    pub nats: NatsHealth,
    pub consumer_lag: ConsumerLag,
    /// Messages in the dead-letter stream (`wacenter dlq list`); null when it could not be read.
    pub dead_letters: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OtomaxHealth {
    /// `OTOMAX_ENABLED`. When false the other fields are null and OtomaX does not count.
    pub enabled: bool,
    /// Whether the last Test call got OtomaX's envelope back.
    pub reachable: Option<bool>,
    /// How long that Test call took.
    pub latency_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When that Test call was made.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub checked_at: Option<DateTime<Utc>>,
    /// True when this answer reused a Test call made less than 5 seconds ago.
    pub cached: bool,
    /// Last OtomaX call of this service that got an answer (any call, not only probes).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success_at: Option<DateTime<Utc>>,
    /// Last OtomaX call of this service that failed in transport or protocol.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NatsHealth {
    pub connected: bool,
    /// Connected and the JetStream streams declared (what `/readyz` reports).
    pub ready: bool,
    pub error: Option<String>,
}

/// Messages not yet acknowledged by the durable consumers of each role, over every server's lane;
/// null when unknown (NATS down, or no consumer created yet because its service never started).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ConsumerLag {
    pub forwarder: Option<u64>,
    pub reply: Option<u64>,
    /// The same per OtomaX server (each has its own consumers: `forwarder`/`reply` for
    /// `default`, `forwarder-<name>`/`reply-<name>` for the others).
    pub servers: BTreeMap<String, LaneLag>,
}

/// Messages not yet acknowledged in one server's lane.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct LaneLag {
    pub forwarder: Option<u64>,
    pub reply: Option<u64>,
}

impl ConsumerLag {
    fn of(servers: BTreeMap<String, LaneLag>) -> Self {
        // A total over the lanes that answered; unknown when none did.
        let total = |role: fn(&LaneLag) -> Option<u64>| {
            servers
                .values()
                .filter_map(role)
                .fold(None, |sum: Option<u64>, lag| Some(sum.unwrap_or(0) + lag))
        };
        Self {
            forwarder: total(|l| l.forwarder),
            reply: total(|l| l.reply),
            servers,
        }
    }
}

#[utoipa::path(
    get,
    path = "/otomax/health",
    tag = "health",
    operation_id = "health",
    summary = "Health of the OtomaX integration",
    description = "OtomaX reachability (a Test call, cached for 5 seconds), NATS, consumer lag, \
        dead letters, and the last successful / failed OtomaX call. No authentication. \
        200 when healthy; 503 with the same report and the problems in `message` when not.",
    responses(
        (status = 200, description = "Healthy", body = HealthEnvelope),
        (status = 503, description = "Unhealthy: OtomaX unreachable or NATS down", body = HealthEnvelope),
    )
)]
pub async fn health(State(app): State<Callback>) -> Response {
    let app = &app;
    let probes = app.inner.rest.iter().map(|server| async move {
        let health = otomax_health(app, server).await;
        (server.server.name.to_string(), health)
    });
    let (servers, (nats, consumer_lag, dead_letters)) =
        tokio::join!(futures::future::join_all(probes), nats_health(app));
    let servers: BTreeMap<String, OtomaxHealth> = servers.into_iter().collect();
    let mut problems = Vec::new();
    for (name, health) in &servers {
        if health.reachable == Some(false) {
            let which = if servers.len() == 1 {
                String::new()
            } else {
                format!(" {name}")
            };
            problems.push(format!(
                "OtomaX{which} unreachable: {}",
                health.error.as_deref().unwrap_or("no answer")
            ));
        }
    }
    let otomax = app
        .inner
        .rest
        .iter()
        .find(|r| r.server.name.as_str() == wacenter_config::DEFAULT_SERVER)
        .or_else(|| app.inner.rest.first())
        .and_then(|r| servers.get(r.server.name.as_str()).cloned())
        .unwrap_or_else(OtomaxHealth::disabled);
    if let Some(e) = &nats.error {
        problems.push(e.clone());
    }
    let healthy = problems.is_empty();
    let message = if healthy {
        "healthy".to_string()
    } else {
        format!("unhealthy: {}", problems.join("; "))
    };
    let report = HealthReport {
        status: if healthy {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        },
        problems,
        otomax,
        servers,
        nats,
        consumer_lag,
        dead_letters,
    };
    let (status, code) = if healthy {
        (axum::http::StatusCode::OK, HealthCode::Success)
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            HealthCode::Unavailable,
        )
    };
    (
        status,
        Json(HealthEnvelope {
            code,
            message,
            results: report,
        }),
    )
        .into_response()
}

impl OtomaxHealth {
    /// OtomaX is off (`OTOMAX_ENABLED=false`): nothing to report, and it does not count.
    fn disabled() -> Self {
        Self {
            enabled: false,
            reachable: None,
            latency_ms: None,
            error: None,
            checked_at: None,
            cached: false,
            last_success_at: None,
            last_error_at: None,
            last_error: None,
        }
    }
}

async fn otomax_health(app: &Callback, server: &RestOtomax) -> OtomaxHealth {
    let client = &server.client;
    // The lock is held while probing, so simultaneous health checks share one Test call.
    let (checked_at, result, cached) = {
        let mut last = server.probe.last.lock().await;
        match &*last {
            Some((at, when, r)) if at.elapsed() < PROBE_CACHE => (*when, r.clone(), true),
            _ => {
                let when = Utc::now();
                let r = probe(client).await;
                *last = Some((Instant::now(), when, r.clone()));
                (when, r, false)
            }
        }
    };
    let history = client.history();
    OtomaxHealth {
        enabled: true,
        reachable: Some(result.is_ok()),
        latency_ms: result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
        error: result.err(),
        checked_at: Some(checked_at),
        cached,
        last_success_at: history.last_success_at,
        last_error_at: history.last_error_at,
        last_error: history.last_error.map(|e| app.scrub(&e)),
    }
}

/// A Test call, one attempt, bounded so probes never hang. OtomaX refusing the call
/// (`ok:false` that is not about credentials) still proves it is there and answering.
async fn probe(client: &OtomaxClient) -> Result<Duration, String> {
    let started = Instant::now();
    let signed = client
        .sign("Test", br#"{"phone":"health"}"#.to_vec())
        .map_err(|e| ApiError::from(e).message)?;
    match client.send_once(&signed, PROBE_TIMEOUT).await {
        Ok(_) | Err(OtomaxError::Rejected { .. }) => Ok(started.elapsed()),
        Err(e) => Err(ApiError::from(e).message),
    }
}

async fn nats_health(app: &Callback) -> (NatsHealth, ConsumerLag, Option<u64>) {
    let bus = &app.inner.bus;
    let connected = bus.is_connected();
    let readiness = bus.readiness();
    let nats = NatsHealth {
        connected,
        ready: readiness.is_ok(),
        error: readiness.err(),
    };
    if !connected {
        return (nats, ConsumerLag::default(), None);
    }
    let lanes = app.inner.config.lanes.names().map(|lane| async move {
        let forwarder = names::forwarder_lane(lane).0;
        let reply = names::reply_lane(lane).0;
        let (forwarder, reply) = tokio::join!(
            bounded(bus.consumer_lag(names::INBOUND_STREAM, &forwarder)),
            bounded(bus.consumer_lag(names::OUTBOUND_STREAM, &reply)),
        );
        (lane.to_string(), LaneLag { forwarder, reply })
    });
    let (lanes, dead_letters) = tokio::join!(
        futures::future::join_all(lanes),
        bounded(bus.stream_messages(names::DEADLETTER_STREAM)),
    );
    (
        nats,
        ConsumerLag::of(lanes.into_iter().collect()),
        dead_letters,
    )
}

async fn bounded<T, E>(query: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(NATS_QUERY_TIMEOUT, query)
        .await
        .ok()?
        .ok()
}

/// What `/healthz` and `/readyz` answer (served by `wacenter-service` for every service).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OpsStatus {
    #[schema(example = "callback")]
    pub service: String,
    /// `ok` (`/healthz`), `ready` or `not ready` (`/readyz`).
    #[schema(example = "ready")]
    pub status: String,
    /// Why the service is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// Documentation only: the handler lives in `wacenter_service::ops_router`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "Alive", body = OpsStatus))
)]
pub fn healthz_doc() {}

/// Documentation only: the handler lives in `wacenter_service::ops_router`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "readyz",
    summary = "Readiness: NATS connected and the JetStream streams declared",
    responses(
        (status = 200, description = "Ready", body = OpsStatus),
        (status = 503, description = "Not ready; `reason` says why", body = OpsStatus),
    )
)]
pub fn readyz_doc() {}

/// Documentation only: the handler lives in `wacenter_service::ops_router`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
pub fn metrics_doc() {}
