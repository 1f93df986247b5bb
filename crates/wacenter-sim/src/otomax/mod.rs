//! `wacenter sim otomax`: the OtomaX Open API as the reference describes it.
//!
//! * every call's token is checked (bad → 401 `{"ok":false,"desc":…}`), and `_exp` when present
//!   (expired → `{"ok":false,"desc":…}`); endpoints under `/<Name>` and `/api/<name>`, any case;
//! * InsertInbox answers 41 (unknown sender), 42 (not a command), else 21 with a text; resellers
//!   type `<product>.<destination>.<pin>`, `S.<pin>` (balance) and `TIKET.<amount>.<pin>`;
//! * a purchase posts an outbox row with its result to the registered callback URL after
//!   `result_delay`, retrying until it gets a 2xx, and records the UpdateStatusOutbox it gets back;
//! * fault knobs (latency, error rate, down-for-N-seconds) at start and under `/_sim/faults`.
//!
//! `state` holds what it knows and remembers, `routes` answers HTTP, `commands` reads what
//! resellers type, `outbox` pushes outbox rows to the callback URL.

mod addon;
mod commands;
mod outbox;
mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;
use wacenter_otomax::Signer;

use routes::*;
use state::*;

pub use state::{load_resellers_file, Faults, OtomaxSimConfig, SimReseller};

/// A running (or routable) OtomaX simulator.
#[derive(Clone)]
pub struct OtomaxSim {
    shared: Arc<Shared>,
}

impl OtomaxSim {
    pub fn new(config: OtomaxSimConfig) -> Self {
        // Ids grow with the clock, like a database sequence that survives restarts: a restarted
        // simulator never reuses an outbox kode that wacenter already delivered.
        let epoch = (Utc::now().timestamp() - 1_700_000_000).max(0);
        let inner = Inner {
            next_kode_inbox: epoch * 100,
            next_outbox: epoch * 100,
            next_trx: epoch * 100,
            resellers: config.resellers,
            ..Default::default()
        };
        Self {
            shared: Arc::new(Shared {
                signer: Signer::new(&config.app_id, &config.app_key, &config.dev_key),
                result_delay: config.result_delay,
                http: wacenter_otomax::client::shared_http_client(),
                faults: Mutex::new(config.faults),
                inner: Mutex::new(inner),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/_sim/inbox", get(sim_inbox))
            .route("/_sim/outbox", get(sim_outbox).post(sim_push_outbox))
            .route("/_sim/stats", get(sim_stats))
            .route("/_sim/reset", post(sim_reset))
            .route("/_sim/faults", get(sim_get_faults).post(sim_set_faults))
            .route("/api/{name}", post(api))
            .route("/{name}", post(api))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"ok": false, "desc": "unknown path; endpoints are POST /<Name>"})),
                )
            })
            .layer(DefaultBodyLimit::max(1 << 20))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
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

    /// The reseller with code `kode` (any case).
    pub(crate) fn reseller(&self, kode: &str) -> Option<SimReseller> {
        let inner = self.lock();
        let found = inner
            .resellers
            .iter()
            .find(|r| r.code.eq_ignore_ascii_case(kode));
        found.cloned()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("simulator state lock")
    }
}
