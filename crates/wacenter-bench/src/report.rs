//! The results: `bench/results/latest.json` (stable keys, plus details) and the
//! table printed at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Percentiles of a sample, in ms (each within 0.1 % of the exact value: see [`Latencies`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Pcts {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: usize,
}

impl Pcts {
    pub fn of(values: &[f64]) -> Self {
        let mut latencies = Latencies::default();
        for v in values {
            latencies.record_ms(*v);
        }
        latencies.pcts()
    }
}

/// Latencies kept as an HDR histogram: 1 µs to an hour at 3 significant digits, so every
/// percentile is within 0.1 % of the exact one, in constant memory however long the run.
#[derive(Debug, Clone)]
pub struct Latencies(hdrhistogram::Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("the bounds are static and valid"),
        )
    }
}

impl Latencies {
    /// Records `ms` milliseconds (below a microsecond counts as one; above an hour as an hour).
    pub fn record_ms(&mut self, ms: f64) {
        let us = (ms * 1000.0).round().max(1.0) as u64;
        self.0.saturating_record(us);
    }

    pub fn pcts(&self) -> Pcts {
        if self.0.is_empty() {
            return Pcts::default();
        }
        let ms = |us: u64| round2(self.0.median_equivalent(us) as f64 / 1000.0);
        Pcts {
            p50: ms(self.0.value_at_quantile(0.50)),
            p95: ms(self.0.value_at_quantile(0.95)),
            p99: ms(self.0.value_at_quantile(0.99)),
            max: ms(self.0.max()),
            mean: round2(self.0.mean() / 1000.0),
            samples: self.0.len() as usize,
        }
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, Serialize)]
pub struct ScalePoint {
    pub replicas: usize,
    pub msgs_per_s: f64,
    pub sent: u64,
    pub replied: u64,
    pub e2e_latency_ms: Pcts,
    pub load_1m: Option<f64>,
    /// Cores' worth of CPU used by processes that are not the bench's during the run.
    pub other_cpu_cores: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub label: String,
    pub seconds: f64,
    pub sent: u64,
    pub ingress_acked: u64,
    pub ingress_errors: u64,
    pub replied: u64,
    pub lost: u64,
    /// Replies at the WhatsApp simulator that answer no message of this run (late replies of
    /// an earlier run); should be 0.
    pub unmatched_replies: u64,
    /// Replies per second after warm-up, until sending stopped.
    pub msgs_per_s: f64,
    pub latency_ms: Pcts,
    pub ingress_ack_ms: Pcts,
    pub generator_lag_ms: f64,
    /// Peak RSS (VmHWM) of every process at the end of the run.
    pub rss_mb: BTreeMap<String, f64>,
    /// CPU seconds every process used during the run.
    pub cpu_s: BTreeMap<String, f64>,
    /// CPU ms per end-to-end message, per process.
    pub cpu_ms_per_msg: BTreeMap<String, f64>,
    pub load_1m_before: Option<f64>,
    pub load_1m_after: Option<f64>,
    /// Cores' worth of CPU used by processes that are not the bench's during the run (other
    /// people's builds): the number to check before trusting a result.
    pub other_cpu_cores: Option<f64>,
    /// Messages nats-server received / sent per end-to-end message (publishes, KV writes, acks,
    /// pull requests, API calls, and their answers); absent with --nats-url.
    pub nats_in_msgs_per_msg: Option<f64>,
    pub nats_out_msgs_per_msg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineSummary {
    pub messages: u64,
    pub errors: u64,
    pub seconds: f64,
    pub window: usize,
    pub latency_ms: Pcts,
    pub cpu_s: BTreeMap<String, f64>,
    /// CPU ms per message of every process together (the simulators and the load generator).
    pub cpu_ms_per_msg: f64,
    pub load_1m_before: Option<f64>,
    pub other_cpu_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// JetStream alone carrying each message as the pipeline does (see `floor.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct FloorSummary {
    /// Acknowledged writes on each message's way, and trail writes beside it.
    pub writes_per_message: u32,
    pub trail_writes_per_message: u32,
    pub messages: u64,
    pub seconds: f64,
    pub window: usize,
    pub msgs_per_s: f64,
    /// CPU ms per message of every process (nats-server and the bench do the work; the idle
    /// simulators add next to nothing).
    pub cpu_ms_per_msg: f64,
    /// The highest pipeline / baseline ratio these cores allow a pipeline that makes its three
    /// HTTP requests (the baseline's two and the webhook, costed at the baseline's CPU per
    /// request) and this NATS traffic, and nothing else: [`ratio_ceiling`] of those CPU ms per
    /// message added together. Everything runs on the same cores, so the costs add up; neither
    /// rate alone is a ceiling.
    pub ratio_ceiling: f64,
    pub other_cpu_cores: Option<f64>,
    /// As in [`RunSummary`]: equal to the full-speed run's when this run makes the same NATS
    /// traffic per message as the pipeline.
    pub nats_in_msgs_per_msg: Option<f64>,
    pub nats_out_msgs_per_msg: Option<f64>,
}

/// NATS messages nats-server received and sent per end-to-end message.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InOut {
    #[serde(rename = "in")]
    pub received: f64,
    #[serde(rename = "out")]
    pub sent: f64,
}

impl InOut {
    pub fn of(run: &RunSummary) -> Option<Self> {
        Some(Self {
            received: run.nats_in_msgs_per_msg?,
            sent: run.nats_out_msgs_per_msg?,
        })
    }
}

/// The pipeline run again on a fresh nats-server with one thing changed (`durable`: nats-server
/// syncing every write to disk; `without_trail`: `TRAIL_RETENTION_DAYS=0`): a fixed-rate run
/// and a full-speed run, each half as long as the main ones.
#[derive(Debug, Clone, Serialize)]
pub struct VariantSummary {
    /// What was changed.
    pub config: String,
    /// nats-server's own word on whether it synced every write (`/varz`).
    pub sync_always: Option<bool>,
    /// Sustained rate of its full-speed run.
    pub e2e_msgs_per_s: f64,
    /// End to end at `rate` msgs/s.
    pub latency_ms: Pcts,
    pub rate: u32,
    pub full_speed_latency_ms: Pcts,
    pub nats_msgs_per_message: Option<InOut>,
    /// Peak RSS of each service after both runs.
    pub rss_mb: BTreeMap<String, f64>,
    pub lost: u64,
}

/// The highest pipeline / baseline ratio `cores` allow a pipeline that spends at least
/// `cpu_ms_per_msg` of CPU on each message: the pipeline is CPU-bound here, so it cannot pass
/// `cores × 1000 ÷ cpu_ms_per_msg` messages per second. 0 when either figure is missing.
pub fn ratio_ceiling(cores: usize, cpu_ms_per_msg: f64, baseline_msgs_per_s: f64) -> f64 {
    if cpu_ms_per_msg <= 0.0 || baseline_msgs_per_s <= 0.0 {
        return 0.0;
    }
    cores as f64 * 1000.0 / cpu_ms_per_msg / baseline_msgs_per_s
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_1m_start: Option<f64>,
    pub load_1m_end: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Sustained end-to-end rate of the full-speed run (closed loop, `window` in flight).
    pub e2e_msgs_per_s: f64,
    pub baseline_msgs_per_s: f64,
    /// e2e_msgs_per_s / baseline_msgs_per_s.
    pub ratio: f64,
    /// ratio / the "HTTP + the bus alone" ceiling of the same run: how close the pipeline
    /// comes to the floor of its own design (its HTTP requests and its NATS traffic, nothing
    /// else).
    pub floor_ratio: Option<f64>,
    /// NATS messages per end-to-end message in the full-speed run, as shipped (trail on).
    pub nats_msgs_per_message: Option<InOut>,
    /// End to end at 1,000 msgs/s (the fixed-rate run, when `--rate` is 1000).
    pub latency_ms_at_1000: Option<Pcts>,
    /// nats-server with `sync_interval: always`.
    pub durable: Option<VariantSummary>,
    /// The trail off: what it costs.
    pub without_trail: Option<VariantSummary>,
    /// Webhook sent → auto-reply received, in the fixed-rate run (`fixed_rate.rate` msgs/s).
    pub latency_ms: Pcts,
    /// Webhook sent → ingress's 200, in the fixed-rate run.
    pub ingress_ack_ms: Pcts,
    /// Peak RSS (VmHWM) of each service at the end of the fixed-rate run.
    pub rss_mb: BTreeMap<String, f64>,
    /// CPU seconds of each service during the fixed-rate run.
    pub cpu_s: BTreeMap<String, f64>,
    pub scale_out: Vec<ScalePoint>,
    pub cores: usize,
    /// msgs/s with the most replicas ÷ (replicas × msgs/s with one).
    pub scale_out_efficiency: Option<f64>,
    pub full_speed_latency_ms: Pcts,
    pub full_speed_ingress_ack_ms: Pcts,
    pub fixed_rate: RunSummary,
    pub fixed_rate_msgs_per_s_offered: u32,
    pub full_speed: RunSummary,
    pub full_speed_window: usize,
    /// CPU ms per message of every process together (services, nats-server, simulators, load
    /// generator) in the full-speed run.
    pub full_speed_cpu_ms_per_msg: f64,
    /// cores × 1000 ÷ full_speed_cpu_ms_per_msg: the CPU-bound ceiling on this machine, i.e.
    /// roughly what e2e_msgs_per_s would be with no other process competing for the cores.
    pub cpu_bound_msgs_per_s: f64,
    /// CPU ms per message, in the full-speed run, of every process that is not a wacenter
    /// service: nats-server, the simulators and the load generator.
    pub services_free_cpu_ms_per_msg: f64,
    /// [`ratio_ceiling`] of `services_free_cpu_ms_per_msg`: the ratio the pipeline would reach
    /// if ingress, forwarder and reply cost no CPU at all, everything else as measured.
    pub ratio_ceiling_services_free: f64,
    pub baseline: BaselineSummary,
    /// JetStream alone, carrying each message as the pipeline does: with the baseline, a
    /// ceiling for the ratio.
    pub durable_writes_floor: Option<FloorSummary>,
    /// nats-server memory and store per message whose idempotency records are kept, and the
    /// projection for 100,000 messages a day (`None` on an external NATS).
    pub retention: Option<crate::retention::RetentionSummary>,
    /// A week of the message trail: nats-server memory, disk per message, lookup times
    /// (`None` on an external NATS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail: Option<crate::trail::TrailSummary>,
    /// Two OtomaX servers, one down: the healthy one's figures beside both healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::isolation::IsolationSummary>,
    /// 100 servers × 2 numbers: start-up, consumers, memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_scale: Option<crate::isolation::TableScaleSummary>,
    pub scale_out_config: ScaleOutConfig,
    pub targets: Vec<Check>,
    pub machine: Machine,
    pub build_profile: String,
    pub nats_server: String,
    pub simulators: String,
    /// `one process each`, or `in one \`wacenter all\` process` (`--one-process`).
    pub services: String,
    pub service_log: String,
    pub service_env: Vec<String>,
    pub quick: bool,
    pub started_at: String,
    pub total_seconds: f64,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleOutConfig {
    pub otomax_latency_ms: u64,
    pub forwarder_concurrency: usize,
    pub window: usize,
    pub seconds_per_run: u64,
}

impl Report {
    pub fn evaluate(&mut self) {
        let mut checks = Vec::new();
        if let Some(m) = self.nats_msgs_per_message {
            let off = self
                .without_trail
                .as_ref()
                .and_then(|v| v.nats_msgs_per_message);
            checks.push(Check {
                target: "NATS messages per message <= 6 in, <= 6 out".into(),
                measured: format!(
                    "{:.1} in, {:.1} out{}",
                    m.received,
                    m.sent,
                    off.map(|w| format!(
                        " ({:.1} and {:.1} with the trail off)",
                        w.received, w.sent
                    ))
                    .unwrap_or_default()
                ),
                pass: m.received <= 6.0 && m.sent <= 6.0,
            });
        }
        if let Some(f) = self.floor_ratio {
            checks.push(Check {
                target: "pipeline >= 0.9 x its floor (HTTP + the bus alone)".into(),
                measured: format!("{f:.2}"),
                pass: f >= 0.9,
            });
        }
        checks.push(Check {
            target: "pipeline >= 0.4 x baseline (no bus)".into(),
            measured: format!("{:.2}", self.ratio),
            pass: self.ratio >= 0.4,
        });
        checks.push(Check {
            target: "p99 end to end <= 10 ms at 1,000 msgs/s".into(),
            measured: match &self.latency_ms_at_1000 {
                Some(p) => format!("{:.1} ms ({} lost)", p.p99, self.fixed_rate.lost),
                None => format!(
                    "not measured (--rate {})",
                    self.fixed_rate_msgs_per_s_offered
                ),
            },
            pass: self
                .latency_ms_at_1000
                .as_ref()
                .is_some_and(|p| p.p99 <= 10.0 && p.samples > 0 && self.fixed_rate.lost == 0),
        });
        if let Some(eff) = self.scale_out_efficiency {
            let top = self.scale_out.last().map(|p| p.replicas).unwrap_or(0);
            checks.push(Check {
                target: "scale-out efficiency 1 -> 8 forwarders >= 0.95".into(),
                measured: format!("{eff:.2} at {top}"),
                pass: eff >= 0.95 && top >= 8,
            });
        }
        if let Some(d) = &self.durable {
            checks.push(Check {
                target: "durable (sync_interval: always) >= 500 msgs/s end to end".into(),
                measured: format!(
                    "{:.0} msgs/s, p99 {:.1} ms at {}/s",
                    d.e2e_msgs_per_s, d.latency_ms.p99, d.rate
                ),
                pass: d.e2e_msgs_per_s >= 500.0 && d.lost == 0,
            });
        }
        if let Some(r) = &self.retention {
            checks.push(Check {
                target: "nats-server memory for 100,000 messages a day < 64 MB".into(),
                measured: format!("{:.1} MB projected", r.projected_memory_mb_per_100k_day),
                pass: r.projected_memory_mb_per_100k_day < 64.0 && r.memory_bytes_per_record > 0.0,
            });
        }
        if let Some(tr) = &self.trail {
            checks.push(Check {
                target: "a week of trail at 100,000 messages a day: nats-server memory < 32 MB"
                    .into(),
                measured: format!(
                    "{:.1} MB kept (Go heap after a collection, a week at {} a day); resident {:.1} MB against {:.1} MB without",
                    tr.memory_mb_per_week_at_100k_day,
                    tr.messages_per_day,
                    tr.with_trail_rss_mb,
                    tr.without_trail_rss_mb
                ),
                pass: tr.messages_per_day >= 100_000 && tr.memory_mb_per_week_at_100k_day < 32.0,
            });
            checks.push(Check {
                target: "trail on disk < 1 KB per message".into(),
                measured: format!(
                    "{:.2} KB on disk ({:.2} KB uncompressed)",
                    tr.disk_kb_per_message, tr.store_kb_per_message
                ),
                pass: tr.disk_kb_per_message > 0.0 && tr.disk_kb_per_message < 1.0,
            });
            let slowest = tr.lookup_ms.values().cloned().fold(0.0, f64::max);
            checks.push(Check {
                target: "one lookup on a week's trail < 1 s".into(),
                measured: format!("{slowest:.0} ms (slowest kind of query)"),
                pass: !tr.lookup_ms.is_empty() && slowest < 1000.0,
            });
        }
        if let Some(i) = &self.isolation {
            checks.push(Check {
                target: "another server down: the healthy one's p99 <= 1.2 x and throughput >= 0.9 x both healthy".into(),
                measured: format!(
                    "p99 {:.2} x ({:.1} / {:.1} ms), throughput {:.2} x ({:.0} / {:.0} msgs/s)",
                    i.p99_ratio,
                    i.healthy_p99_ms,
                    i.baseline_p99_ms,
                    i.throughput_ratio,
                    i.healthy_msgs_per_s,
                    i.baseline_msgs_per_s
                ),
                pass: i.p99_ratio <= 1.2 && i.throughput_ratio >= 0.9 && i.healthy_lost == 0,
            });
        }
        if let Some(t) = &self.routing_scale {
            checks.push(Check {
                target: format!(
                    "{} servers x 2 numbers: ready, every consumer bound, the last number answered",
                    t.servers
                ),
                measured: format!(
                    "{:.1} s, {} + {} consumers, {}",
                    t.startup_s,
                    t.inbound_consumers,
                    t.outbound_consumers,
                    if t.last_account_answered {
                        "answered"
                    } else {
                        "NOT answered"
                    }
                ),
                pass: t.last_account_answered && t.inbound_consumers > t.servers,
            });
        }
        let worst = self
            .rss_mb
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v));
        if let Some((name, mb)) = worst {
            checks.push(Check {
                target: format!(
                    "each service's peak RSS <= 25 MB at {} msgs/s",
                    self.fixed_rate_msgs_per_s_offered
                ),
                measured: format!("max {mb:.1} MB ({name})"),
                pass: mb <= 25.0 && self.fixed_rate_msgs_per_s_offered >= 1000,
            });
        }
        self.targets = checks;
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let num = |l: Option<f64>| l.map(|l| format!("{l:.2}")).unwrap_or("?".into());
        let _ = writeln!(
            t,
            "\nwacenter bench ({}{}) on {} cores, {}; {} build, {}",
            if self.quick { "quick, " } else { "" },
            self.started_at,
            self.cores,
            self.machine.cpu_model,
            self.build_profile,
            self.nats_server
        );
        let _ = writeln!(
            t,
            "load average (1 min, counts the bench itself): {} at start, {} at end; services {}; simulators {}; service logs {}{}",
            num(self.machine.load_1m_start),
            num(self.machine.load_1m_end),
            self.services,
            self.simulators,
            self.service_log,
            self.service_env
                .iter()
                .map(|e| format!("; {e}"))
                .collect::<String>()
        );
        let _ = writeln!(t, "\nThroughput");
        let _ = writeln!(
            t,
            "  {:<38} {:>8.0} msgs/s   ({} sent, {} replied, {} lost; other processes used {} cores)",
            format!("end to end, full speed ({} in flight)", self.full_speed_window),
            self.e2e_msgs_per_s,
            self.full_speed.sent,
            self.full_speed.replied,
            self.full_speed.lost,
            num(self.full_speed.other_cpu_cores),
        );
        let _ = writeln!(
            t,
            "  {:<38} {:>8.0} msgs/s   ({} messages, {} errors, {:.2} CPU ms per message; other processes used {} cores)",
            "baseline, no bus (same load)",
            self.baseline_msgs_per_s,
            self.baseline.messages,
            self.baseline.errors,
            self.baseline.cpu_ms_per_msg,
            num(self.baseline.other_cpu_cores)
        );
        if let Some(f) = &self.durable_writes_floor {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.0} msgs/s   ({} acknowledged writes on its way, {} trail writes beside it, 2 deliveries and 2 acks per message: {} NATS messages in, {} out; {:.2} CPU ms per message; other processes used {} cores)",
                "the bus alone (no services, no HTTP)",
                f.msgs_per_s,
                f.writes_per_message,
                f.trail_writes_per_message,
                num(f.nats_in_msgs_per_msg),
                num(f.nats_out_msgs_per_msg),
                f.cpu_ms_per_msg,
                num(f.other_cpu_cores)
            );
        }
        let _ = writeln!(t, "  {:<38} {:>8.2}", "pipeline / baseline", self.ratio);
        if let Some(f) = self.floor_ratio {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.2}   (pipeline / the \"HTTP + the bus alone\" ceiling below)",
                "pipeline / its floor", f
            );
        }
        if self.ratio_ceiling_services_free > 0.0 {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.2}   ({} cores / {:.2} CPU ms per message of nats-server, simulators and load generator, / baseline)",
                "ratio ceiling, services costing nothing",
                self.ratio_ceiling_services_free,
                self.cores,
                self.services_free_cpu_ms_per_msg
            );
        }
        if let Some(f) = &self.durable_writes_floor {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.2}   ({} cores / (3/2 x {:.2} + {:.2}) CPU ms per message: three HTTP requests where the baseline makes two, and the bus; / baseline)",
                "ratio ceiling, HTTP + the bus alone",
                f.ratio_ceiling,
                self.cores,
                self.baseline.cpu_ms_per_msg,
                f.cpu_ms_per_msg
            );
        }
        let _ = writeln!(
            t,
            "  {:<38} {:>8.0} msgs/s   ({} cores / {:.2} CPU ms per message, all processes)",
            "CPU-bound ceiling, idle machine",
            self.cpu_bound_msgs_per_s,
            self.cores,
            self.full_speed_cpu_ms_per_msg
        );
        if let Some(tr) = &self.trail {
            let lookups: Vec<String> = tr
                .lookup_ms
                .iter()
                .map(|(k, v)| format!("{k} {v:.0} ms"))
                .collect();
            let _ = writeln!(
                t,
                "  {:<38} {:>8.1} MB   ({} purchases over {} days from {} phones, {} steps; nats-server's heap after a restart and a collection {:.1} MB with it, {:.1} MB without, resident {:.1} MB and {:.1} MB; {:.2} KB on disk per message, {:.2} KB uncompressed; lookups: {})",
                "trail: a week, memory kept",
                tr.memory_mb_per_week_at_100k_day,
                tr.purchases_written,
                tr.days,
                tr.phones,
                tr.steps_written,
                tr.with_trail_heap_mb,
                tr.without_trail_heap_mb,
                tr.with_trail_rss_mb,
                tr.without_trail_rss_mb,
                tr.disk_kb_per_message,
                tr.store_kb_per_message,
                lookups.join(", ")
            );
        }
        if let Some(r) = &self.retention {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.1} MB   ({:.0} records alive at {} purchases a day, each with an outbox row: {:.0} B each, {:.2} KB per message; nats-server after a restart {:.1} MB with them, {:.1} MB without; {:.2} KB on disk per message)",
                "NATS memory at 100,000 messages a day",
                r.projected_memory_mb_per_100k_day,
                r.records.values().sum::<u64>() as f64,
                r.messages_per_day,
                r.memory_bytes_per_record,
                r.memory_kb_per_message,
                r.with_records_rss_mb,
                r.without_records_rss_mb,
                r.store_kb_per_message
            );
        }
        if let Some(i) = &self.isolation {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.0} msgs/s, p99 {:.1} ms   (both healthy: {:.0} msgs/s, p99 {:.1} ms; throughput {:.2} x, p99 {:.2} x)",
                "One server down, the other's",
                i.healthy_msgs_per_s,
                i.healthy_p99_ms,
                i.baseline_msgs_per_s,
                i.baseline_p99_ms,
                i.throughput_ratio,
                i.p99_ratio
            );
        }
        if let Some(r) = &self.routing_scale {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.1} s   ({} consumers on WA_INBOUND, {} on WA_OUTBOUND; {})",
                format!("{} servers x 2 numbers: ready in", r.servers),
                r.startup_s,
                r.inbound_consumers,
                r.outbound_consumers,
                r.rss_mb
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.1} MB"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let (Some(i), Some(o)) = (
            self.full_speed.nats_in_msgs_per_msg,
            self.full_speed.nats_out_msgs_per_msg,
        ) {
            let _ = writeln!(
                t,
                "  {:<38} {:>8.1} in, {:.1} out (publishes, KV writes, acks, pulls, answers)",
                "NATS messages per message", i, o
            );
        }
        for v in [&self.durable, &self.without_trail].into_iter().flatten() {
            let msgs = v
                .nats_msgs_per_message
                .map(|m| {
                    format!(
                        "; NATS messages per message {:.1} in, {:.1} out",
                        m.received, m.sent
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "  {:<38} {:>8.0} msgs/s   (p50 {:.1} / p99 {:.1} ms at {}/s; full speed p99 {:.1} ms{msgs}; {} lost)",
                v.config,
                v.e2e_msgs_per_s,
                v.latency_ms.p50,
                v.latency_ms.p99,
                v.rate,
                v.full_speed_latency_ms.p99,
                v.lost
            );
        }
        let _ = writeln!(
            t,
            "\n  {:<38} {:>7}  {:>7}  {:>7}  {:>7}",
            "Latency (ms)", "p50", "p95", "p99", "max"
        );
        let row = |t: &mut String, name: &str, p: &Pcts| {
            let _ = writeln!(
                t,
                "  {name:<38} {:>7.1}  {:>7.1}  {:>7.1}  {:>7.1}",
                p.p50, p.p95, p.p99, p.max
            );
        };
        let rate = self.fixed_rate_msgs_per_s_offered;
        row(&mut t, &format!("end to end at {rate}/s"), &self.latency_ms);
        row(
            &mut t,
            &format!("ingress ack at {rate}/s"),
            &self.ingress_ack_ms,
        );
        row(
            &mut t,
            "end to end, full speed",
            &self.full_speed_latency_ms,
        );
        row(
            &mut t,
            "ingress ack, full speed",
            &self.full_speed_ingress_ack_ms,
        );
        row(
            &mut t,
            "baseline (InsertInbox + send)",
            &self.baseline.latency_ms,
        );
        let _ = writeln!(
            t,
            "  (fixed-rate run: {} sent, {} replied, {} lost, {:.0} replies/s; other processes used {} cores)",
            self.fixed_rate.sent,
            self.fixed_rate.replied,
            self.fixed_rate.lost,
            self.fixed_rate.msgs_per_s,
            num(self.fixed_rate.other_cpu_cores),
        );
        let _ = writeln!(
            t,
            "\n  {:<24} {:>24}   {:>24}",
            "Per process",
            format!("fixed rate, {rate}/s"),
            "full speed"
        );
        let _ = writeln!(
            t,
            "  {:<24} {:>8} {:>7} {:>7}   {:>8} {:>7} {:>7}",
            "", "RSS MB", "CPU s", "ms/msg", "RSS MB", "CPU s", "ms/msg"
        );
        let names: Vec<&String> = self.fixed_rate.cpu_s.keys().collect();
        for name in order(&names) {
            let get = |m: &BTreeMap<String, f64>, digits: usize| {
                m.get(name)
                    .map(|v| format!("{v:.digits$}"))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                t,
                "  {name:<24} {:>8} {:>7} {:>7}   {:>8} {:>7} {:>7}",
                get(&self.fixed_rate.rss_mb, 1),
                get(&self.fixed_rate.cpu_s, 2),
                get(&self.fixed_rate.cpu_ms_per_msg, 3),
                get(&self.full_speed.rss_mb, 1),
                get(&self.full_speed.cpu_s, 2),
                get(&self.full_speed.cpu_ms_per_msg, 3),
            );
        }
        let _ = writeln!(
            t,
            "  (RSS: peak, VmHWM, at the end of the run; CPU: user + system during the run)"
        );
        if !self.scale_out.is_empty() {
            let c = &self.scale_out_config;
            let _ = writeln!(
                t,
                "\nScale-out (OtomaX +{} ms per call, FORWARDER_CONCURRENCY={}, {} in flight, {} s per run)",
                c.otomax_latency_ms, c.forwarder_concurrency, c.window, c.seconds_per_run
            );
            let first = &self.scale_out[0];
            for p in &self.scale_out {
                let eff = if first.msgs_per_s > 0.0 {
                    p.msgs_per_s / (first.msgs_per_s * p.replicas as f64 / first.replicas as f64)
                } else {
                    0.0
                };
                let _ = writeln!(
                    t,
                    "  {:<12} {:>8.1} msgs/s   efficiency {:.2}   ({} replied; other processes used {} cores)",
                    format!("{} forwarder{}", p.replicas, if p.replicas == 1 { "" } else { "s" }),
                    p.msgs_per_s,
                    eff,
                    p.replied,
                    num(p.other_cpu_cores)
                );
            }
        }
        let _ = writeln!(t, "\nTargets");
        for c in &self.targets {
            let _ = writeln!(
                t,
                "  [{}] {:<48} {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.target,
                c.measured
            );
        }
        for n in &self.notes {
            let _ = writeln!(t, "note: {n}");
        }
        t
    }
}

/// Services first, in pipeline order, then the rest.
fn order<'a>(names: &[&'a String]) -> Vec<&'a String> {
    let rank = |n: &str| match n {
        "ingress" => 0,
        "forwarder" => 1,
        "reply" => 2,
        "callback" => 3,
        "nats-server" => 4,
        n if n.starts_with("sim-") => 5,
        _ => 6,
    };
    let mut v = names.to_vec();
    v.sort_by_key(|n| (rank(n), n.to_string()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_a_tenth_of_a_percent() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Pcts::of(&v);
        let close = |got: f64, exact: f64| (got - exact).abs() <= exact * 0.001 + 0.01;
        for (got, exact) in [(p.p50, 50.0), (p.p95, 95.0), (p.p99, 99.0), (p.max, 100.0)] {
            assert!(close(got, exact), "{got} is not {exact} within 0.1 %");
        }
        assert_eq!(p.samples, 100);
        assert_eq!(Pcts::of(&[]).samples, 0);
        assert!(close(Pcts::of(&[7.0]).p99, 7.0));
    }

    #[test]
    fn ratio_ceiling_is_what_the_cores_allow_over_the_baseline() {
        // 2 cores at 0.5 CPU ms per message pass at most 4,000 msgs/s: 0.4 of a 10,000 baseline.
        assert!((ratio_ceiling(2, 0.5, 10_000.0) - 0.4).abs() < 1e-9);
        // Costs that add up lower it: 0.16 + 0.12 ms on 2 cores against 12,500 msgs/s.
        assert!((ratio_ceiling(2, 0.28, 12_500.0) - 0.571_428).abs() < 1e-5);
        assert_eq!(ratio_ceiling(2, 0.0, 10_000.0), 0.0);
        assert_eq!(ratio_ceiling(2, 0.5, 0.0), 0.0);
    }
}
