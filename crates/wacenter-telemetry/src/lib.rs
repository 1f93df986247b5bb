//! Telemetry shared by every wacenter service: log set-up (`LOG_FORMAT`, `RUST_LOG`, `--debug`),
//! the Prometheus recorder, and the ops router (`/healthz`, `/readyz`, `/metrics`).

pub mod catalogue;

use std::sync::{Arc, OnceLock};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use wacenter_config::{LogFormat, Settings};

/// wacenter's own crates: `--debug` turns these to debug without flooding the log with HTTP
/// and NATS client internals.
const OWN_CRATES: &[&str] = &[
    "wacenter",
    "wacenter_otomax",
    "wacenter_ingress",
    "wacenter_forwarder",
    "wacenter_reply",
    "wacenter_callback",
    "wacenter_bus",
    "wacenter_whatsapp",
    "wacenter_sim",
];

/// Installs the global log subscriber once (later calls are no-ops, so `wacenter all` and tests
/// can call it per service). `RUST_LOG` wins over `--debug`.
pub fn init_logging(settings: &Settings) {
    init(settings, true);
}

/// Installs logging (when `logs`) and tracing, once per process. Tracing is always on so trace
/// context propagates through NATS and HTTP; spans are exported only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Tests pass `logs = false` to keep their output clean.
pub fn init(settings: &Settings, logs: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| EnvFilter::try_new(v).ok())
            .unwrap_or_else(|| {
                let level = if settings.debug { "debug" } else { "info" };
                let mut directives = String::from("warn");
                for c in OWN_CRATES {
                    directives.push_str(&format!(",{c}={level}"));
                }
                EnvFilter::new(directives)
            });
        // Colours only for a person at a terminal, never in files or log collectors.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        let fmt = match settings.log_format {
            LogFormat::Json => fmt
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .boxed(),
            LogFormat::Text => fmt.with_target(false).boxed(),
        };
        let fmt = fmt.with_filter(if logs { filter } else { EnvFilter::new("off") });
        let service = std::env::args()
            .next()
            .and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "wacenter".into());
        let endpoint =
            Some(settings.otel_exporter_otlp_endpoint.as_str()).filter(|e| !e.is_empty());
        let mut own = Targets::new().with_default(LevelFilter::OFF);
        for c in OWN_CRATES {
            own = own.with_target(*c, LevelFilter::INFO);
        }
        let Some(endpoint) = endpoint else {
            // Nobody receives spans: none are built; wacenter_trace::in_trace carries the trace
            // id on by itself.
            let _ = tracing_subscriber::registry().with(fmt).try_init();
            return;
        };
        match wacenter_trace::layer(&service, Some(endpoint)) {
            Ok((otel, provider)) => {
                let _ = TRACER_PROVIDER.set(provider);
                let _ = tracing_subscriber::registry()
                    .with(fmt)
                    .with(otel.with_filter(own))
                    .try_init();
            }
            Err(e) => {
                let _ = tracing_subscriber::registry().with(fmt).try_init();
                tracing::error!(error = %e, "traces will not be exported");
            }
        }
    });
}

/// Kept so buffered spans can be flushed at exit.
static TRACER_PROVIDER: OnceLock<wacenter_trace::TracerProvider> = OnceLock::new();

/// Sends the spans still buffered (call once at the very end of a process).
pub fn flush_traces() {
    if let Some(p) = TRACER_PROVIDER.get() {
        let _ = p.force_flush();
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
                .expect("static buckets are valid");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding several services);
            // then this handle still renders what is recorded through it.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok();
            handle
        })
        .clone()
}

/// Readiness: `Ok` when the service can do its job, `Err(reason)` otherwise.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// `/healthz` (the process answers), `/readyz` (the check passes; 503 with the reason
/// otherwise) and `/metrics` (Prometheus text).
pub fn ops_router(service: &'static str, ready: ReadinessCheck) -> Router {
    let handle = metrics_handle();
    catalogue::register(service);
    Router::new()
        .route(
            "/healthz",
            get(move || async move { Json(serde_json_lite(service, "ok", None)) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (
                            StatusCode::OK,
                            Json(serde_json_lite(service, "ready", None)),
                        ),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json_lite(service, "not ready", Some(reason))),
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

fn serde_json_lite(
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

/// Binds `addr` and serves the ops router until `shutdown` turns true. Binding happens before
/// this returns, so a taken port stops start-up with a clear error.
pub async fn serve_ops(
    service: &'static str,
    addr: std::net::SocketAddr,
    ready: ReadinessCheck,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = bind(addr, service).await?;
    let router = ops_router(service, ready);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(wait_for(shutdown))
            .await;
    }))
}

/// Binds a listener, with an error that names the service and the port.
pub async fn bind(
    addr: std::net::SocketAddr,
    service: &str,
) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{service} cannot listen on {addr}: {e} (is another process using the port?)"),
        )
    })
}

/// Resolves once `shutdown` is true.
pub async fn wait_for(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A shutdown flag that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
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

/// What every service binary takes on its command line: `--config` and every setting's flag.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// TOML file with settings (keys are the environment names in lower case) [env: WACENTER_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub settings: wacenter_config::SettingsArgs,
}

/// The whole life of a service binary: load and validate settings (one clear line and exit
/// code 2 on a bad one), set up logs, run until Ctrl-C/SIGTERM, finish in-flight work.
pub fn service_main<F, Fut>(
    service: &'static str,
    role: wacenter_config::Role,
    args: ServiceArgs,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(Settings, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let settings = match wacenter_config::load(&args.settings, args.config.as_deref(), role) {
        Ok(s) => s,
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
        init_logging(&settings);
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        let shutdown = shutdown_on_signal();
        match run(settings, shutdown).await {
            Ok(()) => {
                tracing::info!(service, "stopped");
                flush_traces();
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
