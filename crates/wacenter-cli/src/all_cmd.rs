//! `wacenter all`: the four services in one process.

use std::process::ExitCode;

use tracing::error;
use wacenter_config::{
    CallbackConfig, ConfigError, ForwarderConfig, IngressConfig, ReplyConfig, Settings,
};

use crate::{Common, EXIT_USAGE};

/// A service `wacenter all` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Ingress,
    Forwarder,
    Reply,
    Callback,
}

/// A service with its configuration, parsed before anything starts.
enum Configured {
    Ingress(IngressConfig),
    Forwarder(ForwarderConfig),
    Reply(ReplyConfig),
    Callback(CallbackConfig),
}

impl Configured {
    fn parse(service: Service, settings: &Settings) -> Result<Self, ConfigError> {
        Ok(match service {
            Service::Ingress => Self::Ingress(IngressConfig::from_settings(settings)?),
            Service::Forwarder => Self::Forwarder(ForwarderConfig::from_settings(settings)?),
            Service::Reply => Self::Reply(ReplyConfig::from_settings(settings)?),
            Service::Callback => Self::Callback(CallbackConfig::from_settings(settings)?),
        })
    }

    fn port(&self) -> u16 {
        match self {
            Self::Ingress(c) => c.port,
            Self::Forwarder(c) => c.port,
            Self::Reply(c) => c.port,
            Self::Callback(c) => c.port,
        }
    }

    fn spawn(
        self,
        listener: tokio::net::TcpListener,
        shutdown: wacenter_service::Shutdown,
    ) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        match self {
            Self::Ingress(c) => tokio::spawn(wacenter_ingress::run(c, listener, shutdown)),
            Self::Forwarder(c) => tokio::spawn(wacenter_forwarder::run(c, listener, shutdown)),
            Self::Reply(c) => tokio::spawn(wacenter_reply::run(c, listener, shutdown)),
            Self::Callback(c) => tokio::spawn(wacenter_callback::run(c, listener, shutdown)),
        }
    }
}

pub async fn run(services: Vec<Service>, common: Common) -> anyhow::Result<ExitCode> {
    if services.is_empty() {
        eprintln!("error: --services names no service");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let settings =
        match wacenter_config::load_unvalidated(&common.settings, common.config.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        };
    let mut configured = Vec::new();
    for service in &services {
        match Configured::parse(*service, &settings) {
            Ok(c) => configured.push((*service, c)),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        }
    }
    wacenter_telemetry::init_logging(&settings);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting ingress, forwarder, reply and callback in one process"
    );
    // Every port is bound before anything starts: a taken port stops start-up at once.
    let mut bound = Vec::new();
    for (service, config) in configured {
        let name = format!("{service:?}").to_lowercase();
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.port()));
        let listener = wacenter_service::bind(addr, &name).await?;
        bound.push((name, config, listener));
    }
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let signal = wacenter_service::shutdown_on_signal();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            wacenter_service::wait_for(signal).await;
            let _ = stop.send(true);
        });
    }
    let handles: Vec<_> = bound
        .into_iter()
        .map(|(name, config, listener)| (name, config.spawn(listener, shutdown.clone())))
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
