//! The `wacenter-callback` binary: settings, logs, signals; the work is in the library.

use clap::Parser;

/// Receives OtomaX outbox callbacks (POST /otomax/callback) and serves the /otomax/* REST API and /otomax/health.
///
/// Settings come from (later wins) built-in defaults, a TOML file (--config or WACENTER_CONFIG),
/// environment variables and flags. Every service serves /healthz, /readyz and /metrics.
#[derive(Parser)]
#[command(name = "wacenter-callback", version)]
struct Cli {
    #[command(flatten)]
    args: wacenter_service::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    wacenter_service::service_main("wacenter-callback", cli.args, wacenter_callback::run)
}
