//! Ingress: `POST /webhook/gowa` (GOWA v8+ events and the v6/v7 flat form) and
//! `GET`/`POST /webhook/meta` (Meta Cloud API handshake and messages). Signatures are checked on
//! the raw bytes in constant time before anything is parsed; each chat message is normalized and
//! published to JetStream with `Nats-Msg-Id` = provider + account + message id, and only after
//! the publish ack does the provider get its 200 (503 while NATS is unreachable, so it retries).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{info, warn};
use wacenter_bus::{Bus, BusError};
pub use wacenter_config::IngressConfig;
use wacenter_config::{Lanes, MetaWebhook, Secret};
use wacenter_proto::{names, InboundMessage, Provider, TrailEvent, TrailKeyKind, TrailStep};
use wacenter_service::Shutdown;
use wacenter_whatsapp::{
    parse_webhook, verify_challenge, verify_hub_signature, Parsed, HUB_SIGNATURE_HEADER,
};

/// Webhook bodies above this are refused with 413 (a chat message is a few KiB).
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub struct Ingress {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    /// `None`: GOWA webhooks are disabled.
    gowa_secret: Option<Secret>,
    /// `None`: Meta webhooks are disabled.
    meta: Option<MetaWebhook>,
    country_code: String,
    /// Which server's lane each account's messages are published in.
    lanes: Lanes,
}

impl Ingress {
    pub fn new(config: &IngressConfig, bus: Bus) -> Self {
        Self {
            inner: Arc::new(Inner {
                bus,
                gowa_secret: config.gowa_webhook_secret.clone(),
                meta: config.meta_webhook.clone(),
                country_code: config.country_code.clone(),
                lanes: config.lanes.clone(),
            }),
        }
    }

    /// The webhook routes plus the ops endpoints, ready to serve.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/webhook/gowa", post(gowa))
            .route("/webhook/meta", post(meta).get(meta_handshake))
            .route("/webhook/{provider}", any(unknown_provider))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
            .merge(wacenter_service::ops_router(
                "ingress",
                wacenter_service::bus_readiness(&self.inner.bus),
            ))
            .fallback(|| async {
                error(
                    StatusCode::NOT_FOUND,
                    "no such route; webhooks go to /webhook/gowa or /webhook/meta",
                )
            })
    }
}

/// Runs ingress on `listener` until `shutdown`.
pub async fn run(
    config: IngressConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if config.gowa_webhook_secret.is_none() {
        info!("GOWA webhooks disabled (WA_WEBHOOK_SECRET is not set)");
    }
    if config.meta_webhook.is_none() {
        info!("Meta webhooks disabled (META_APP_SECRET is not set)");
    }
    let nats = config.nats.clone();
    wacenter_service::serve_http("ingress", &nats, listener, shutdown, |bus| {
        Ok(Ingress::new(&config, bus).router())
    })
    .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "error": message.into()})),
    )
        .into_response()
}

fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<Response>> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body larger than {BODY_LIMIT} bytes")
        } else {
            rejection.body_text()
        };
        Box::new(error(status, message))
    })
}

async fn gowa(
    State(ingress): State<Ingress>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let secret = ingress.inner.gowa_secret.clone();
    ingress
        .webhook(
            Provider::Gowa,
            secret.as_ref(),
            "WA_WEBHOOK_SECRET",
            &headers,
            body,
        )
        .await
}

async fn meta(
    State(ingress): State<Ingress>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let secret = ingress.inner.meta.as_ref().map(|m| m.app_secret.clone());
    ingress
        .webhook(
            Provider::Meta,
            secret.as_ref(),
            "META_APP_SECRET",
            &headers,
            body,
        )
        .await
}

/// Meta's subscription handshake: echo `hub.challenge` when `hub.verify_token` matches.
async fn meta_handshake(
    State(ingress): State<Ingress>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(meta) = &ingress.inner.meta else {
        return error(
            StatusCode::NOT_FOUND,
            "Meta webhooks are disabled: set META_APP_SECRET and META_VERIFY_TOKEN",
        );
    };
    match verify_challenge(&query, meta.verify_token.expose()) {
        Some(challenge) => (StatusCode::OK, challenge).into_response(),
        None => error(StatusCode::FORBIDDEN, "verification failed: hub.mode must be subscribe and hub.verify_token must match META_VERIFY_TOKEN"),
    }
}

async fn unknown_provider(Path(provider): Path<String>) -> Response {
    let shown: String = provider.chars().take(40).collect();
    error(
        StatusCode::NOT_FOUND,
        format!("unknown provider {shown:?}; wacenter accepts /webhook/gowa and /webhook/meta"),
    )
}

/// A finished webhook: a label for metrics and the answer.
type Answer = (&'static str, Response);

/// What ingress makes of a webhook body: its chat messages (none for a receipt or status), each
/// with the lane it is published in, or why it cannot be read. `dlq replay` uses it to parse an
/// `unreadable` letter again.
pub fn messages_of(
    provider: Provider,
    body: &[u8],
    country_code: &str,
    lanes: &Lanes,
) -> Result<Vec<(InboundMessage, String)>, String> {
    match parse_webhook(provider, body, Utc::now(), country_code) {
        Ok(Parsed::Messages(messages)) => Ok(messages
            .into_iter()
            .map(|m| {
                let lane = lanes.of(m.provider.into(), &m.account).to_string();
                (m, lane)
            })
            .collect()),
        Ok(Parsed::Ignored(_)) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn refuse(label: &'static str, status: StatusCode, message: impl Into<String>) -> Box<Answer> {
    Box::new((label, error(status, message)))
}

impl Ingress {
    async fn webhook(
        &self,
        provider: Provider,
        secret: Option<&Secret>,
        setting: &str,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Response {
        let started = Instant::now();
        // A provider that traces (or a test) may send a traceparent: continue its trace.
        let span = tracing::info_span!("webhook", %provider);
        let incoming = headers
            .get(wacenter_trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let inner = self.webhook_inner(provider, secret, setting, headers, body);
        let (label, response) = match wacenter_trace::in_trace(span, incoming, inner).await {
            Ok(done) => done,
            Err(refused) => *refused,
        };
        metrics::counter!("wacenter_ingress_webhooks_total", "provider" => provider.as_str(), "outcome" => label)
            .increment(1);
        metrics::histogram!("wacenter_ingress_ack_seconds", "provider" => provider.as_str())
            .record(started.elapsed().as_secs_f64());
        response
    }

    async fn webhook_inner(
        &self,
        provider: Provider,
        secret: Option<&Secret>,
        setting: &str,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Answer, Box<Answer>> {
        let Some(secret) = secret else {
            return Err(refuse(
                "disabled",
                StatusCode::NOT_FOUND,
                format!("{provider} webhooks are disabled: set {setting} to enable them"),
            ));
        };
        let body = body_or_error(body).map_err(|r| Box::new(("bad_body", *r)))?;
        let signature = headers
            .get(HUB_SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = verify_hub_signature(secret.expose().as_bytes(), &body, signature) {
            warn!(%provider, error = %e, "webhook refused: bad signature");
            return Err(refuse(
                "bad_signature",
                StatusCode::UNAUTHORIZED,
                format!("{e}; sign the raw body with {setting} in {HUB_SIGNATURE_HEADER}"),
            ));
        }
        let parsed = match parse_webhook(provider, &body, Utc::now(), &self.inner.country_code) {
            Ok(parsed) => parsed,
            // Authentic, so a message somebody sent may be inside: refusing it would make the
            // provider give up and lose it. Kept raw instead, for a replay after an upgrade.
            Err(e) => {
                return self
                    .keep_unreadable(provider, headers, &body, e.to_string())
                    .await
            }
        };
        let messages = match parsed {
            Parsed::Ignored(reason) => {
                tracing::debug!(%provider, reason, "webhook is not a chat message; ignored");
                let body = Json(json!({"status": "ignored", "reason": reason}));
                return Ok(("ignored", (StatusCode::OK, body).into_response()));
            }
            Parsed::Messages(messages) => messages,
        };
        let mut duplicates = 0;
        for msg in &messages {
            match self.publish(msg).await {
                Ok(true) => duplicates += 1,
                Ok(false) => {}
                Err(BusError::Disconnected) => {
                    return Err(refuse(
                        "nats_down",
                        StatusCode::SERVICE_UNAVAILABLE,
                        "NATS is unreachable; retry later",
                    ));
                }
                Err(e) => {
                    warn!(wa_message_id = %msg.message_id, error = %e, "publish failed");
                    return Err(refuse(
                        "publish_failed",
                        StatusCode::SERVICE_UNAVAILABLE,
                        "could not queue the message; retry later",
                    ));
                }
            }
        }
        let body = json!({"status": "accepted", "published": messages.len() - duplicates, "duplicates": duplicates});
        Ok(("accepted", (StatusCode::OK, Json(body)).into_response()))
    }

    /// Stores a signed webhook that could not be parsed as a dead letter `unreadable` (its raw
    /// body, headers and the parse error) and answers 200, so the provider does not retry into
    /// the same failure and then give up; 503 if NATS cannot store it, so the provider retries.
    async fn keep_unreadable(
        &self,
        provider: Provider,
        headers: &HeaderMap,
        body: &[u8],
        error: String,
    ) -> Result<Answer, Box<Answer>> {
        use sha2::Digest;
        let id = format!(
            "webhook:{provider}:{}",
            &hex::encode(sha2::Sha256::digest(body))[..32]
        );
        warn!(%provider, letter = %id, %error, "webhook cannot be parsed; kept as dead letter unreadable");
        let kept_headers: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "authorization" | "cookie"))
            .filter_map(|(name, value)| Some((name.to_string(), json!(value.to_str().ok()?))))
            .collect();
        let letter = wacenter_proto::DeadLetter {
            version: wacenter_proto::PAYLOAD_VERSION,
            id: id.clone(),
            reason: wacenter_proto::DeadLetterReason::Unreadable,
            error: format!("cannot parse the {provider} webhook: {error}"),
            subject: names::webhook_letter_subject(provider),
            payload: json!({
                "provider": provider,
                "body": String::from_utf8_lossy(body),
                "headers": kept_headers,
            }),
            attempts: 1,
            failed_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&letter).expect("dead letters serialize");
        let mut nats_headers = wacenter_bus::HeaderMap::new();
        nats_headers.insert(names::HEADER_WA_MESSAGE_ID, id.as_str());
        // One letter per body: the provider retrying the same webhook does not add letters.
        match self
            .inner
            .bus
            .publish(
                names::DEADLETTER_WEBHOOK,
                &format!("dlq:{id}"),
                nats_headers,
                payload.into(),
            )
            .await
        {
            Ok(_) => {
                metrics::counter!("wacenter_dead_letters_total", "worker" => "ingress", "reason" => "unreadable").increment(1);
                let body = Json(
                    json!({"status": "kept", "reason": "unreadable", "id": id, "error": letter.error}),
                );
                Ok(("unreadable", (StatusCode::OK, body).into_response()))
            }
            Err(e) => {
                warn!(%provider, letter = %id, error = %e, "cannot keep the unreadable webhook");
                Err(refuse(
                    "nats_down",
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not keep the webhook; retry later",
                ))
            }
        }
    }

    /// Publishes one message; `Ok(true)` when JetStream already had it (a provider retry).
    async fn publish(&self, msg: &InboundMessage) -> Result<bool, BusError> {
        let lane = self.inner.lanes.of(msg.provider.into(), &msg.account);
        let outcome = self.inner.bus.publish_inbound(msg, lane).await?;
        if outcome.duplicate {
            info!(wa_message_id = %msg.message_id, provider = %msg.provider, "duplicate webhook; already queued");
        } else {
            info!(wa_message_id = %msg.message_id, provider = %msg.provider, sender = msg.sender.as_deref().unwrap_or(""), seq = outcome.sequence, "queued");
        }
        // The business's own sends come back as echoes: their `sent` step is on the trail.
        if !outcome.duplicate && !msg.from_me {
            let phone = msg.sender.as_deref().unwrap_or("");
            let mut step = TrailEvent::new(TrailStep::Received, msg.dedupe_id().as_str(), phone);
            // When the webhook came: the forwarder may record its step before this one.
            step.at = msg.received_at;
            step.otomax = (lane != names::DEFAULT_LANE).then(|| lane.to_string());
            step.text = TrailEvent::shorten(&msg.text);
            if msg.is_group || msg.has_media {
                let what = [(msg.is_group, "group"), (msg.has_media, "media")];
                let what: Vec<&str> = what.iter().filter(|(on, _)| *on).map(|(_, w)| *w).collect();
                step.detail = what.join(", ");
            }
            self.inner
                .bus
                .trail()
                .record_with_key(&step, &msg.message_id, TrailKeyKind::MessageId);
        }
        metrics::counter!("wacenter_ingress_published_total", "provider" => msg.provider.as_str(), "duplicate" => outcome.duplicate.to_string()).increment(1);
        Ok(outcome.duplicate)
    }
}
