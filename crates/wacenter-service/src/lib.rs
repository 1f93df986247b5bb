//! What every wacenter service binary shares, so that each service's own crate holds only its
//! work:
//!
//! - [`service_main`]: parse the settings once into the service's typed configuration (one clear
//!   line and exit code 2 on a bad one), set up logs, bind the port, run until Ctrl-C/SIGTERM,
//!   finish in-flight work.
//! - [`run_consumer`] and [`serve_http`]: the life of a NATS consumer service (forwarder, reply)
//!   and of an HTTP service (ingress, callback) from connect to drain.
//! - [`ops_router`]: `/healthz`, `/readyz` and `/metrics`.
//!
//! Services take an already-bound listener: tests bind port 0 and ask the listener for its port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wacenter_bus::{Bus, Topology};
use wacenter_config::{
    CallbackConfig, ConfigError, ForwarderConfig, IngressConfig, NatsConfig, ReplyConfig, Settings,
};

/// A service's configuration, parsed once from the settings.
pub trait ServiceConfig: Sized + Send + 'static {
    fn from_settings(settings: &Settings) -> Result<Self, ConfigError>;
    /// The port the service listens on (its HTTP API, or only the ops endpoints).
    fn port(&self) -> u16;
}

macro_rules! service_config {
    ($($ty:ty),*) => {$(
        impl ServiceConfig for $ty {
            fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
                <$ty>::from_settings(settings)
            }
            fn port(&self) -> u16 {
                self.port
            }
        }
    )*};
}

service_config!(IngressConfig, ForwarderConfig, ReplyConfig, CallbackConfig);

/// Shutdown flag every service watches: true once the process should stop.
pub type Shutdown = watch::Receiver<bool>;

/// What every service binary takes on its command line: `--config` and every setting's flag.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// TOML file with settings (keys are the environment names in lower case) [env: WACENTER_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub settings: wacenter_config::SettingsArgs,
}

/// The whole life of a service binary: load the settings and parse them into `C` (one clear line
/// and exit code 2 on a bad one), set up logs, bind `C::port` on every interface, run until
/// Ctrl-C/SIGTERM, finish in-flight work.
pub fn service_main<C, F, Fut>(
    service: &'static str,
    args: ServiceArgs,
    run: F,
) -> std::process::ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let parsed = wacenter_config::load_unvalidated(&args.settings, args.config.as_deref())
        .and_then(|settings| C::from_settings(&settings).map(|config| (settings, config)));
    let (settings, config) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{service}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        wacenter_telemetry::init_logging(&settings);
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        let outcome = match bind(SocketAddr::from(([0, 0, 0, 0], config.port())), service).await {
            Ok(listener) => run(config, listener, shutdown_on_signal()).await,
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(service, "stopped");
                wacenter_telemetry::flush_traces();
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(service, error = %format!("{e:#}"), "failed");
                eprintln!("{service}: {e:#}");
                std::process::ExitCode::from(1)
            }
        }
    })
}

/// Connects to NATS as `service` (reconnecting for ever in the background).
pub async fn connect(service: &str, nats: &NatsConfig) -> anyhow::Result<Bus> {
    Ok(Bus::connect(
        &nats.url,
        service,
        Topology {
            replicas: nats.stream_replicas,
            trail_retention: nats.trail_retention,
            ..Topology::default()
        },
    )
    .await?)
}

/// The life of a consumer service (forwarder, reply): connect, serve the ops endpoints on `ops`,
/// declare the streams (waiting for NATS as long as it takes, unless asked to stop), then `work`
/// until `shutdown`, then drain the connection.
pub async fn run_consumer<F, Fut>(
    service: &'static str,
    nats: &NatsConfig,
    ops: TcpListener,
    shutdown: Shutdown,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Bus, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let bus = connect(service, nats).await?;
    let router = ops_router(service, bus_readiness(&bus));
    let ops = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(ops, router)
                .with_graceful_shutdown(wait_for(shutdown))
                .await;
        })
    };
    // NATS may be down at start: keep trying, but a stop request wins.
    tokio::select! {
        declared = bus.ensure_topology() => declared?,
        () = wait_for(shutdown.clone()) => {
            ops.await.ok();
            return Ok(());
        }
    }
    work(bus.clone(), shutdown).await?;
    bus.drain().await;
    ops.await.ok();
    Ok(())
}

/// The life of an HTTP service (ingress, callback): connect, build the router `app` makes with
/// the connection, serve it on `listener` (with each client's address) while the streams are
/// declared in the background, and drain the connection after `shutdown`.
pub async fn serve_http<F>(
    service: &'static str,
    nats: &NatsConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    app: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Bus) -> anyhow::Result<Router>,
{
    let bus = connect(service, nats).await?;
    let router = app(bus.clone())?;
    let setup = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.ensure_topology().await })
    };
    tracing::info!(addr = %listener.local_addr()?, "{service} listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wait_for(shutdown))
    .await?;
    setup.abort();
    // Bounded: with NATS unreachable it gives up (every request was answered only after its
    // publish ack, so nothing is lost).
    bus.drain().await;
    Ok(())
}

/// Zeroes `service`'s series of every OtomaX server of `lanes` (their `otomax` label), so a
/// dashboard or alert filtered to one server sees 0 before its first event.
pub fn register_servers(service: &str, lanes: &wacenter_config::Lanes) {
    for server in lanes.names() {
        wacenter_telemetry::catalogue::register_server(service, server);
    }
}

/// Readiness: `Ok` when the service can do its job, `Err(reason)` otherwise.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Ready while NATS is connected and the streams are declared.
pub fn bus_readiness(bus: &Bus) -> ReadinessCheck {
    let bus = bus.clone();
    Arc::new(move || bus.readiness())
}

/// `/healthz` (the process answers), `/readyz` (the check passes; 503 with the reason
/// otherwise) and `/metrics` (Prometheus text).
pub fn ops_router(service: &'static str, ready: ReadinessCheck) -> Router {
    let handle = wacenter_telemetry::metrics_handle();
    wacenter_telemetry::catalogue::register(service);
    Router::new()
        .route(
            "/healthz",
            get(move || async move { Json(status_body(service, "ok", None)) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (StatusCode::OK, Json(status_body(service, "ready", None))),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(status_body(service, "not ready", Some(reason))),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        )
}

fn status_body(
    service: &str,
    status: &str,
    reason: Option<String>,
) -> std::collections::BTreeMap<&'static str, String> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("service", service.to_string());
    m.insert("status", status.to_string());
    if let Some(r) = reason {
        m.insert("reason", r);
    }
    m
}

/// Binds a listener, with an error that names the service and the port.
pub async fn bind(addr: SocketAddr, service: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{service} cannot listen on {addr}: {e} (is another process using the port?)"),
        )
    })
}

/// A listener on a free loopback port, for tests and embedded services.
pub async fn bind_loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn wait_for(mut shutdown: Shutdown) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A shutdown flag that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> Shutdown {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down: finishing in-flight work");
        let _ = tx.send(true);
    });
    rx
}
