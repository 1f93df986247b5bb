//! `wacenter all`: the four services in one process.

use std::process::ExitCode;

use tracing::error;
use wacenter_config::{Role, Settings};

use crate::{Common, EXIT_USAGE};

/// A service `wacenter all` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Ingress,
    Forwarder,
    Reply,
    Callback,
}

impl Service {
    fn role(self) -> Role {
        match self {
            Self::Ingress => Role::Ingress,
            Self::Forwarder => Role::Forwarder,
            Self::Reply => Role::Reply,
            Self::Callback => Role::Callback,
        }
    }
}

pub async fn run(services: Vec<Service>, common: Common) -> anyhow::Result<ExitCode> {
    let mut settings: Option<Settings> = None;
    for role in services.iter().map(|s| s.role()) {
        match wacenter_config::load(&common.settings, common.config.as_deref(), role) {
            Ok(s) => settings = Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    let Some(settings) = settings else {
        eprintln!("error: --services names no service");
        return Ok(ExitCode::from(EXIT_USAGE));
    };
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
    let handles: Vec<_> = services
        .iter()
        .map(|service| {
            let (settings, shutdown) = (settings.clone(), shutdown.clone());
            let handle = match service {
                Service::Ingress => tokio::spawn(wacenter_ingress::run(settings, shutdown)),
                Service::Forwarder => tokio::spawn(wacenter_forwarder::run(settings, shutdown)),
                Service::Reply => tokio::spawn(wacenter_reply::run(settings, shutdown)),
                Service::Callback => tokio::spawn(wacenter_callback::run(settings, shutdown)),
            };
            (format!("{service:?}").to_lowercase(), handle)
        })
        .collect();
    let mut failed = false;
    for (name, handle) in handles {
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
