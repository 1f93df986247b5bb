//! The callback service on `APP_PORT`: OtomaX's outbox callback (`POST /otomax/callback`, shared
//! secret, published to JetStream once per outbox row), the `/otomax/*` REST API for operators
//! (behind `APP_BASIC_AUTH`), `/otomax/health`, and the ops endpoints.

pub mod auth;
pub mod envelope;
pub mod health;
pub mod openapi;
pub mod outbox;
pub mod rest;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;
use tracing::info;
use wacenter_bus::{Bus, Topology};
use wacenter_config::{IpNet, Settings};
use wacenter_otomax::{ClientConfig, OtomaxClient};

use crate::envelope::ApiError;

/// Bodies above this get 413 `PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub struct Callback {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub bus: Bus,
    pub otomax: Option<OtomaxClient>,
    pub callback_secret: String,
    pub allow_ips: Vec<IpNet>,
    pub basic_auth: Vec<(String, String)>,
    pub public_url: String,
    pub country_code: String,
    pub default_reseller: String,
    pub default_kode_terminal: i64,
    pub exp: chrono::Duration,
    pub probe: health::ProbeCache,
    /// Secrets that could appear inside error texts from other crates (the password of
    /// OTOMAX_API_URL), replaced before those texts are shown.
    pub hidden: Vec<String>,
}

impl Callback {
    pub fn new(settings: &Settings, bus: Bus) -> anyhow::Result<Self> {
        let otomax = if settings.otomax_enabled {
            let mut config = ClientConfig::from_settings(settings)?;
            // Operators are waiting on the other end: one retry at most, short timeouts.
            config.policy.max_retries = config.policy.max_retries.min(1);
            config.policy.attempt_timeout =
                config.policy.attempt_timeout.min(Duration::from_secs(15));
            Some(OtomaxClient::new(config))
        } else {
            None
        };
        let hidden = url::Url::parse(&settings.otomax_api_url)
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                bus,
                otomax,
                callback_secret: settings.otomax_callback_secret.expose().to_string(),
                allow_ips: settings.callback_allow_list()?,
                basic_auth: settings.basic_auth_users()?,
                public_url: settings.public_url.clone(),
                country_code: settings.wa_default_country_code.clone(),
                default_reseller: settings.otomax_default_reseller.clone(),
                default_kode_terminal: settings.otomax_default_kode_terminal,
                exp: chrono::Duration::seconds(
                    i64::try_from(settings.otomax_exp_seconds).unwrap_or(30),
                ),
                probe: health::ProbeCache::default(),
                hidden,
            }),
        })
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
            .route_layer(middleware::from_fn_with_state(
                self.clone(),
                auth::require_basic_auth,
            ));
        let bus = self.inner.bus.clone();
        Router::new()
            .merge(admin)
            .route("/otomax/callback", post(outbox::callback))
            .route("/otomax/health", get(health::health))
            .route("/openapi.json", get(openapi::openapi_json))
            .with_state(self.clone())
            .merge(wacenter_telemetry::ops_router(
                "callback",
                Arc::new(move || bus.readiness()),
            ))
            .fallback(|| async {
                ApiError::not_found("no such route; see /openapi.json").into_response()
            })
            .method_not_allowed_fallback(|| async {
                ApiError::method_not_allowed().into_response()
            })
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(middleware::from_fn(payload_too_large_as_envelope))
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

/// Runs the callback service on `APP_PORT` until `shutdown`.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let bus = Bus::connect(
        &settings.nats_url,
        "callback",
        Topology {
            replicas: settings.nats_stream_replicas,
            ..Topology::default()
        },
    )
    .await?;
    let listener = wacenter_telemetry::bind(
        SocketAddr::from(([0, 0, 0, 0], settings.app_port)),
        "callback",
    )
    .await?;
    let app = Callback::new(&settings, bus.clone())?;
    let setup = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.ensure_topology().await })
    };
    if settings.app_basic_auth.is_empty() {
        info!("admin routes locked: APP_BASIC_AUTH is not set");
    }
    info!(addr = %listener.local_addr()?, "callback service listening");
    axum::serve(
        listener,
        app.router()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wacenter_telemetry::wait_for(shutdown))
    .await?;
    setup.abort();
    // Bounded: with NATS unreachable it gives up (every callback was answered only after its
    // publish ack, so nothing is lost).
    bus.drain().await;
    Ok(())
}
