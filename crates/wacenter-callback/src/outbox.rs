//! `POST /otomax/callback`: OtomaX pushes outbox rows here.
//!
//! Accepted shapes (reference §4): the outbox row (recipient `penerima`) and the seed's shape
//! (recipient `pengirim`); numbers as JSON numbers or strings; JSON or a form body. Rows for
//! another channel (`tipe_penerima` not `W`) or with an empty `pesan` are acknowledged and
//! skipped. Each row is published with `Nats-Msg-Id` derived from its `kode`, so OtomaX repeating
//! a callback still sends one WhatsApp message; 200 only after the publish ack, 503 while NATS is
//! unreachable (OtomaX retries).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::header;
use axum::response::Response;
use chrono::Utc;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{info, warn};
use wacenter_bus::BusError;
use wacenter_config::{WaProvider, DEFAULT_SERVER};
use wacenter_otomax::lenient::{value_as_i64, value_as_string};
use wacenter_proto::{names, OutboundId, OutboundKind, OutboundMessage, Provider, PAYLOAD_VERSION};

use crate::envelope::{object, success, ApiError, ErrorCode, ErrorEnvelope, SuccessEnvelope};
use crate::openapi::{int_or_string, CallbackFailures};
use crate::{Callback, BODY_LIMIT};

/// Room kept for the NATS headers (`Nats-Msg-Id`, trace context) next to the payload when
/// checking it against the server's `max_payload`.
const HEADER_ROOM: usize = 1024;

/// An OtomaX outbox row as OtomaX posts it (reference §4), or the seed's shape. Only these fields
/// are read; any others are accepted and ignored. Numbers may be JSON numbers or strings.
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"kode": 9047001, "penerima": "628123456789", "tipe_penerima": "W", "pesan": "SUKSES S5.08123456789 SN:123", "kode_inbox": 218001}))]
pub struct OutboxRow {
    #[schema(schema_with = outbox_kode)]
    pub kode: Option<Value>,
    /// Recipient phone number or WhatsApp JID.
    pub penerima: Option<String>,
    /// Recipient when `penerima` is absent (the seed's shape).
    pub pengirim: Option<String>,
    /// Channel: rows whose type is not `W` (WhatsApp) are acknowledged and skipped.
    pub tipe_penerima: Option<String>,
    /// The text to send; rows with an empty `pesan` are acknowledged and skipped.
    pub pesan: Option<String>,
    #[schema(schema_with = outbox_kode_inbox)]
    pub kode_inbox: Option<Value>,
}

fn outbox_kode() -> utoipa::openapi::schema::Schema {
    int_or_string("The outbox row's id. Repeated callbacks with the same `kode` send one message.")
}

fn outbox_kode_inbox() -> utoipa::openapi::schema::Schema {
    int_or_string("The inbox message this row answers.")
}

#[utoipa::path(
    post,
    path = "/otomax/callback",
    tag = "callback",
    operation_id = "outboxCallback",
    summary = "OtomaX outbox callback",
    description = "OtomaX posts its outbox rows here (register this URL with set-callback). \
        Requires OTOMAX_CALLBACK_SECRET as the `secret` query parameter or the \
        `X-Callback-Secret` header (not basic auth). The row is queued for WhatsApp once per \
        `kode`; 200 only after NATS acknowledged it. `results`: `{id, to, duplicate}` when \
        queued, `{skipped: true, reason}` when skipped.",
    request_body(
        content(
            (OutboxRow = "application/json"),
            (OutboxRow = "application/x-www-form-urlencoded"),
        ),
        description = "One outbox row, JSON or form-encoded",
    ),
    responses(
        (status = 200, description = "Queued (or already queued, or skipped)", body = SuccessEnvelope),
        CallbackFailures,
    ),
    security(("callback_secret_query" = []), ("callback_secret_header" = []))
)]
pub async fn callback(State(app): State<Callback>, request: Request) -> Result<Response, ApiError> {
    received(&app, DEFAULT_SERVER, request).await
}

/// `POST /otomax/callback/{name}`: the outbox callback of the OtomaX server `name` of the
/// routing table, with that server's own secret.
#[utoipa::path(
    post,
    path = "/otomax/callback/{name}",
    tag = "callback",
    operation_id = "outboxCallbackOfServer",
    summary = "OtomaX outbox callback of one server of the routing table",
    description = "As `POST /otomax/callback`, for the OtomaX server `name` of the routing table \
        (`[[otomax]]`), authenticated by that server's `callback_secret`. Its rows are reported \
        back to that server and go out through its account on the row's `kode_terminal`.",
    params(("name" = String, Path, description = "The server's name in the routing table")),
    request_body(
        content(
            (OutboxRow = "application/json"),
            (OutboxRow = "application/x-www-form-urlencoded"),
        ),
        description = "One outbox row, JSON or form-encoded",
    ),
    responses(
        (status = 200, description = "Queued (or already queued, or skipped)", body = SuccessEnvelope),
        (status = 404, description = "No OtomaX server of that name in the routing table (the names it has are listed)", body = ErrorEnvelope),
        CallbackFailures,
    ),
    security(("callback_secret_query" = []), ("callback_secret_header" = []))
)]
pub async fn callback_of_server(
    State(app): State<Callback>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    received(&app, &name, request).await
}

async fn received(app: &Callback, server: &str, request: Request) -> Result<Response, ApiError> {
    // Continue the caller's trace when it sends one, so callback → reply → WhatsApp is one trace.
    let span = tracing::info_span!("outbox_callback");
    let incoming = request
        .headers()
        .get(wacenter_trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let outcome = wacenter_trace::in_trace(span, incoming, handle(app, server, request)).await;
    let label = match &outcome {
        Ok((label, _)) => *label,
        Err(e) => e.code.as_str(),
    };
    // Bounded: a name the table does not know is counted as `unknown`.
    let server = match app.inner.config.callback_secret(server) {
        Some(_) => server.to_string(),
        None => "unknown".to_string(),
    };
    metrics::counter!("wacenter_callback_received_total", "outcome" => label, "otomax" => server)
        .increment(1);
    outcome.map(|(_, r)| r)
}

async fn handle(
    app: &Callback,
    server: &str,
    request: Request,
) -> Result<(&'static str, Response), ApiError> {
    let me = &app.inner;
    let Some(secret) = me.config.callback_secret(server) else {
        let names: Vec<&str> = me
            .config
            .callback_secrets
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let shown: String = server.chars().take(40).collect();
        return Err(ApiError::not_found(format!(
            "no OtomaX server {shown:?} here; servers: {}",
            names.join(", ")
        )));
    };
    if !me.config.allow_ips.is_empty() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|ip| me.config.allow_ips.iter().any(|net| net.contains(ip))) {
            warn!(
                ?peer,
                "callback refused: address not in OTOMAX_CALLBACK_ALLOW_IPS"
            );
            return Err(ApiError::forbidden(
                "this address may not post callbacks (OTOMAX_CALLBACK_ALLOW_IPS)",
            ));
        }
    }
    let query_secret = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "secret")
            .map(|(_, v)| v.into_owned())
    });
    let presented = query_secret.or_else(|| {
        request
            .headers()
            .get("x-callback-secret")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    // An empty secret is never a secret (the configuration refuses one; this is the last guard).
    let valid = !secret.is_empty()
        && presented
            .as_deref()
            .is_some_and(|p| bool::from(p.as_bytes().ct_eq(secret.expose().as_bytes())));
    if !valid {
        warn!("callback refused: wrong or missing secret");
        return Err(ApiError::unauthorized(
            "wrong or missing callback secret (give it as ?secret= or X-Callback-Secret)",
        ));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(BODY_LIMIT))?;
    let row: Map<String, Value> = if is_form {
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(ApiError::validation(
                    "the callback body must be a JSON object (an OtomaX outbox row)",
                ))
            }
            Err(e) => return Err(ApiError::validation(format!("invalid JSON body: {e}"))),
        }
    };
    let text = |k: &str| row.get(k).map(value_as_string).unwrap_or_default();
    let kode = row.get("kode").and_then(value_as_i64);
    let tipe = text("tipe_penerima");
    if !tipe.is_empty() && !tipe.eq_ignore_ascii_case("W") {
        info!(outbox_kode = ?kode, tipe_penerima = %tipe, "outbox row for another channel; skipped");
        metrics::counter!("wacenter_callback_skipped_total", "reason" => "other_channel", "otomax" => server.to_string())
            .increment(1);
        return Ok((
            "skipped",
            success(
                "skipped: tipe_penerima is not W (WhatsApp)",
                object(json!({"skipped": true, "reason": "other_channel"})),
            ),
        ));
    }
    let pesan = text("pesan");
    if pesan.trim().is_empty() {
        info!(outbox_kode = ?kode, "outbox row without text; skipped");
        metrics::counter!("wacenter_callback_skipped_total", "reason" => "empty_pesan", "otomax" => server.to_string())
            .increment(1);
        return Ok((
            "skipped",
            success(
                "skipped: pesan is empty",
                object(json!({"skipped": true, "reason": "empty_pesan"})),
            ),
        ));
    }
    let raw_recipient = [text("penerima"), text("pengirim")]
        .into_iter()
        .find(|r| !r.trim().is_empty());
    let Some(raw_recipient) = raw_recipient else {
        return Err(ApiError::validation(
            "no recipient: the row has neither penerima nor pengirim",
        ));
    };
    let Some(recipient) =
        wacenter_whatsapp::normalize_phone(&raw_recipient, &me.config.country_code)
    else {
        return Err(ApiError::validation(format!(
            "recipient {raw_recipient:?} is not a WhatsApp phone number"
        )));
    };
    let now = Utc::now();
    let (msg_id, id) = outbound_ids(server, kode, &recipient, &pesan, now);
    // The row goes out through the server's account on its terminal.
    let kode_terminal = row.get("kode_terminal").and_then(value_as_i64);
    let account = me
        .config
        .routing
        .as_ref()
        .and_then(|table| table.outbound(server, kode_terminal));
    if let (Some(account), Some(terminal)) = (account, kode_terminal) {
        if account.kode_terminal != terminal {
            warn!(outbox_kode = ?kode, otomax = server, kode_terminal = terminal, account = %account.id, account_terminal = account.kode_terminal, "no account on the row's terminal; sent through the server's first account");
        }
    }
    let out = OutboundMessage {
        version: PAYLOAD_VERSION,
        id: id.clone(),
        kind: OutboundKind::Outbox,
        provider: account.map(|a| match a.provider {
            WaProvider::Gowa => Provider::Gowa,
            WaProvider::Meta => Provider::Meta,
        }),
        account: account.map(|a| a.id.clone()).unwrap_or_default(),
        otomax: (server != DEFAULT_SERVER).then(|| server.to_string()),
        to: recipient.clone(),
        text: pesan,
        reply_to: None,
        in_reply_to: None,
        outbox_kode: kode,
        kode_inbox: row.get("kode_inbox").and_then(value_as_i64),
        part: None,
        created_at: now,
    };
    let payload = serde_json::to_vec(&out).map_err(|e| {
        // Cannot happen (plain strings and numbers), but a bug here must not be a panic.
        warn!(error = %e, "cannot serialize an outbound message");
        ApiError::unavailable("could not queue the message; retry later")
    })?;
    // The NATS client refuses oversized messages; that is permanent, not "retry later".
    let max_payload = me.bus.client().max_payload();
    if max_payload > 0 && payload.len() + HEADER_ROOM > max_payload {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "pesan is too long to queue: the message would be {} bytes and NATS takes at most {} (max_payload)",
                payload.len() + HEADER_ROOM,
                max_payload
            ),
        ));
    }
    // Stamped before the row is queued: the reply service may send it before this is recorded.
    let mut step = wacenter_proto::TrailEvent::new(
        wacenter_proto::TrailStep::OutboxReceived,
        id.as_str(),
        recipient.as_str(),
    );
    step.otomax = out.otomax.clone();
    step.kode = kode;
    step.kode_inbox = out.kode_inbox;
    step.text = wacenter_proto::TrailEvent::shorten(&out.text);
    match me
        .bus
        .publish(
            &names::outbox_subject(server),
            &msg_id,
            wacenter_bus::HeaderMap::new(),
            payload.into(),
        )
        .await
    {
        Ok(outcome) => {
            info!(outbox_kode = ?kode, kode_inbox = ?out.kode_inbox, to = %recipient, duplicate = outcome.duplicate, "outbox row queued");
            if !outcome.duplicate {
                let trail = me.bus.trail();
                match kode {
                    Some(k) => trail.record_with_key(
                        &step,
                        &k.to_string(),
                        wacenter_proto::TrailKeyKind::Kode,
                    ),
                    None => trail.record(&step),
                }
            }
            Ok((
                "queued",
                success(
                    if outcome.duplicate {
                        "already queued"
                    } else {
                        "queued"
                    },
                    object(json!({"id": id, "to": recipient, "duplicate": outcome.duplicate})),
                ),
            ))
        }
        Err(BusError::Disconnected) => {
            Err(ApiError::unavailable("NATS is unreachable; retry later"))
        }
        Err(e) => {
            warn!(outbox_kode = ?kode, error = %e, "cannot queue outbox row");
            Err(ApiError::unavailable(
                "could not queue the message; retry later",
            ))
        }
    }
}

/// The `Nats-Msg-Id` and the outbound id of a row. With a `kode` both are `outbox:<kode>`: OtomaX
/// re-posting that row days later still sends once (the reply service's `wa_delivered` record).
/// Without one, only the content tells a repeated callback apart, and content repeats for real
/// ("Saldo Anda Rp 10.000" twice in a week): the content hash is the `Nats-Msg-Id`, so JetStream
/// drops a repeat inside its duplicate window (10 minutes, longer than OtomaX retries a
/// callback), while the outbound id carries the time, so a genuine repeat after it is sent.
fn outbound_ids(
    server: &str,
    kode: Option<i64>,
    recipient: &str,
    pesan: &str,
    now: chrono::DateTime<Utc>,
) -> (String, OutboundId) {
    match kode {
        Some(k) => {
            let id = OutboundId::outbox_of(server, k);
            (id.to_string(), id)
        }
        None => {
            // Another server's identical notice is another message.
            let content = match server {
                DEFAULT_SERVER => format!("{recipient}\n{pesan}"),
                server => format!("{server}\n{recipient}\n{pesan}"),
            };
            let hash = &hex::encode(Sha256::digest(content))[..32];
            (
                format!("outbox:sha256:{hash}"),
                OutboundId::outbox_without_kode(hash, now),
            )
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn rows_with_kode_are_one_message_forever() {
        let t = Utc::now();
        let later = t + chrono::Duration::days(3);
        assert_eq!(
            outbound_ids(DEFAULT_SERVER, Some(7), "628", "x", t),
            outbound_ids(DEFAULT_SERVER, Some(7), "628", "x", later)
        );
    }

    #[test]
    fn rows_without_kode_repeat_for_real_after_the_dedupe_window() {
        let t = Utc::now();
        let (msg_a, id_a) = outbound_ids(DEFAULT_SERVER, None, "628123", "Saldo Anda Rp 10.000", t);
        let (msg_b, id_b) = outbound_ids(
            DEFAULT_SERVER,
            None,
            "628123",
            "Saldo Anda Rp 10.000",
            t + chrono::Duration::days(2),
        );
        assert_eq!(
            msg_a, msg_b,
            "a repeated callback is dropped by JetStream's window"
        );
        assert_ne!(
            id_a, id_b,
            "a repeat after it is a new message, not a duplicate"
        );
        let (msg_c, _) = outbound_ids(DEFAULT_SERVER, None, "628123", "Saldo Anda Rp 20.000", t);
        assert_ne!(msg_a, msg_c);
    }
}
