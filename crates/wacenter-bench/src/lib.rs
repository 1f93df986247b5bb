//! `wacenter bench`: starts (or uses) NATS, the four services and both simulators on loopback,
//! drives WhatsApp messages through the whole pipeline (signed webhook → ingress → forwarder →
//! OtomaX simulator → auto-reply → reply service → WhatsApp simulator) and measures:
//!
//! * **fixed rate** (`--rate`, default 1,000/s, open loop): end-to-end latency (webhook sent →
//!   reply recorded by the WhatsApp simulator) and ingress acknowledgement latency, peak RSS and
//!   CPU of every process;
//! * **full speed** (closed loop, `--window` messages in flight end to end): sustained
//!   end-to-end messages per second;
//! * **baseline**: the same number of messages, same window, sent straight to the simulators
//!   (InsertInbox, then the auto-reply to `/send/message`), no bus; the ratio pipeline / baseline;
//! * **the bus alone**: the same messages making only the pipeline's NATS traffic (its six
//!   acknowledged writes, five trail writes, two deliveries and two acks), no service logic, no
//!   HTTP. With the baseline's CPU per message it bounds the ratio: everything shares the same
//!   cores, so a pipeline cannot pass cores ÷ (CPU it must spend per message), and it must
//!   spend at least its three HTTP requests and this (`floor_ratio`: how close it comes);
//! * **durable**: the pipeline again on a nats-server that syncs every write to disk before
//!   acknowledging it (`sync_interval: always`): throughput and latency;
//! * **without the trail**: the pipeline again with `TRAIL_RETENTION_DAYS=0`: what the trail
//!   costs;
//! * **trail**: a week of the message trail at 100,000 messages a day on a fresh nats-server:
//!   its memory after a restart, its bytes on disk per message, and one lookup by each kind of
//!   query;
//! * **retention**: nats-server memory for the idempotency records alive at 100,000 messages a
//!   day (built from the run's own records on a fresh server, measured after a restart), and
//!   the store per message;
//! * **scale-out**: OtomaX answering in 100 ms, `FORWARDER_CONCURRENCY=8`, msgs/s with 1, 2, 4
//!   and 8 forwarder processes, each run on a fresh nats-server.
//!
//! Results go to `--out` (JSON) and a table on stdout (also saved next to the JSON as `.txt`).
//! Every service, nats-server and (by default) each simulator is its own process, so memory and
//! CPU come from `/proc/<pid>`. Only 127.0.0.1 is ever contacted; every run is bounded in time
//! and messages.

mod baseline;
mod floor;
mod isolation;
mod load;
mod phases;
mod report;
mod retention;
mod stack;
mod trail;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::load::{RunResult, RunSpec, Sequence, Target};
use crate::report::{round2, round3, Machine, RunSummary};
use crate::stack::{Binaries, Nats, Sims, Stack};
use wacenter_test_support::procs::{load_average, ProcSample};

pub use crate::report::Pcts;

/// Options of `wacenter bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Short runs: the whole bench finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Messages per second of the fixed-rate runs (their latency is the one reported as
    /// `latency_ms`, and as `latency_ms_at_1000` at 1000).
    #[arg(long, default_value_t = 1000, value_name = "MSGS_PER_S")]
    pub rate: u32,
    /// Length of the fixed-rate and of the full-speed run [default: 20, 5 with --quick].
    #[arg(long, value_name = "SECONDS")]
    pub duration_seconds: Option<u64>,
    /// Length of each scale-out run [default: 10, 4 with --quick].
    #[arg(long, value_name = "SECONDS")]
    pub scale_out_seconds: Option<u64>,
    /// Messages in flight end to end in the full-speed run and the baseline.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub window: usize,
    /// Forwarder replicas of the scale-out runs (comma-separated; empty skips them).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8",
        value_name = "N,N,…"
    )]
    pub scale_out: Vec<usize>,
    /// Skip the scale-out runs.
    #[arg(long)]
    pub no_scale_out: bool,
    /// Where the JSON results go (the table is saved next to it as .txt).
    #[arg(long, default_value = "bench/results/latest.json", value_name = "PATH")]
    pub out: PathBuf,
    /// Use this NATS (loopback only, e.g. nats://127.0.0.1:4222) instead of starting a private
    /// nats-server. Its streams are shared: nothing else may consume wa.> meanwhile.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Directory with the wacenter-* binaries [default: next to this executable].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Keep the logs of every process in this directory (default: a temporary one, removed).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// RUST_LOG for the services [default: theirs, info for wacenter's own crates].
    #[arg(long, value_name = "FILTER")]
    pub service_log: Option<String>,
    /// Extra environment for every service process, KEY=VALUE (repeatable), for experiments
    /// such as TOKIO_WORKER_THREADS=1. Recorded in the results.
    #[arg(long = "service-env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub service_env: Vec<(String, String)>,
    /// Run the simulators inside the bench process instead of as `wacenter sim` processes.
    #[arg(long)]
    pub in_process_sims: bool,
    /// Run ingress, forwarder, reply and callback as one `wacenter all` process (the
    /// single-machine deployment) in the fixed-rate and full-speed runs; scale-out still starts
    /// forwarder processes.
    #[arg(long)]
    pub one_process: bool,
    /// Resellers the OtomaX simulator knows; senders rotate over them.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub resellers: usize,
    /// Messages a day whose steady-state idempotency records the retention phase builds and
    /// measures (the figure is reported per 100,000 a day whatever this is).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub retention_per_day: u64,
    /// Messages a day of the trail phase's week [default: 100,000; 10,000 with --quick]; its
    /// memory figure is measured at this rate, not scaled (the target holds at 100,000).
    #[arg(long, value_name = "N")]
    pub trail_per_day: Option<u64>,
    /// Resellers (phone numbers, one trail subject each) the trail phase's messages come from.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub trail_phones: u64,
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// OtomaX latency and forwarder concurrency of the scale-out runs: one replica is then limited
/// to about 8 / 0.1 s = 80 msgs/s, far below what the machine can do, so replicas should add up.
const SCALE_OUT_LATENCY_MS: u64 = 100;
const SCALE_OUT_CONCURRENCY: usize = 8;

fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A progress line on stderr, stamped with the time since the bench started.
pub(crate) fn progress(line: &str) {
    eprintln!("[{:>6.1}s] {line}", started().elapsed().as_secs_f64());
}

/// Runs the whole bench. Ctrl-C stops it and every process it started.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    started();
    tokio::select! {
        r = phases::bench(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: every process the bench started has been stopped"),
    }
}

struct Plan {
    duration: Duration,
    scale_seconds: u64,
    warmup: Duration,
    scale_out: Vec<usize>,
}

fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
    let duration = args
        .duration_seconds
        .unwrap_or(if args.quick { 5 } else { 20 });
    let scale_seconds = args
        .scale_out_seconds
        .unwrap_or(if args.quick { 4 } else { 10 });
    if !(2..=600).contains(&duration) || !(2..=600).contains(&scale_seconds) {
        bail!("--duration-seconds and --scale-out-seconds must be between 2 and 600");
    }
    if !(1..=20_000).contains(&args.rate) {
        bail!("--rate must be between 1 and 20000 messages per second");
    }
    if !(1..=4096).contains(&args.window) {
        bail!("--window must be between 1 and 4096");
    }
    if !(1..=10_000).contains(&args.resellers) {
        bail!("--resellers must be between 1 and 10000");
    }
    let scale_out = if args.no_scale_out {
        Vec::new()
    } else {
        args.scale_out.clone()
    };
    if scale_out.iter().any(|r| !(1..=16).contains(r)) {
        bail!("--scale-out replicas must be between 1 and 16");
    }
    if let Some(url) = &args.nats_url {
        check_loopback(url)?;
    }
    Ok(Plan {
        duration: Duration::from_secs(duration),
        scale_seconds,
        // Replies in the first second(s) are left out of sustained rates: connections and
        // queues are still filling.
        warmup: Duration::from_secs(if args.quick { 1 } else { 2 }),
        scale_out,
    })
}

/// The bench only ever talks to this machine.
fn check_loopback(urls: &str) -> anyhow::Result<()> {
    for u in urls.split(',') {
        let parsed =
            url::Url::parse(u.trim()).with_context(|| format!("--nats-url {u:?} is not a URL"))?;
        match parsed.host_str() {
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => {}
            other => bail!(
                "--nats-url must point at this machine (127.0.0.1), not {}",
                other.unwrap_or("?")
            ),
        }
    }
    Ok(())
}

type Samples = BTreeMap<String, ProcSample>;

/// nats-server's (in, out) message counts before and after a run.
type NatsCounts = (Option<(u64, u64)>, Option<(u64, u64)>);

/// Every process of the bench, and the whole machine, at one moment.
struct Snapshot {
    procs: Samples,
    machine_busy_s: Option<f64>,
    at: Instant,
}

fn snapshot(stack: Option<&Stack>, nats: &Nats, sims: &Sims) -> Snapshot {
    let mut all = Samples::new();
    if let Some(stack) = stack {
        all.extend(
            stack
                .samples()
                .into_iter()
                .filter_map(|(n, s)| Some((n, s?))),
        );
    }
    if let Some(s) = nats.sample() {
        all.insert("nats-server".into(), s);
    }
    all.extend(
        sims.samples()
            .into_iter()
            .filter_map(|(n, s)| Some((n, s?))),
    );
    if let Some(s) = wacenter_test_support::procs::sample_pid(std::process::id()) {
        all.insert("bench (load generator)".into(), s);
    }
    Snapshot {
        procs: all,
        machine_busy_s: wacenter_test_support::procs::machine_busy_s(),
        at: Instant::now(),
    }
}

fn cpu_delta(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, f64> {
    after
        .procs
        .iter()
        .map(|(name, a)| {
            let b = before.procs.get(name).map(|b| b.cpu_s).unwrap_or(0.0);
            (name.clone(), round2(a.cpu_s - b))
        })
        .collect()
}

/// HTTP requests each message makes in the baseline (InsertInbox, the auto-reply's send) and
/// in the pipeline (those two and the webhook into ingress).
const BASELINE_HTTP_REQUESTS: f64 = 2.0;
const PIPELINE_HTTP_REQUESTS: f64 = 3.0;

/// The HTTP share of the pipeline's CPU per message, from the baseline's: the baseline is
/// nothing but HTTP requests (client and server ends), and the pipeline makes one more of the
/// same kind per message: the webhook, a signed JSON body of about the same size.
fn pipeline_http_cpu_ms_per_msg(baseline_cpu_ms_per_msg: f64) -> f64 {
    baseline_cpu_ms_per_msg * PIPELINE_HTTP_REQUESTS / BASELINE_HTTP_REQUESTS
}

/// CPU ms per message of every process of the bench together, between two snapshots.
fn cpu_ms_per_msg(before: &Snapshot, after: &Snapshot, messages: u64) -> f64 {
    round3(cpu_delta(before, after).values().sum::<f64>() * 1000.0 / messages.max(1) as f64)
}

/// Cores' worth of CPU that processes other than the bench's used meanwhile (other engineers'
/// builds and tests): what the 1-minute load average cannot tell, since it counts the bench too.
fn other_cores(before: &Snapshot, after: &Snapshot) -> Option<f64> {
    let machine = after.machine_busy_s? - before.machine_busy_s?;
    let ours: f64 = cpu_delta(before, after).values().sum();
    let wall = after.at.duration_since(before.at).as_secs_f64();
    (wall > 0.0).then(|| round2(((machine - ours) / wall).max(0.0)))
}

fn summarize(
    r: &RunResult,
    before: &Snapshot,
    after: &Snapshot,
    nats_counts: NatsCounts,
    load_before: Option<f64>,
    load_after: Option<f64>,
) -> RunSummary {
    let cpu_s = cpu_delta(before, after);
    let cpu_ms_per_msg = cpu_s
        .iter()
        // Three decimals: at full speed a service uses tenths of a millisecond per message.
        .map(|(n, s)| (n.clone(), round3(s * 1000.0 / (r.replied.max(1)) as f64)))
        .collect();
    RunSummary {
        label: r.label.clone(),
        seconds: round2(r.send_seconds),
        sent: r.sent,
        ingress_acked: r.acked,
        ingress_errors: r.ack_errors,
        replied: r.replied,
        lost: r.lost,
        unmatched_replies: r.unmatched,
        msgs_per_s: round2(r.sustained_msgs_per_s),
        latency_ms: r.e2e_ms,
        ingress_ack_ms: r.ack_ms,
        generator_lag_ms: round2(r.generator_lag_ms),
        rss_mb: after
            .procs
            .iter()
            .map(|(n, s)| (n.clone(), round2(s.hwm_mb())))
            .collect(),
        cpu_s,
        cpu_ms_per_msg,
        load_1m_before: load_before,
        load_1m_after: load_after,
        other_cpu_cores: other_cores(before, after),
        nats_in_msgs_per_msg: per_msg(nats_counts, r.replied, |c| c.0),
        nats_out_msgs_per_msg: per_msg(nats_counts, r.replied, |c| c.1),
        first_error: r.first_error.clone(),
    }
}

fn per_msg((before, after): NatsCounts, messages: u64, pick: fn((u64, u64)) -> u64) -> Option<f64> {
    let (b, a) = (before?, after?);
    (messages > 0).then(|| round2((pick(a) - pick(b)) as f64 / messages as f64))
}

fn report_run(r: &RunResult) {
    progress(&format!(
        "  {}: {} sent, {} replied, {} lost, {} ingress errors; {:.0} msgs/s sustained; e2e p50 {:.1} / p99 {:.1} / max {:.1} ms; ack p50 {:.1} / p99 {:.1} ms{}",
        r.label,
        r.sent,
        r.replied,
        r.lost,
        r.ack_errors,
        r.sustained_msgs_per_s,
        r.e2e_ms.p50,
        r.e2e_ms.p99,
        r.e2e_ms.max,
        r.ack_ms.p50,
        r.ack_ms.p99,
        r.first_error
            .as_ref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    ));
}

/// Writes `[[reseller]]` entries for `n` resellers with distinct phones.
fn write_resellers(path: &Path, n: usize) -> anyhow::Result<Vec<String>> {
    let phones: Vec<String> = (0..n)
        .map(|i| format!("62811{:07}", 1_000_000 + i))
        .collect();
    let mut toml = String::new();
    for (i, phone) in phones.iter().enumerate() {
        toml.push_str(&format!(
            "[[reseller]]\nphone = \"{phone}\"\ncode = \"B{i:05}\"\npin = \"{}\"\n\n",
            load::PIN
        ));
    }
    std::fs::write(path, toml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(phones)
}

fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        load_1m_start: load_average(),
        load_1m_end: None,
    }
}

/// Adds the end of nats-server's log to a start-up error (a service that cannot connect is
/// usually a NATS problem).
fn with_nats_log(e: anyhow::Error, nats: &mut Nats) -> anyhow::Error {
    if let Err(dead) = nats.check_alive() {
        return dead.context(format!("{e:#}"));
    }
    let tail = nats.log_tail();
    if tail.is_empty() {
        e
    } else {
        e.context(format!("end of nats-server's log:\n{tail}"))
    }
}

async fn start_nats(
    external: Option<&str>,
    bins: &Binaries,
    work: &Path,
    log_dir: &Path,
) -> anyhow::Result<Nats> {
    match external {
        Some(url) => Ok(Nats::External {
            url: url.to_string(),
        }),
        None => Nats::start(bins.nats_server.as_deref(), work, log_dir).await,
    }
}

/// One measured pipeline run on fresh simulators: drives `spec` through the services, then sums
/// up what every process spent and how many NATS messages went by.
async fn measured_run(
    announce: &str,
    spec: &RunSpec,
    http: &reqwest::Client,
    target: &Target,
    seqs: &Sequence,
    (services, nats, sims): (&mut Stack, &mut Nats, &mut Sims),
) -> anyhow::Result<(RunResult, RunSummary)> {
    sims.reset(http).await?;
    progress(announce);
    let load0 = load_average();
    let before = snapshot(Some(services), nats, sims);
    let counts0 = nats.message_counts(http).await;
    let run = load::drive(target, seqs, spec, 0, || {
        services.check_alive()?;
        sims.check_alive()?;
        nats.check_alive()
    })
    .await?;
    let after = snapshot(Some(services), nats, sims);
    let counts = (counts0, nats.message_counts(http).await);
    let summary = summarize(&run, &before, &after, counts, load0, load_average());
    report_run(&run);
    Ok((run, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_nats() {
        assert!(check_loopback("nats://127.0.0.1:4222").is_ok());
        assert!(check_loopback("nats://localhost:4222,nats://127.0.0.1:4223").is_ok());
        assert!(check_loopback("nats://10.0.0.5:4222").is_err());
        assert!(check_loopback("nats://example.com:4222").is_err());
    }
}
