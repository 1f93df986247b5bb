//! The `wacenter-reply` binary: settings, logs, signals; the work is in the library.

use clap::Parser;

/// Sends queued WhatsApp messages (auto-replies and OtomaX outbox rows) exactly once through GOWA or the Meta Cloud API, and reports outbox deliveries to OtomaX.
///
/// Settings come from (later wins) built-in defaults, a TOML file (--config or WACENTER_CONFIG),
/// environment variables and flags. Every service serves /healthz, /readyz and /metrics.
#[derive(Parser)]
#[command(name = "wacenter-reply", version)]
struct Cli {
    #[command(flatten)]
    args: wacenter_service::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    wacenter_service::service_main("wacenter-reply", cli.args, wacenter_reply::run)
}
