//! Telemetry shared by every wacenter process: log set-up (`LOG_FORMAT`, `RUST_LOG`, `--debug`),
//! trace export, the Prometheus recorder and the metric catalogue. The ops endpoints that serve
//! them are `wacenter-service`'s.

pub mod catalogue;

use std::sync::OnceLock;

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
