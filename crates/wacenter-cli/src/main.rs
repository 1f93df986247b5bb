//! `wacenter`: the operator's command line.

mod all_cmd;
mod dlq_cmd;
mod otomax_cmd;
mod sim_cmd;
mod trace_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wacenter_config::SettingsArgs;

/// wacenter connects WhatsApp to OtomaX. This tool runs the simulators, talks to OtomaX by hand
/// and signs requests so you can check the HMAC implementation.
///
/// Settings come from (later wins) built-in defaults, a TOML file (--config or WACENTER_CONFIG),
/// environment variables and flags.
#[derive(Parser)]
#[command(name = "wacenter", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every subcommand that uses them.
#[derive(clap::Args, Clone, Default)]
pub struct Common {
    /// TOML file with settings (keys are the environment names in lower case) [env: WACENTER_CONFIG]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Talk to OtomaX by hand: sign a body, call any endpoint.
    Otomax {
        #[command(subcommand)]
        command: otomax_cmd::OtomaxCommand,
    },
    /// Run the four services (ingress, forwarder, reply, callback) in one process, still talking
    /// through NATS: the simplest deployment for one small server.
    All {
        /// Which services to run (comma-separated), e.g. `--services ingress,callback` on an
        /// edge box and `--services forwarder,reply` on a worker box.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "ingress,forwarder,reply,callback"
        )]
        services: Vec<all_cmd::Service>,
        #[command(flatten)]
        common: Common,
    },
    /// Measure the whole pipeline against a no-bus baseline, at a fixed rate, at full speed and
    /// with 1, 2 and 4 forwarder replicas; writes bench/results/latest.json and a table.
    Bench {
        #[command(flatten)]
        args: wacenter_bench::BenchArgs,
    },
    /// See and re-drive dead letters (messages that could not succeed).
    Dlq {
        #[command(subcommand)]
        command: dlq_cmd::DlqCommand,
    },
    /// One message's timeline from the trail: a WhatsApp message id, a phone number (its
    /// recent messages), a kode_inbox or an outbox kode.
    Trace {
        #[command(flatten)]
        args: trace_cmd::TraceArgs,
    },
    /// Run a simulator (OtomaX or a GOWA WhatsApp gateway) for demos, tests and benchmarks.
    Sim {
        #[command(subcommand)]
        command: sim_cmd::SimCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::All { services, common } => all_cmd::run(services, common).await,
            Command::Bench { args } => wacenter_bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Dlq { command } => dlq_cmd::run(command).await,
            Command::Otomax { command } => otomax_cmd::run(command).await,
            Command::Sim { command } => sim_cmd::run(command).await,
            Command::Trace { args } => trace_cmd::run(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Exit code for settings problems and bad arguments (like clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;
