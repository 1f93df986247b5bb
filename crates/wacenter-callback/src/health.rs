//! `GET /otomax/health`: the truth about the integration. OtomaX reachability (a Test call,
//! cached a few seconds so probes do not hammer OtomaX), the NATS connection, consumer lag,
//! dead letters, and the last successful / failed OtomaX call. 200 when healthy, 503 with the
//! reasons when not.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use wacenter_proto::names;

use crate::envelope::{success, ApiError};
use crate::Callback;

/// How long an OtomaX probe result is reused.
pub const PROBE_CACHE: Duration = Duration::from_secs(5);

/// When the probe ran (monotonic and wall clock) and what it found.
type Probe = (Instant, DateTime<Utc>, Result<Duration, String>);

#[derive(Default)]
pub struct ProbeCache {
    last: Mutex<Option<Probe>>,
}

pub async fn health(State(app): State<Callback>) -> Response {
    let me = &app.inner;
    let mut problems = Vec::new();
    let otomax = match &me.otomax {
        None => json!({"enabled": false}),
        Some(client) => {
            let (checked_at, result) = {
                let mut last = me.probe.last.lock().await;
                match &*last {
                    Some((at, when, r)) if at.elapsed() < PROBE_CACHE => (*when, r.clone()),
                    _ => {
                        let r = crate::rest::probe(client).await;
                        *last = Some((Instant::now(), Utc::now(), r.clone()));
                        (Utc::now(), r)
                    }
                }
            };
            let history = client.history();
            if let Err(e) = &result {
                problems.push(format!("OtomaX unreachable: {e}"));
            }
            json!({
                "enabled": true,
                "reachable": result.is_ok(),
                "latency_ms": result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
                "error": result.as_ref().err(),
                "checked_at": checked_at,
                "last_success_at": history.last_success_at,
                "last_error_at": history.last_error_at,
                "last_error": history.last_error,
            })
        }
    };
    let connected = me.bus.is_connected();
    if !connected {
        problems.push("NATS is not connected".into());
    }
    let (lag, dead_letters) = if connected {
        let forwarder = me
            .bus
            .consumer_lag(names::INBOUND_STREAM, names::FORWARDER_CONSUMER)
            .await
            .ok();
        let reply = me
            .bus
            .consumer_lag(names::OUTBOUND_STREAM, names::REPLY_CONSUMER)
            .await
            .ok();
        let dlq = me.bus.stream_messages(names::DEADLETTER_STREAM).await.ok();
        (json!({"forwarder": forwarder, "reply": reply}), json!(dlq))
    } else {
        (Value::Null, Value::Null)
    };
    let results = json!({
        "status": if problems.is_empty() { "healthy" } else { "unhealthy" },
        "otomax": otomax,
        "nats": {"connected": connected},
        "consumer_lag": lag,
        "dead_letters": dead_letters,
    });
    if problems.is_empty() {
        success("healthy", results)
    } else {
        ApiError::unavailable(format!("unhealthy: {}", problems.join("; ")))
            .with_results(results)
            .into_response()
    }
}
