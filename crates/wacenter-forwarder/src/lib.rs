//! The forwarder: a durable pull consumer shared by every replica. For each inbound WhatsApp
//! message it applies the forwarding flags, claims the message id (so it is forwarded once even
//! when a provider re-delivers it days later), calls OtomaX InsertInbox under the retry policy and
//! never after `_exp`, publishes the auto-reply, and dead-letters what cannot succeed.

mod flags;
mod handler;

pub use flags::skip_reason;
pub use handler::Forwarder;
pub use wacenter_config::{ForwarderConfig, ForwardingFlags};

use tokio::net::TcpListener;
use wacenter_proto::names;
use wacenter_service::Shutdown;

/// Runs the forwarder (its ops endpoints on `ops`) until `shutdown`, then finishes in-flight
/// messages.
pub async fn run(
    config: ForwarderConfig,
    ops: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let nats = config.nats.clone();
    let lanes = config
        .routing
        .as_ref()
        .map(wacenter_config::RoutingTable::lanes)
        .unwrap_or_default();
    wacenter_service::register_servers("forwarder", &lanes);
    wacenter_service::run_consumer(
        "forwarder",
        &nats,
        ops,
        shutdown,
        |bus, shutdown| async move {
            Forwarder::new(&config, bus).await?.run(shutdown).await;
            Ok(())
        },
    )
    .await
}

/// Name of the durable consumer every replica binds.
pub const CONSUMER: &str = names::FORWARDER_CONSUMER;
