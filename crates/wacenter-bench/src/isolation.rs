//! Several OtomaX servers in one deployment (spec §3a), measured.
//!
//! * **Isolation**: two servers, `default` (the bench's OtomaX simulator, which the measured
//!   load goes to) and `makmur` (a second simulator in this process, with its own credentials,
//!   fed a steady side load through its own WhatsApp number). The measured load runs twice at a
//!   fixed rate (latency) and twice at full speed (throughput): once with both servers healthy,
//!   once with makmur down (every call answered 503, so each of its messages holds a forwarder
//!   slot through its retries). A server that is down must cost the other nothing.
//! * **A large table**: 100 servers × 2 accounts. How long the four services take to be ready,
//!   how many consumers they bind, what they and nats-server hold in memory, and that a message
//!   to the last server's last number is answered through that number.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use wacenter_sim::demo;

use crate::load::{self, Sequence, Target};
use crate::report::round2;

/// The second server's name, credentials and WhatsApp number.
pub const OTHER_SERVER: &str = "makmur";
const OTHER_APP_ID: &str = "Makmur";
const OTHER_APP_KEY: &str = "makmur-app-key";
const OTHER_DEV_KEY: &str = "makmur-dev-key";
const OTHER_SECRET: &str = "makmur-callback-secret";
pub const OTHER_DEVICE: &str = "628555000002@s.whatsapp.net";

/// Messages a second offered to the other server throughout every isolation run.
pub const SIDE_LOAD_PER_S: u32 = 50;

/// The isolation figures (`isolation` in `bench/results/latest.json`).
#[derive(Debug, Clone, Serialize)]
pub struct IsolationSummary {
    /// The healthy server's p99 end to end (fixed rate) and throughput (full speed) while the
    /// other server is down: the mean of two runs each, alternating with the all-healthy ones.
    pub healthy_p99_ms: f64,
    pub healthy_msgs_per_s: f64,
    /// The same with both servers healthy.
    pub baseline_p99_ms: f64,
    pub baseline_msgs_per_s: f64,
    /// healthy ÷ baseline: the target is p99 ≤ 1.2 and throughput ≥ 0.9.
    pub p99_ratio: f64,
    pub throughput_ratio: f64,
    /// What the other server did during the degraded runs.
    pub other_server: String,
    /// Messages a second offered to the other server during every run.
    pub other_server_msgs_per_s: u32,
    /// The fixed-rate runs' rate, the full-speed runs' window, and each run's length.
    pub fixed_rate: u32,
    pub window: usize,
    pub seconds_per_run: u64,
    /// The healthy server's messages without a reply in the degraded runs.
    pub healthy_lost: u64,
    pub runs: Vec<IsolationRun>,
}

/// One isolation run, as measured.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationRun {
    pub label: String,
    pub msgs_per_s: f64,
    pub p99_ms: f64,
    pub p50_ms: f64,
    pub sent: u64,
    pub replied: u64,
    pub lost: u64,
    /// Side-load messages ingress accepted for the other server during the run.
    pub other_server_sent: u64,
}

impl IsolationSummary {
    pub fn of(
        runs: Vec<IsolationRun>,
        fixed_rate: u32,
        window: usize,
        seconds_per_run: u64,
    ) -> Self {
        // Each condition ran twice: the mean of its runs.
        let mean = |label: &str, of: fn(&IsolationRun) -> f64| {
            let values: Vec<f64> = runs.iter().filter(|r| r.label == label).map(of).collect();
            round2(values.iter().sum::<f64>() / values.len().max(1) as f64)
        };
        let (healthy_p99_ms, healthy_msgs_per_s) = (
            mean(DOWN_FIXED, |r| r.p99_ms),
            mean(DOWN_WINDOW, |r| r.msgs_per_s),
        );
        let (baseline_p99_ms, baseline_msgs_per_s) = (
            mean(BOTH_FIXED, |r| r.p99_ms),
            mean(BOTH_WINDOW, |r| r.msgs_per_s),
        );
        let ratio = |a: f64, b: f64| if b > 0.0 { round2(a / b) } else { 0.0 };
        let healthy_lost = runs
            .iter()
            .filter(|r| r.label == DOWN_FIXED || r.label == DOWN_WINDOW)
            .map(|r| r.lost)
            .sum();
        Self {
            healthy_p99_ms,
            healthy_msgs_per_s,
            baseline_p99_ms,
            baseline_msgs_per_s,
            p99_ratio: ratio(healthy_p99_ms, baseline_p99_ms),
            throughput_ratio: ratio(healthy_msgs_per_s, baseline_msgs_per_s),
            other_server: "down: every call answered 503".into(),
            other_server_msgs_per_s: SIDE_LOAD_PER_S,
            fixed_rate,
            window,
            seconds_per_run,
            healthy_lost,
            runs,
        }
    }
}

/// The fixed-rate runs' highest rate (`--rate` when lower): half the main fixed-rate run's, so
/// that the side load and a server's retries fit on two cores and a difference is the other
/// server's doing.
pub const FIXED_RATE: u32 = 500;

pub const BOTH_FIXED: &str = "both healthy, fixed rate";
pub const BOTH_WINDOW: &str = "both healthy, full speed";
pub const DOWN_FIXED: &str = "makmur down, fixed rate";
pub const DOWN_WINDOW: &str = "makmur down, full speed";

/// The large-table figures (`routing_scale` in `bench/results/latest.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TableScaleSummary {
    pub servers: usize,
    pub accounts: usize,
    /// From starting the four services to all of them ready (every consumer bound).
    pub startup_s: f64,
    /// Durable consumers on the work queues once everything is ready.
    pub inbound_consumers: usize,
    pub outbound_consumers: usize,
    /// Resident memory of each service and of nats-server, ready and idle.
    pub rss_mb: BTreeMap<String, f64>,
    /// A message to the last server's last number was answered through that number.
    pub last_account_answered: bool,
}

/// The other server: an OtomaX simulator in this process with its own credentials, knowing the
/// bench's resellers. Its base URL; it runs as long as the bench.
pub async fn start_other_server(resellers_file: &Path) -> anyhow::Result<String> {
    let resellers = wacenter_sim::otomax::load_resellers_file(resellers_file)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sim = wacenter_sim::otomax::OtomaxSim::new(wacenter_sim::otomax::OtomaxSimConfig {
        app_id: OTHER_APP_ID.into(),
        app_key: OTHER_APP_KEY.into(),
        dev_key: OTHER_DEV_KEY.into(),
        ..demo::otomax(resellers, Duration::from_millis(300))
    });
    let addr = sim.spawn(0).await?;
    Ok(format!("http://{addr}/"))
}

/// One `[[otomax]]` table of the bench's config file.
pub struct ServerEntry {
    pub name: String,
    pub api_url: String,
    pub app_id: String,
    pub app_key: String,
    pub dev_key: String,
    pub callback_secret: String,
}

impl ServerEntry {
    /// The bench's own OtomaX simulator, as the server `name`.
    pub fn bench_sim(name: &str, api_url: &str) -> Self {
        Self {
            name: name.into(),
            api_url: api_url.into(),
            app_id: demo::APP_ID.into(),
            app_key: demo::APP_KEY.into(),
            dev_key: demo::DEV_KEY.into(),
            callback_secret: demo::CALLBACK_SECRET.into(),
        }
    }

    pub fn other(api_url: &str) -> Self {
        Self {
            name: OTHER_SERVER.into(),
            api_url: api_url.into(),
            app_id: OTHER_APP_ID.into(),
            app_key: OTHER_APP_KEY.into(),
            dev_key: OTHER_DEV_KEY.into(),
            callback_secret: OTHER_SECRET.into(),
        }
    }
}

/// The routing table as a TOML config file: `servers`, and `accounts` as (GOWA device, server,
/// terminal). Every value is ASCII without quotes or backslashes.
pub fn write_table(
    path: &Path,
    servers: &[ServerEntry],
    accounts: &[(String, String, i64)],
) -> anyhow::Result<()> {
    use std::fmt::Write;
    let mut toml = String::new();
    for s in servers {
        let _ = write!(
            toml,
            "[[otomax]]\nname = \"{}\"\napi_url = \"{}\"\napp_id = \"{}\"\napp_key = \"{}\"\ndev_key = \"{}\"\ncallback_secret = \"{}\"\n\n",
            s.name, s.api_url, s.app_id, s.app_key, s.dev_key, s.callback_secret
        );
    }
    for (id, server, terminal) in accounts {
        let _ = write!(
            toml,
            "[[account]]\nid = \"{id}\"\nprovider = \"gowa\"\notomax = \"{server}\"\nkode_terminal = {terminal}\n\n"
        );
    }
    std::fs::write(path, toml)?;
    Ok(())
}

/// A steady stream of purchase commands to `device` until `stop`: `per_s` a second, each posted
/// without waiting for the last (a down server must not slow the offer). The number ingress
/// accepted.
pub async fn side_load(
    target: &Target,
    seqs: &Sequence,
    device: &'static str,
    per_s: u32,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let accepted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_s.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let Ok(seq) = seqs.next() else { break };
        let (target, accepted) = (target.clone(), accepted.clone());
        tokio::spawn(async move {
            let id = format!("SIDE{}{seq:09}", target.run_id);
            let phone = target.phone(seq).to_string();
            if target
                .post_gowa(device, &id, &phone, &load::command_text(seq))
                .await
                .is_ok()
            {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    accepted.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits until every consumer of `servers`' lanes exists on NATS; how many there are then.
pub async fn wait_consumers(
    nats_url: &str,
    servers: &[String],
    limit: Duration,
) -> anyhow::Result<(usize, usize)> {
    use futures::StreamExt;
    let client = async_nats::connect(nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    loop {
        let mut counts = (0, 0);
        for (stream, count) in [
            (wacenter_proto::names::INBOUND_STREAM, &mut counts.0),
            (wacenter_proto::names::OUTBOUND_STREAM, &mut counts.1),
        ] {
            if let Ok(stream) = js.get_stream(stream).await {
                let names: Vec<_> = stream.consumer_names().collect().await;
                *count = names.iter().filter(|n| n.is_ok()).count();
            }
        }
        if counts.0 >= servers.len() && counts.1 >= servers.len() {
            return Ok(counts);
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "only {} of {} forwarder and {} of {} reply consumers after {:?}",
            counts.0,
            servers.len(),
            counts.1,
            servers.len(),
            limit
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
