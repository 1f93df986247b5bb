//! The `wacenter-ingress` binary: settings, logs, signals; the work is in the library.

use clap::Parser;

/// Receives WhatsApp provider webhooks (GOWA: POST /webhook/gowa, Meta: GET/POST /webhook/meta), verifies their signatures and queues each chat message on NATS JetStream.
///
/// Settings come from (later wins) built-in defaults, a TOML file (--config or WACENTER_CONFIG),
/// environment variables and flags. Every service serves /healthz, /readyz and /metrics.
#[derive(Parser)]
#[command(name = "wacenter-ingress", version)]
struct Cli {
    #[command(flatten)]
    args: wacenter_service::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    wacenter_service::service_main("wacenter-ingress", cli.args, wacenter_ingress::run)
}
