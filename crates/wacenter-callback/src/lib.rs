//! The callback service on `APP_PORT`: OtomaX's outbox callback (`POST /otomax/callback`, shared
//! secret, published to JetStream once per outbox row), the `/otomax/*` REST API for operators
//! (behind `APP_BASIC_AUTH`), the operator's console (`/console`, same auth), `/otomax/health`,
//! and the ops endpoints.

pub mod auth;
pub mod console;
pub mod envelope;
pub mod health;
pub mod openapi;
pub mod outbox;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tracing::info;
use wacenter_bus::Bus;
pub use wacenter_config::CallbackConfig;
use wacenter_config::OtomaxServer;
use wacenter_otomax::{ClientConfig, OtomaxClient};
use wacenter_service::Shutdown;

use crate::envelope::ApiError;

/// Bodies above this get 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub struct Callback {
    pub(crate) inner: Arc<Inner>,
}

/// The OtomaX server of the REST API and its client (short timeouts: an operator is waiting).
pub(crate) struct RestOtomax {
    pub client: OtomaxClient,
    pub server: OtomaxServer,
    /// Its last reachability probe, for `/otomax/health`.
    pub probe: health::ProbeCache,
}

pub(crate) struct Inner {
    pub bus: Bus,
    /// A client per OtomaX server of the routing table, for the REST API (`?otomax=<name>`);
    /// empty when OtomaX is off.
    pub rest: Vec<RestOtomax>,
    pub config: CallbackConfig,
    /// Secrets that could appear inside error texts from other crates (the password of
    /// OTOMAX_API_URL), replaced before those texts are shown.
    pub hidden: Vec<String>,
}

impl Callback {
    pub fn new(config: &CallbackConfig, bus: Bus) -> Self {
        // Operators are waiting on the other end: one retry at most, short timeouts.
        let rest = config
            .routing
            .iter()
            .flat_map(|table| table.servers())
            .map(|server| {
                let mut client = ClientConfig::for_server(server.name.as_str(), &server.otomax);
                client.policy.max_retries = client.policy.max_retries.min(1);
                client.policy.attempt_timeout =
                    client.policy.attempt_timeout.min(Duration::from_secs(15));
                RestOtomax {
                    client: OtomaxClient::new(client),
                    server: server.clone(),
                    probe: health::ProbeCache::default(),
                }
            })
            .collect();
        let hidden = config
            .routing
            .iter()
            .flat_map(|table| table.servers())
            .filter_map(|server| server.otomax.api_url.password().map(str::to_string))
            .filter(|p| !p.is_empty())
            .collect();
        Self {
            inner: Arc::new(Inner {
                bus,
                rest,
                config: config.clone(),
                hidden,
            }),
        }
    }

    /// `text` with every hidden secret replaced by `redacted`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.inner
            .hidden
            .iter()
            .fold(text.to_string(), |t, secret| {
                t.replace(secret.as_str(), "redacted")
            })
    }

    pub fn router(&self) -> Router {
        let admin = Router::new()
            .route("/otomax/insert-inbox", post(rest::insert_inbox))
            .route("/otomax/set-callback", post(rest::set_callback))
            .route("/otomax/get-callback", get(rest::get_callback))
            .route("/otomax/test", post(rest::test))
            .route("/otomax/reseller/{code}", get(rest::reseller))
            .route(
                "/otomax/reseller/{code}/balance",
                get(rest::reseller_balance),
            )
            .route("/otomax/balance/{code}", get(rest::balance))
            .route("/otomax/trail", get(console::search_trail))
            .route("/otomax/trail/live", get(console::live_trail))
            .route("/otomax/dead-letters", get(console::dead_letters))
            .route("/otomax/dead-letters/replay", post(console::replay))
            .route("/otomax/figures", get(console::figures))
            .route("/otomax/whatsapp", get(console::whatsapp_accounts))
            .route("/console", get(console::page))
            .route("/console/", get(console::page))
            .route("/console/app.js", get(console::script))
            .route("/console/app.css", get(console::style))
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                console::same_origin,
            ))
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                auth::require_basic_auth,
            ));
        Router::new()
            .merge(admin)
            .route("/otomax/callback", post(outbox::callback))
            .route("/otomax/callback/{name}", post(outbox::callback_of_server))
            .route("/otomax/health", get(health::health))
            .route("/openapi.json", get(openapi::openapi_json))
            .with_state(self.clone())
            .merge(wacenter_service::ops_router(
                "callback",
                wacenter_service::bus_readiness(&self.inner.bus),
            ))
            .fallback(|| async {
                ApiError::not_found("no such route; see /openapi.json").into_response()
            })
            .method_not_allowed_fallback(|| async {
                ApiError::method_not_allowed().into_response()
            })
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(middleware::from_fn(payload_too_large_as_envelope))
            .layer(middleware::from_fn(console::security_headers))
    }
}

/// axum answers an oversized body with a plain-text 413; keep the envelope everywhere.
async fn payload_too_large_as_envelope(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    let is_plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| !ct.starts_with("application/json"));
    match response.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE if is_plain => {
            ApiError::too_large(BODY_LIMIT).into_response()
        }
        axum::http::StatusCode::BAD_REQUEST if is_plain => {
            ApiError::validation("the request could not be read").into_response()
        }
        _ => response,
    }
}

/// Runs the callback service on `listener` until `shutdown`.
pub async fn run(
    config: CallbackConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if config.basic_auth.is_empty() {
        info!("admin routes locked: APP_BASIC_AUTH is not set");
    }
    let nats = config.nats.clone();
    wacenter_service::register_servers("callback", &config.lanes);
    wacenter_service::serve_http("callback", &nats, listener, shutdown, |bus| {
        Ok(Callback::new(&config, bus).router())
    })
    .await
}
