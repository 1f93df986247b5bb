//! The forwarder: a durable pull consumer shared by every replica. For each inbound WhatsApp
//! message it applies the forwarding flags, claims the message id (so it is forwarded once even
//! when a provider re-delivers it days later), calls OtomaX InsertInbox under the retry policy and
//! never after `_exp`, publishes the auto-reply, and dead-letters what cannot succeed.

mod flags;
mod handler;

pub use flags::{skip_reason, ForwardingFlags};
pub use handler::Forwarder;

use std::net::SocketAddr;

use tokio::sync::watch;
use wacenter_bus::{Bus, Topology};
use wacenter_config::Settings;
use wacenter_proto::names;

/// Runs the forwarder until `shutdown` turns true, then finishes in-flight messages.
pub async fn run(settings: Settings, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let bus = Bus::connect(&settings.nats_url, "forwarder", topology(&settings)).await?;
    let ops = wacenter_telemetry::serve_ops(
        "forwarder",
        SocketAddr::from(([0, 0, 0, 0], settings.forwarder_port)),
        readiness(&bus),
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
    let forwarder = Forwarder::new(&settings, bus.clone()).await?;
    forwarder.run(shutdown).await;
    bus.drain().await;
    ops.await.ok();
    Ok(())
}

/// The consumer's ack wait must outlast the gap between progress acks; `_exp` bounds the work.
pub fn topology(settings: &Settings) -> Topology {
    Topology {
        replicas: settings.nats_stream_replicas,
        ..Topology::default()
    }
}

fn readiness(bus: &Bus) -> wacenter_telemetry::ReadinessCheck {
    let bus = bus.clone();
    std::sync::Arc::new(move || bus.readiness())
}

/// Name of the durable consumer every replica binds.
pub const CONSUMER: &str = names::FORWARDER_CONSUMER;
