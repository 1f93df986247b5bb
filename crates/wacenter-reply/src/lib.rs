//! The reply service: consumes `wa.outbound.>` (auto-replies and OtomaX outbox rows) and sends
//! each message once through the configured WhatsApp provider, through the account that received
//! the original. Rate limits and transient errors are retried with back-off (Meta's per-recipient
//! limit holds back that recipient only); permanent failures are dead-lettered; outbox rows are
//! reported to OtomaX with UpdateStatusOutbox (20 delivered, 40 failed).

mod handler;

pub use handler::Replier;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use wacenter_bus::{Bus, Topology};
use wacenter_config::Settings;

/// Runs the reply service until `shutdown`, then finishes in-flight sends.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let bus = Bus::connect(
        &settings.nats_url,
        "reply",
        Topology {
            replicas: settings.nats_stream_replicas,
            ..Topology::default()
        },
    )
    .await?;
    let ready = {
        let bus = bus.clone();
        Arc::new(move || bus.readiness())
    };
    let ops = wacenter_telemetry::serve_ops(
        "reply",
        SocketAddr::from(([0, 0, 0, 0], settings.reply_port)),
        ready,
        shutdown.clone(),
    )
    .await?;
    // NATS may be down at start: keep trying, but a stop request wins.
    tokio::select! {
        declared = bus.ensure_topology() => declared?,
        () = wacenter_telemetry::wait_for(shutdown.clone()) => {
            ops.await.ok();
            return Ok(());
        }
    }
    let replier = Replier::new(&settings, bus.clone()).await?;
    replier.run(shutdown).await;
    bus.drain().await;
    ops.await.ok();
    Ok(())
}
