//! The reply service: consumes `wa.outbound.>` (auto-replies and OtomaX outbox rows) and sends
//! each message once through the configured WhatsApp provider, through the account that received
//! the original. Rate limits and transient errors are retried with back-off (Meta's per-recipient
//! limit holds back that recipient only); permanent failures are dead-lettered; outbox rows are
//! reported to OtomaX with UpdateStatusOutbox (20 delivered, 40 failed).

mod handler;
mod pacing;

pub use handler::Replier;
pub use wacenter_config::ReplyConfig;

use tokio::net::TcpListener;
use wacenter_service::Shutdown;

/// Runs the reply service (its ops endpoints on `ops`) until `shutdown`, then finishes
/// in-flight sends.
pub async fn run(config: ReplyConfig, ops: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let nats = config.nats.clone();
    wacenter_service::register_servers("reply", &config.lanes);
    wacenter_service::run_consumer("reply", &nats, ops, shutdown, |bus, shutdown| async move {
        Replier::new(&config, bus).await?.run(shutdown).await;
        Ok(())
    })
    .await
}
