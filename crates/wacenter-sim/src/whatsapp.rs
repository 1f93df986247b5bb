//! `wacenter sim whatsapp`: a GOWA-compatible gateway.
//!
//! * `POST /send/message` (`{"phone","message","reply_message_id"?}`, Basic auth when configured,
//!   `X-Device-Id`) records each message with its arrival time and answers like GOWA;
//! * `POST /_sim/incoming` (`{from, text, group?, from_me?, id?, timestamp?}`) emits a signed GOWA
//!   v8 webhook to the configured webhook URL, as a phone sending to our number would;
//! * optional echo: every sent message comes back as a `from_me` webhook, like a real gateway
//!   reports messages sent from the linked number;
//! * fault knobs: latency, answering 429 / 5xx for a while or at a rate, and losing the answer
//!   of a send that went out (`lose_answers`: recorded and echoed, then 504).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64_free::decode_basic;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::inspect::{page, Received, Since};

#[derive(Debug, Clone, Default)]
pub struct WhatsappSimConfig {
    /// Where `/_sim/incoming` posts its webhooks (ingress's `/webhook/gowa`).
    pub webhook_url: Option<String>,
    /// GOWA's `WHATSAPP_WEBHOOK_SECRET`: the webhook HMAC key.
    pub webhook_secret: String,
    /// Our number's device JID, sent as `device_id`.
    pub device_id: String,
    /// More numbers linked to the same gateway (GOWA v8+ multi-device). With more than one,
    /// `/send/message` must name its device in `X-Device-Id`, as GOWA requires.
    pub other_devices: Vec<String>,
    /// `user:pass` required on `/send/message` when set.
    pub basic_auth: Option<(String, String)>,
    /// Echo every sent message back as a `from_me` webhook.
    pub echo_sent: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    latency_ms: u64,
    /// While set, `/send/message` answers this status.
    fail_status: u16,
    fail_until: Option<Instant>,
    fail_rate: f64,
    /// Each send is recorded (and echoed) as usual, then answered 504 `GATEWAY_TIMEOUT`, as
    /// GOWA does when WhatsApp's acknowledgement did not come in time: the sender never learns
    /// the message id of a message that did go out.
    lose_answers: bool,
    /// Every device reports itself logged out (its phone unlinked it).
    logged_out: bool,
}

#[derive(Default)]
struct Inner {
    outbox: Vec<Received>,
    webhooks_sent: u64,
    webhook_failures: u64,
    next_id: u64,
}

struct Shared {
    config: WhatsappSimConfig,
    http: reqwest::Client,
    faults: Mutex<Faults>,
    inner: Mutex<Inner>,
}

#[derive(Clone)]
pub struct WhatsappSim {
    shared: Arc<Shared>,
}

impl WhatsappSim {
    pub fn new(config: WhatsappSimConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                http: wacenter_otomax::client::shared_http_client(),
                faults: Mutex::new(Faults::default()),
                inner: Mutex::new(Inner::default()),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/send/message", post(send_message))
            .route("/app/status", get(app_status))
            .route("/_sim/incoming", post(incoming))
            .route("/_sim/outbox", get(outbox))
            .route("/_sim/stats", get(stats))
            .route("/_sim/reset", post(reset))
            .route("/_sim/faults", post(set_faults))
            .layer(DefaultBodyLimit::max(1 << 20))
            .with_state(self.clone())
    }

    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        crate::inspect::serve(self.router(), listener, shutdown).await
    }

    /// Binds 127.0.0.1:`port` (0 = any) and serves in the background; returns the address.
    pub async fn spawn(self, port: u16) -> std::io::Result<SocketAddr> {
        crate::inspect::spawn(self.router(), port).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("simulator state lock")
    }

    /// Builds, signs and posts a GOWA v8 message webhook; returns the receiver's status and body.
    pub async fn emit(&self, incoming: &Incoming) -> Result<(u16, Value), String> {
        let url = self
            .shared
            .config
            .webhook_url
            .clone()
            .ok_or("no --webhook-url configured")?;
        let id = incoming.id.clone().unwrap_or_else(|| self.new_message_id());
        let from = incoming
            .from
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>();
        if from.is_empty() {
            return Err("from must be a phone number".into());
        }
        let device = incoming
            .device
            .as_deref()
            .unwrap_or(&self.shared.config.device_id);
        let body = gowa_message(device, &id, &from, incoming);
        let raw = serde_json::to_vec(&body).expect("json");
        let signature =
            wacenter_whatsapp::sign_hub(self.shared.config.webhook_secret.as_bytes(), &raw);
        let response = self
            .shared
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(wacenter_whatsapp::HUB_SIGNATURE_HEADER, signature)
            .body(raw)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match response {
            Ok(r) => {
                self.lock().webhooks_sent += 1;
                let status = r.status().as_u16();
                let body = r.json::<Value>().await.unwrap_or(Value::Null);
                Ok((
                    status,
                    json!({"id": id, "webhook_status": status, "webhook_response": body}),
                ))
            }
            Err(e) => {
                self.lock().webhook_failures += 1;
                Err(format!("webhook to {url} failed: {}", e.without_url()))
            }
        }
    }

    fn new_message_id(&self) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        format!(
            "3EB0{:016X}",
            (inner.next_id << 20) ^ rand::random::<u32>() as u64
        )
    }
}

/// The GOWA v8 `message` webhook body for `incoming` (sent by `from`, digits) to `device`,
/// with the provider message id `id`: what the simulator posts, and what tests post themselves.
pub fn gowa_message(device: &str, id: &str, from: &str, incoming: &Incoming) -> Value {
    let from_jid = format!("{from}@s.whatsapp.net");
    let chat = match &incoming.group {
        Some(g) if g.contains('@') => g.clone(),
        Some(g) => format!("{g}@g.us"),
        None => from_jid.clone(),
    };
    let timestamp = incoming.timestamp.unwrap_or_else(Utc::now);
    json!({
        "event": "message",
        "device_id": device,
        "payload": {
            "id": id,
            "chat_id": chat,
            "from": if incoming.from_me { device.to_string() } else { from_jid },
            "from_name": incoming.from_name.clone().unwrap_or_else(|| "Simulated User".into()),
            "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "is_from_me": incoming.from_me,
            "body": incoming.text,
        }
    })
}

/// `POST /_sim/incoming`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Incoming {
    pub from: String,
    pub text: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub from_me: bool,
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    /// Our number that receives it (the webhook's `device_id`); the simulator's own by default.
    #[serde(default)]
    pub device: Option<String>,
}

fn gowa_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into(), "results": null})),
    )
        .into_response()
}

/// `GET /app/status`: the device named in `X-Device-Id` (or the only one), connected and logged
/// in unless the `logged_out` fault is set.
async fn app_status(State(sim): State<WhatsappSim>, headers: HeaderMap) -> Response {
    let config = &sim.shared.config;
    let named = headers
        .get("x-device-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let device = if named.is_empty() {
        config.device_id.as_str()
    } else if named == config.device_id || config.other_devices.iter().any(|d| d == named) {
        named
    } else {
        return gowa_error(
            StatusCode::NOT_FOUND,
            "DEVICE_NOT_FOUND",
            format!("no linked device {named:?}"),
        );
    };
    let logged_in = !sim.shared.faults.lock().expect("faults lock").logged_out;
    Json(json!({
        "status": 200, "code": "SUCCESS", "message": "Connection status retrieved",
        "results": {"is_connected": logged_in, "is_logged_in": logged_in, "device_id": device,
                    "jid": if logged_in { device } else { "" }},
    }))
    .into_response()
}

async fn send_message(State(sim): State<WhatsappSim>, headers: HeaderMap, body: Bytes) -> Response {
    let faults = *sim.shared.faults.lock().expect("faults lock");
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Some((user, pass)) = &sim.shared.config.basic_auth {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(decode_basic);
        if presented.as_ref() != Some(&(user.clone(), pass.clone())) {
            return gowa_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid basic auth",
            );
        }
    }
    let failing = faults.fail_until.is_some_and(|t| Instant::now() < t)
        || (faults.fail_rate > 0.0 && rand::random::<f64>() < faults.fail_rate);
    if failing && faults.fail_status != 0 {
        let status =
            StatusCode::from_u16(faults.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = gowa_error(
            status,
            "SIMULATED_FAILURE",
            format!("simulated HTTP {}", status.as_u16()),
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        return r;
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return gowa_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "body must be a JSON object {phone, message}",
            )
        }
    };
    let phone = parsed
        .get("phone")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let message = parsed
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let user = phone.split('@').next().unwrap_or_default();
    if user.is_empty() || !user.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return gowa_error(
            StatusCode::BAD_REQUEST,
            "INVALID_JID",
            format!("invalid phone {phone:?}"),
        );
    }
    if message.is_empty() {
        return gowa_error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "message: cannot be blank.",
        );
    }
    let config = &sim.shared.config;
    if !config.other_devices.is_empty() {
        let named = headers
            .get("x-device-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if named.is_empty() {
            return gowa_error(
                StatusCode::BAD_REQUEST,
                "DEVICE_ID_REQUIRED",
                "several devices are linked: name one in the X-Device-Id header",
            );
        }
        if named != config.device_id && !config.other_devices.iter().any(|d| d == named) {
            return gowa_error(
                StatusCode::NOT_FOUND,
                "DEVICE_NOT_FOUND",
                format!("no linked device {named:?}"),
            );
        }
    }
    let id = sim.new_message_id();
    let device_id = headers
        .get("x-device-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut extra = serde_json::Map::new();
    extra.insert("device_id".into(), json!(device_id.clone()));
    extra.insert("message_id".into(), json!(id));
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        extra.insert("traceparent".into(), json!(tp));
    }
    sim.lock().outbox.push(Received {
        received_at: Utc::now(),
        body: parsed.clone(),
        extra,
    });
    if sim.shared.config.echo_sent {
        let echo = Incoming {
            from: user.to_string(),
            text: message.to_string(),
            group: None,
            from_me: true,
            from_name: None,
            id: Some(id.clone()),
            timestamp: None,
            // Echoed by the device it was sent through.
            device: Some(device_id.clone()).filter(|d| !d.is_empty()),
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            let _ = sim.emit(&echo).await;
        });
    }
    if faults.lose_answers {
        return gowa_error(
            StatusCode::GATEWAY_TIMEOUT,
            "GATEWAY_TIMEOUT",
            "Request timed out waiting for WhatsApp server response",
        );
    }
    Json(json!({"code": "SUCCESS", "message": "Success", "results": {"message_id": id, "status": format!("Message sent to {phone}")}})).into_response()
}

async fn incoming(State(sim): State<WhatsappSim>, body: Bytes) -> Response {
    let incoming: Incoming = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return gowa_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("expected {{from, text, group?, from_me?, id?, timestamp?}}: {e}"),
            )
        }
    };
    match sim.emit(&incoming).await {
        Ok((_, v)) => Json(v).into_response(),
        Err(e) => gowa_error(StatusCode::BAD_GATEWAY, "WEBHOOK_FAILED", e),
    }
}

async fn outbox(State(sim): State<WhatsappSim>, Query(q): Query<Since>) -> Json<Vec<Received>> {
    Json(page(&sim.lock().outbox, q.since))
}

async fn stats(State(sim): State<WhatsappSim>) -> Json<Value> {
    let inner = sim.lock();
    Json(
        json!({"received": inner.outbox.len(), "webhooks_sent": inner.webhooks_sent, "webhook_failures": inner.webhook_failures}),
    )
}

async fn reset(State(sim): State<WhatsappSim>) -> Json<Value> {
    let mut inner = sim.lock();
    inner.outbox.clear();
    inner.webhooks_sent = 0;
    inner.webhook_failures = 0;
    Json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct FaultsRequest {
    latency_ms: Option<u64>,
    /// HTTP status to answer while failing (429, 500, 503, …; 0 = healthy).
    fail_status: Option<u16>,
    fail_for_seconds: Option<f64>,
    fail_rate: Option<f64>,
    lose_answers: Option<bool>,
    logged_out: Option<bool>,
}

async fn set_faults(State(sim): State<WhatsappSim>, body: Bytes) -> Response {
    let req: FaultsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return gowa_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!(
                    "expected {{latency_ms?, fail_status?, fail_for_seconds?, fail_rate?, lose_answers?, logged_out?}}: {e}"
                ),
            )
        }
    };
    if req
        .fail_status
        .is_some_and(|s| s != 0 && !(400..=599).contains(&s))
    {
        return gowa_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "fail_status must be 0 or an HTTP error status (400-599)",
        );
    }
    if req.fail_rate.is_some_and(|r| !(0.0..=1.0).contains(&r))
        || req
            .fail_for_seconds
            .is_some_and(|d| !(0.0..=86_400.0).contains(&d))
    {
        return gowa_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "fail_rate must be 0..1 and fail_for_seconds 0..86400",
        );
    }
    let mut f = sim.shared.faults.lock().expect("faults lock");
    if let Some(l) = req.latency_ms {
        f.latency_ms = l.min(600_000);
    }
    if let Some(s) = req.fail_status {
        f.fail_status = s;
    }
    if let Some(d) = req.fail_for_seconds {
        f.fail_until = (d > 0.0).then(|| Instant::now() + Duration::from_secs_f64(d));
    }
    if let Some(r) = req.fail_rate {
        f.fail_rate = r;
    }
    if let Some(logged_out) = req.logged_out {
        f.logged_out = logged_out;
    }
    if let Some(lose) = req.lose_answers {
        f.lose_answers = lose;
    }
    Json(json!({"latency_ms": f.latency_ms, "fail_status": f.fail_status, "fail_rate": f.fail_rate, "lose_answers": f.lose_answers, "logged_out": f.logged_out}))
    .into_response()
}

mod base64_free {
    /// `Basic dXNlcjpwYXNz` → ("user", "pass").
    pub fn decode_basic(value: &str) -> Option<(String, String)> {
        let b64 = value.strip_prefix("Basic ")?;
        let raw = decode(b64.trim())?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    fn decode(s: &str) -> Option<Vec<u8>> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut buf = 0u32;
        let mut bits = 0;
        for c in s.bytes().filter(|&c| c != b'=') {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            buf = (buf << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
            }
        }
        Some(out)
    }
}
