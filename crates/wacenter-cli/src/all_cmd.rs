//! `wacenter all`: the four services in one process.

use std::process::ExitCode;

use tracing::error;
use wacenter_config::{Role, Settings};

use crate::{Common, EXIT_USAGE};

pub async fn run(common: Common) -> anyhow::Result<ExitCode> {
    let mut settings: Option<Settings> = None;
    for role in [Role::Ingress, Role::Forwarder, Role::Reply, Role::Callback] {
        match wacenter_config::load(&common.settings, common.config.as_deref(), role) {
            Ok(s) => settings = Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let settings = settings.expect("validated for every role");
    wacenter_telemetry::init_logging(&settings);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting ingress, forwarder, reply and callback in one process"
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let signal = wacenter_telemetry::shutdown_on_signal();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            wacenter_telemetry::wait_for(signal).await;
            let _ = stop.send(true);
        });
    }
    let services = [
        (
            "ingress",
            tokio::spawn(wacenter_ingress::run(settings.clone(), shutdown.clone())),
        ),
        (
            "forwarder",
            tokio::spawn(wacenter_forwarder::run(settings.clone(), shutdown.clone())),
        ),
        (
            "reply",
            tokio::spawn(wacenter_reply::run(settings.clone(), shutdown.clone())),
        ),
        (
            "callback",
            tokio::spawn(wacenter_callback::run(settings.clone(), shutdown.clone())),
        ),
    ];
    let mut failed = false;
    for (name, handle) in services {
        let outcome = handle.await;
        let problem = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            // One service down means the process is not what the operator asked for: stop all.
            error!(service = name, error = %problem, "service failed; stopping the others");
            eprintln!("error: {name}: {problem}");
            failed = true;
            let _ = stop.send(true);
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
