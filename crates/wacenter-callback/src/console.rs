//! The operator's console (`GET /console`, spec §4) and the REST routes it is built on: the
//! trail (search and live), dead letters (list and replay) and today's figures. The console is
//! one page of static assets compiled into the binary; everything it shows or does goes through
//! these documented routes, so the console adds no second API.
//!
//! A browser sends remembered basic-auth credentials to any page that asks, so every route that
//! changes something refuses requests from another site ([`same_origin`]), and every answer
//! carries a content security policy that allows no inline script and no framing
//! ([`security_headers`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use wacenter_bus::deadletters::{self, ReplayOptions, ReplayOutcome, Selector};
use wacenter_bus::trail::{self, Lookup};
use wacenter_proto::names;

use crate::envelope::{json_body, success, ApiError, ErrorEnvelope, SuccessEnvelope};
use crate::openapi::{AdminAuth, BadBody};
use crate::Callback;

/// The console's page and assets, built into the binary.
const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// Every answer of this service may be shown in a browser: nothing runs that is not served from
/// here as a file, nothing frames it, nothing sniffs content types.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a request that changes something when a browser says it comes from another site
/// (`Origin` not this service, or `Sec-Fetch-Site` cross-site): a page elsewhere cannot use the
/// operator's remembered credentials to replay dead letters or move the callback URL. This
/// service is its `Host`, the `X-Forwarded-Host` a reverse proxy sets (a page cannot set it on a
/// cross-site request without a CORS preflight, which this service never allows) and
/// `PUBLIC_URL`. Requests without those headers (curl, scripts) are not from a browser page and
/// pass.
pub async fn same_origin(State(app): State<Callback>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let authority = |u: &url::Url| match u.port() {
        Some(port) => format!("{}:{port}", u.host_str().unwrap_or("")),
        None => u.host_str().unwrap_or("").to_string(),
    };
    let mut own: Vec<String> = ["host", "x-forwarded-host"]
        .into_iter()
        .filter_map(text)
        .collect();
    own.extend(app.inner.config.public_url.as_ref().map(authority));
    let from_elsewhere = text("origin").is_some_and(|origin| {
        url::Url::parse(&origin)
            .ok()
            .is_none_or(|u| !own.contains(&authority(&u)))
    }) || matches!(
        text("sec-fetch-site").as_deref(),
        Some("cross-site" | "same-site")
    );
    if from_elsewhere {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), "request from another site refused");
        return ApiError::forbidden(
            "refused: this request comes from another site; changes are only made from wacenter's own console (its Host, X-Forwarded-Host or PUBLIC_URL) or without a browser (curl)",
        )
        .into_response();
    }
    next.run(request).await
}

/// `GET /console`: the page.
pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /console/app.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
        .into_response()
}

/// `GET /console/app.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
        .into_response()
}

/// Longest query accepted by the trail search, in characters.
const MAX_QUERY_CHARS: usize = 200;

/// `?q=…`: what to look for on the trail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrailQuery {
    /// A WhatsApp message id, a phone number (its recent messages), a `kode_inbox` or an outbox
    /// `kode`.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"\S",
        example = "628123456789"
    )]
    pub q: String,
    /// How far back a phone number's messages are looked for, in hours (default 24).
    #[param(minimum = 1, maximum = 720)]
    pub hours: Option<u64>,
    /// At most this many messages, the newest (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

fn query_of<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::validation(format!("bad query: {}", e.body_text())))
}

/// `GET /otomax/trail`: one message's timeline, or a phone's recent ones.
#[utoipa::path(
    get,
    path = "/otomax/trail",
    tag = "console",
    operation_id = "searchTrail",
    summary = "Find messages on the trail",
    description = "The timelines (every step: received, forwarded with kode_inbox, sent with \
        the provider's message id, outbox rows, UpdateStatusOutbox, dead letters, replays) of \
        the messages `q` names: a WhatsApp message id, a phone number (its messages of the last \
        `hours`), a kode_inbox or an outbox kode. Newest first. 404 when nothing matches.",
    params(TrailQuery),
    responses(
        (status = 200, description = "`results.messages`: the timelines found", body = SuccessEnvelope),
        (status = 400, description = "`q` is blank or too long, or a number is out of range", body = ErrorEnvelope),
        (status = 404, description = "No message on the trail matches", body = ErrorEnvelope),
        AdminAuth,
        (status = 503, description = "NATS is unreachable", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn search_trail(
    State(app): State<Callback>,
    query: Result<Query<TrailQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_of(query)?;
    let q = query.q.trim();
    if q.is_empty() {
        return Err(ApiError::validation("q is empty: give a WhatsApp message id, a phone number, a kode_inbox or an outbox kode"));
    }
    if q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "q is longer than {MAX_QUERY_CHARS} characters or has control characters"
        )));
    }
    let hours = query.hours.unwrap_or(24);
    let limit = query.limit.unwrap_or(20);
    if !(1..=720).contains(&hours) || !(1..=100).contains(&limit) {
        return Err(ApiError::validation(
            "hours must be 1 to 720 and limit 1 to 100",
        ));
    }
    let lookup = Lookup {
        phone_window: Duration::from_secs(hours * 3600),
        limit,
        ..Lookup::default()
    };
    let found = trail::find(&app.inner.bus, q, &app.inner.config.country_code, lookup)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "trail search failed");
            ApiError::unavailable("the trail cannot be read now (is NATS up?); try again")
        })?;
    if found.is_empty() {
        return Err(ApiError::not_found(format!(
            "not found: no message on the trail matches {:?} (a WhatsApp message id, a phone number of the last {hours} h, a kode_inbox or an outbox kode)",
            q.chars().take(60).collect::<String>()
        )));
    }
    let n = found.len();
    Ok(success(
        format!("{n} message{}", if n == 1 { "" } else { "s" }),
        serde_json::Map::from_iter([
            ("query".to_string(), json!(q)),
            ("messages".to_string(), json!(found)),
        ]),
    ))
}

/// `GET /otomax/trail/live`: every step as it happens, as server-sent events.
#[utoipa::path(
    get,
    path = "/otomax/trail/live",
    tag = "console",
    operation_id = "liveTrail",
    summary = "Every step as it happens (server-sent events)",
    description = "A `text/event-stream`: one `step` event per trail step (a TrailEvent, \
        `proto/schemas/trail-event.v1.json`) as the services record it, and a comment every \
        15 s to keep the connection open. What the console's live page shows.",
    responses(
        (status = 200, description = "The stream of steps", content_type = "text/event-stream", body = String),
        AdminAuth,
        (status = 503, description = "NATS is unreachable", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn live_trail(
    State(app): State<Callback>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscriber = app
        .inner
        .bus
        .client()
        .subscribe(names::TRAIL_PHONE_SUBJECTS)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot subscribe to the trail");
            ApiError::unavailable("NATS is unreachable; try again")
        })?;
    let events = subscriber.map(|msg| {
        let data = String::from_utf8_lossy(&msg.payload).into_owned();
        Ok(Event::default().event("step").data(data))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `?limit=`: how many dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LettersQuery {
    /// At most this many letters, oldest first (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// `GET /otomax/dead-letters`.
#[utoipa::path(
    get,
    path = "/otomax/dead-letters",
    tag = "console",
    operation_id = "listDeadLetters",
    summary = "Dead letters",
    description = "Messages that could not succeed, oldest first: each with its stream \
        `sequence` and the `letter` (`proto/schemas/dead-letter.v1.json`: id, reason, error, \
        the original payload). Same as `wacenter dlq list`.",
    params(LettersQuery),
    responses(
        (status = 200, description = "`results.letters` and `results.count`", body = SuccessEnvelope),
        (status = 400, description = "`limit` out of range", body = ErrorEnvelope),
        AdminAuth,
        (status = 503, description = "NATS is unreachable", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn dead_letters(
    State(app): State<Callback>,
    query: Result<Query<LettersQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = query_of(query)?.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit must be 1 to 1000"));
    }
    let letters = deadletters::list(&app.inner.bus, limit)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot list dead letters");
            ApiError::unavailable("the dead letters cannot be read now (is NATS up?)")
        })?;
    let count = letters.len();
    let letters: Vec<Value> = letters
        .into_iter()
        .map(|l| json!({"sequence": l.sequence, "letter": l.letter}))
        .collect();
    Ok(success(
        format!("{count} dead letter{}", if count == 1 { "" } else { "s" }),
        serde_json::Map::from_iter([
            ("count".to_string(), json!(count)),
            ("letters".to_string(), json!(letters)),
        ]),
    ))
}

/// Which dead letters to replay, and how.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "gowa:628111222333@s.whatsapp.net:3EB0C127D7BACC83D6A1"}))]
pub struct ReplayBody {
    /// A letter's id or stream sequence; absent with `all`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500)]
    pub id: Option<String>,
    /// Replay every dead letter.
    #[serde(default)]
    pub all: bool,
    /// Replay `uncertain` letters too: OtomaX (or the recipient) may already have them; check
    /// there first.
    #[serde(default)]
    pub force: bool,
    /// Give replayed inbound messages a new timestamp, hence a new `_exp`.
    #[serde(default)]
    pub fresh: bool,
}

/// `POST /otomax/dead-letters/replay`.
#[utoipa::path(
    post,
    path = "/otomax/dead-letters/replay",
    tag = "console",
    operation_id = "replayDeadLetters",
    summary = "Replay dead letters",
    description = "Publishes a dead letter (`id`) or every one (`all`) again to its original \
        subject, as `wacenter dlq replay` does. An `uncertain` letter is left as it is unless \
        `force` (its outcome says `needs_force`): OtomaX or the recipient may already have it. A \
        letter whose work is recorded done is never replayed. A letter replayed already is gone: \
        asking again answers 404, so a twice-clicked button replays once. Refused (403) when a \
        browser says the request comes from another site.",
    request_body = ReplayBody,
    responses(
        (status = 200, description = "`results.results`: what became of each letter (`replayed`, `needs_force`, `already_done`, `still_unreadable`)", body = SuccessEnvelope),
        BadBody,
        AdminAuth,
        (status = 403, description = "The request comes from another site", body = ErrorEnvelope),
        (status = 404, description = "No such dead letter (replayed already?)", body = ErrorEnvelope),
        (status = 503, description = "NATS is unreachable", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn replay(State(app): State<Callback>, body: Bytes) -> Result<Response, ApiError> {
    let b: ReplayBody = json_body(&body)?;
    let selector = match (b.id.as_deref().map(str::trim), b.all) {
        (Some(id), false) if !id.is_empty() && id.chars().count() <= 500 => {
            Selector::One(id.to_string())
        }
        (None, true) => Selector::All,
        _ => {
            return Err(ApiError::validation(
                "give either id (a letter's id or sequence, up to 500 characters) or all: true",
            ))
        }
    };
    let config = &app.inner.config;
    let reparse = |provider, body: &[u8]| {
        wacenter_ingress::messages_of(provider, body, &config.country_code, &config.lanes)
    };
    let options = ReplayOptions {
        fresh: b.fresh,
        force: b.force,
    };
    let done = deadletters::replay(&app.inner.bus, &selector, options, Some(&reparse))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "replay failed");
            ApiError::unavailable(format!("replay failed: {e}; try again"))
        })?;
    if done.is_empty() {
        return Err(ApiError::not_found(match selector {
            Selector::One(_) => "not found: no such dead letter (replayed already?)",
            Selector::All => "not found: there are no dead letters",
        }));
    }
    let replayed = done
        .iter()
        .filter(|r| r.outcome == ReplayOutcome::Replayed)
        .count();
    let results: Vec<Value> = done
        .iter()
        .map(|r| {
            tracing::info!(letter = %r.id, seq = r.sequence, outcome = r.outcome.explain(), "dead letter replay asked from the REST API");
            json!({
                "sequence": r.sequence,
                "id": r.id,
                "outcome": outcome_name(r.outcome),
                "explanation": r.outcome.explain(),
            })
        })
        .collect();
    Ok(success(
        format!("{replayed} of {} replayed", done.len()),
        serde_json::Map::from_iter([
            ("replayed".to_string(), json!(replayed)),
            ("results".to_string(), json!(results)),
        ]),
    ))
}

fn outcome_name(outcome: ReplayOutcome) -> &'static str {
    match outcome {
        ReplayOutcome::Replayed => "replayed",
        ReplayOutcome::NeedsForce => "needs_force",
        ReplayOutcome::AlreadyDone => "already_done",
        ReplayOutcome::StillUnreadable => "still_unreadable",
    }
}

/// `?since=`: the start of "today".
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FiguresQuery {
    /// Count from this time (RFC 3339; the console sends the operator's local midnight). Default
    /// 24 hours ago; at most 31 days back.
    #[param(value_type = Option<String>, format = DateTime, example = "2025-06-01T00:00:00+07:00")]
    pub since: Option<DateTime<Utc>>,
}

/// `GET /otomax/figures`.
#[utoipa::path(
    get,
    path = "/otomax/figures",
    tag = "console",
    operation_id = "figures",
    summary = "Today's figures",
    description = "Counted from the trail since `since`: messages received, forwarded (by \
        OtomaX status), auto-replies queued, messages sent, outbox rows, send failures, \
        notices, skipped (by reason) and dead letters (by reason).",
    params(FiguresQuery),
    responses(
        (status = 200, description = "The figures", body = SuccessEnvelope),
        (status = 400, description = "`since` is not an RFC 3339 time, is in the future or more than 31 days back", body = ErrorEnvelope),
        AdminAuth,
        (status = 503, description = "NATS is unreachable", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn figures(
    State(app): State<Callback>,
    query: Result<Query<FiguresQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let since = query_of(query)?
        .since
        .unwrap_or(now - chrono::Duration::hours(24));
    if since > now || now - since > chrono::Duration::days(31) {
        return Err(ApiError::validation(
            "since must be in the last 31 days, not in the future",
        ));
    }
    let tally = trail::tally(&app.inner.bus, since).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot count the trail");
        ApiError::unavailable("the trail cannot be read now (is NATS up?); try again")
    })?;
    let by = |m: &BTreeMap<String, u64>| json!(m);
    Ok(success(
        "figures",
        serde_json::Map::from_iter([
            ("since".to_string(), json!(since)),
            ("received".to_string(), json!(tally.received)),
            ("forwarded".to_string(), json!(tally.forwarded)),
            (
                "forwarded_by_status".to_string(),
                by(&tally.forwarded_by_status),
            ),
            ("auto_replies".to_string(), json!(tally.auto_replies)),
            ("sent".to_string(), json!(tally.sent)),
            ("outbox_rows".to_string(), json!(tally.outbox_rows)),
            ("send_failures".to_string(), json!(tally.send_failures)),
            ("notices".to_string(), json!(tally.notices)),
            ("skipped".to_string(), by(&tally.skipped)),
            ("dead_letters".to_string(), by(&tally.dead_letters)),
        ]),
    ))
}

/// `GET /otomax/whatsapp`: each WhatsApp account of the routing table (and `GOWA_DEVICE_ID`),
/// and for GOWA whether its device is logged in.
#[utoipa::path(
    get,
    path = "/otomax/whatsapp",
    tag = "console",
    operation_id = "whatsappAccounts",
    summary = "WhatsApp accounts and whether each is logged in",
    description = "Every WhatsApp account wacenter knows (the routing table's, and \
        `GOWA_DEVICE_ID`), with its OtomaX server. For GOWA (`WA_PROVIDER=gowa`) each device is \
        asked `GET /app/status`: `connected` and `logged_in` (a number whose phone unlinked it \
        receives and sends nothing until its QR is scanned again), or `error` when GOWA could \
        not be asked. Meta numbers are listed without a check (`checked: false`).",
    responses(
        (status = 200, description = "`results.accounts`", body = SuccessEnvelope),
        AdminAuth,
        (status = 503, description = "Not used: GOWA being unreachable is reported per account", body = ErrorEnvelope),
    ),
    security(("basic_auth" = []))
)]
pub async fn whatsapp_accounts(State(app): State<Callback>) -> Result<Response, ApiError> {
    use wacenter_config::WaProvider;
    let config = &app.inner.config;
    let mut accounts: Vec<(WaProvider, String, String)> = config
        .lanes
        .accounts()
        .into_iter()
        .map(|(p, id, server)| (p, id.to_string(), server.to_string()))
        .collect();
    if let Some(gowa) = &config.gowa {
        let default = gowa.default_device.clone();
        if !accounts
            .iter()
            .any(|(p, id, _)| *p == WaProvider::Gowa && *id == default)
        {
            accounts.push((
                WaProvider::Gowa,
                default,
                wacenter_config::DEFAULT_SERVER.to_string(),
            ));
        }
    }
    let sender = config.gowa.as_ref().map(|g| {
        wacenter_whatsapp::GowaSender::new(
            g.url.clone(),
            g.basic_auth
                .as_ref()
                .map(|c| (c.user.clone(), c.password.expose().to_string())),
            wacenter_otomax::client::shared_http_client(),
        )
    });
    let app = &app;
    let checks = accounts.iter().map(|(provider, id, server)| {
        let sender = sender.as_ref();
        async move {
            let mut entry = json!({
                "provider": match provider { WaProvider::Gowa => "gowa", WaProvider::Meta => "meta" },
                "account": id,
                "otomax": server,
                "checked": false,
            });
            if let (WaProvider::Gowa, Some(sender)) = (provider, sender) {
                entry["checked"] = json!(true);
                match sender.device_status(id).await {
                    Ok(status) => {
                        entry["connected"] = json!(status.connected);
                        entry["logged_in"] = json!(status.logged_in);
                        entry["jid"] = json!(status.jid);
                    }
                    Err(e) => entry["error"] = json!(app.scrub(&e.to_string())),
                }
            }
            entry
        }
    });
    let accounts: Vec<Value> = futures::future::join_all(checks).await;
    let n = accounts.len();
    Ok(success(
        format!("{n} WhatsApp account{}", if n == 1 { "" } else { "s" }),
        serde_json::Map::from_iter([("accounts".to_string(), json!(accounts))]),
    ))
}
