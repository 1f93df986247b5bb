//! The `wacenter-forwarder` binary: settings, logs, signals; the work is in the library.

use clap::Parser;

/// Consumes queued WhatsApp messages and forwards each exactly once to OtomaX InsertInbox (never after _exp), then queues OtomaX's auto-reply. Run as many replicas as you like: they share one durable consumer.
///
/// Settings come from (later wins) built-in defaults, a TOML file (--config or WACENTER_CONFIG),
/// environment variables and flags. Every service serves /healthz, /readyz and /metrics.
#[derive(Parser)]
#[command(name = "wacenter-forwarder", version)]
struct Cli {
    #[command(flatten)]
    args: wacenter_service::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    wacenter_service::service_main("wacenter-forwarder", cli.args, wacenter_forwarder::run)
}
