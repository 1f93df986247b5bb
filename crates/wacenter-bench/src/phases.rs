//! The bench's phases, in the order they run: set-up, warm-up, fixed rate, full speed,
//! retention, trail, baseline, the bus alone, durable, without the trail, isolation, a large
//! routing table, scale-out, and the report. Each phase is one method of [`Bench`], which holds
//! what they share (NATS, the simulators, the load target, notes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::baseline::BaselineResult;
use crate::isolation::{self, IsolationRun, IsolationSummary, ServerEntry, TableScaleSummary};
use crate::load::{self, RunResult, RunSpec, Sequence, Shape, Target};
use crate::report::{
    ratio_ceiling, round2, round3, BaselineSummary, FloorSummary, InOut, Machine, Report,
    RunSummary, ScaleOutConfig, ScalePoint, VariantSummary,
};
use crate::retention::{self, RetentionSummary};
use crate::stack::{self, Binaries, Fsync, Nats, Sims, Stack, StackConfig};
use crate::trail::{self, TrailSummary};
use crate::{
    baseline, cpu_delta, cpu_ms_per_msg, floor, machine, measured_run, other_cores, per_msg,
    pipeline_http_cpu_ms_per_msg, plan, progress, snapshot, start_nats, started, with_nats_log,
    write_resellers, BenchArgs, Plan, SCALE_OUT_CONCURRENCY, SCALE_OUT_LATENCY_MS,
};
use wacenter_test_support::procs::load_average;

/// What every phase shares.
pub(crate) struct Bench {
    args: BenchArgs,
    plan: Plan,
    machine: Machine,
    bins: Binaries,
    /// Stores, logs and the resellers file; removed at the end.
    work: tempfile::TempDir,
    log_dir: PathBuf,
    http: reqwest::Client,
    seqs: Sequence,
    nats: Nats,
    sims: Sims,
    /// The load's target: ingress of the current stack, the WhatsApp simulator, the phones.
    target: Target,
    /// The stack every phase before scale-out measures.
    services: StackConfig,
    notes: Vec<String>,
    nats_version: String,
    sims_mode: String,
    services_mode: &'static str,
    wall_start: chrono::DateTime<chrono::Utc>,
}

/// A measured pipeline run and its summary.
type Measured = (RunResult, RunSummary);

/// What the baseline phase found: the run and its summary.
struct Baseline {
    run: BaselineResult,
    summary: BaselineSummary,
}

/// The scale-out runs and the load they ran at.
struct ScaleOut {
    points: Vec<ScalePoint>,
    window: usize,
}

/// The whole bench, phase by phase.
pub(crate) async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let (mut b, mut services) = Bench::set_up(args).await?;
    b.warm_up(&mut services).await?;
    let fixed = b.fixed_rate(&mut services).await?;
    let full = b.full_speed(&mut services).await?;
    services.stop().await;
    let retention = b.retention().await?;
    let trail = b.trail().await?;
    let count = full.0.replied.max(1000);
    let baseline = b.baseline(count).await?;
    let floor = b.bus_alone(count, &baseline).await?;
    let durable = b.variant(Variant::Durable).await?;
    let without_trail = b.variant(Variant::WithoutTrail).await?;
    let isolation = b.isolation().await?;
    let routing_scale = b.routing_scale().await?;
    let scale_out = b.scale_out().await?;
    b.report(Results {
        fixed,
        full,
        baseline,
        floor,
        retention,
        trail,
        durable,
        without_trail,
        isolation,
        routing_scale,
        scale_out,
    })
}

/// What every phase found, for the report.
struct Results {
    fixed: Measured,
    full: Measured,
    baseline: Baseline,
    floor: FloorSummary,
    retention: Option<RetentionSummary>,
    trail: Option<TrailSummary>,
    durable: Option<VariantSummary>,
    without_trail: Option<VariantSummary>,
    isolation: IsolationSummary,
    routing_scale: TableScaleSummary,
    scale_out: ScaleOut,
}

/// The durable phase's fixed rate (`--rate` when lower): what the shipped durable default
/// must carry end to end.
const DURABLE_RATE: u32 = 500;

/// The pipeline run again with one thing changed.
#[derive(Debug, Clone, Copy)]
enum Variant {
    /// nats-server syncs every write to disk before acknowledging it.
    Durable,
    /// `TRAIL_RETENTION_DAYS=0`.
    WithoutTrail,
}

impl Variant {
    fn config(self) -> &'static str {
        match self {
            Self::Durable => "durable: sync_interval always",
            Self::WithoutTrail => "without the trail",
        }
    }
}

impl Bench {
    /// NATS, the simulators and the four services, ready for load.
    async fn set_up(args: BenchArgs) -> anyhow::Result<(Self, Stack)> {
        let plan = plan(&args)?;
        let wall_start = chrono::Utc::now();
        let machine = machine();
        let bins = Binaries::find(args.bin_dir.as_deref())?;
        let mut notes = Vec::new();
        // The bench measures the pipeline, not WhatsApp's pace: sending is not paced unless
        // --service-env sets WA_SEND_RATE.
        match args.service_env.iter().find(|(k, _)| k == "WA_SEND_RATE") {
            Some((_, rate)) if rate.trim() != "0" => notes.push(format!(
                "sending paced at WA_SEND_RATE={rate} per account (--service-env)"
            )),
            _ => notes.push(
                "sending not paced (WA_SEND_RATE=0): the runs measure the pipeline, not WhatsApp's pace".into(),
            ),
        }
        if bins.profile() != "release" {
            notes.push(format!(
                "services are a {} build: the numbers say little about a release build",
                bins.profile()
            ));
        }
        let nats_version = match &args.nats_url {
            Some(url) => format!("external NATS at {url}"),
            None => stack::nats_version(bins.nats_server.as_deref())
                .unwrap_or_else(|| "nats-server (version unknown)".into()),
        };
        progress(&format!(
            "wacenter bench{}: {} cores ({}), load {:.2}; binaries in {}; {}",
            if args.quick { " --quick" } else { "" },
            machine.cores,
            machine.cpu_model,
            machine.load_1m_start.unwrap_or(-1.0),
            bins.dir.display(),
            nats_version
        ));
        let work = tempfile::Builder::new()
            .prefix("wacenter-bench-")
            .tempdir()?;
        let log_dir = match &args.log_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                d.clone()
            }
            None => work.path().join("logs"),
        };
        std::fs::create_dir_all(&log_dir)?;
        let resellers_file = work.path().join("resellers.toml");
        let phones = write_resellers(&resellers_file, args.resellers)?;
        let http = wacenter_otomax::client::shared_http_client();
        let run_id = format!(
            "{:08X}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u32)
                .unwrap_or(0)
        );

        let mut nats = start_nats(args.nats_url.as_deref(), &bins, work.path(), &log_dir).await?;
        let sims = Sims::start(
            bins.wacenter.as_deref(),
            args.in_process_sims,
            &resellers_file,
            &log_dir,
        )
        .await?;
        let sims_mode = if sims.in_process() {
            notes.push(
                "simulators ran inside the bench process (their CPU counts as the bench's)".into(),
            );
            "in the bench process".to_string()
        } else {
            "as separate processes".to_string()
        };
        progress(&format!(
            "NATS {} | OtomaX sim {} | WhatsApp sim {} ({sims_mode})",
            nats.url(),
            sims.otomax_url,
            sims.wa_url
        ));
        let config = StackConfig {
            nats_url: nats.url().to_string(),
            otomax_url: sims.otomax_url.clone(),
            wa_url: sims.wa_url.clone(),
            forwarders: 1,
            forwarder_concurrency: None,
            callback: true,
            rust_log: args.service_log.clone(),
            extra_env: args.service_env.clone(),
            one_process: args.one_process,
        };
        let services = Stack::start(&bins, &config, &log_dir)
            .await
            .map_err(|e| with_nats_log(e, &mut nats))?;
        let services_mode = if args.one_process {
            "in one `wacenter all` process"
        } else {
            "one process each"
        };
        progress(&format!(
            "services ready: ingress, forwarder, reply, callback ({services_mode})"
        ));
        let target = Target {
            http: http.clone(),
            webhook_url: format!("{}/webhook/gowa", services.ingress_url),
            wa_url: sims.wa_url.clone(),
            phones: std::sync::Arc::new(phones),
            run_id,
        };
        let bench = Self {
            args,
            plan,
            machine,
            bins,
            work,
            log_dir,
            http,
            seqs: Sequence::new(),
            nats,
            sims,
            target,
            services: config,
            notes,
            nats_version,
            sims_mode,
            services_mode,
            wall_start,
        };
        Ok((bench, services))
    }

    /// Connections made, consumers bound, first pulls done. Not measured.
    async fn warm_up(&mut self, services: &mut Stack) -> anyhow::Result<()> {
        let warm = RunSpec::warm_up(16, Duration::from_secs(1));
        let (sims, nats) = (&mut self.sims, &mut self.nats);
        let w = load::drive(&self.target, &self.seqs, &warm, 0, || {
            services.check_alive()?;
            sims.check_alive()?;
            nats.check_alive()
        })
        .await?;
        if w.replied == 0 {
            bail!(
                "no auto-reply came back during warm-up ({} sent, {} ingress errors{}); see the service logs{}",
                w.sent,
                w.ack_errors,
                w.first_error.map(|e| format!(": {e}")).unwrap_or_default(),
                if self.args.log_dir.is_none() { " (keep them with --log-dir)" } else { "" }
            );
        }
        progress(&format!(
            "warm-up: {} messages round-tripped, e2e p50 {:.1} ms",
            w.replied, w.e2e_ms.p50
        ));
        Ok(())
    }

    /// `--rate` messages a second, open loop: latency at a steady load.
    async fn fixed_rate(&mut self, services: &mut Stack) -> anyhow::Result<Measured> {
        let spec = RunSpec {
            label: "fixed-rate".into(),
            shape: Shape::FixedRate {
                rate: self.args.rate,
            },
            duration: self.plan.duration,
            warmup: self.plan.warmup,
            drain: Duration::from_secs(15),
            quiet: false,
        };
        let announce = format!(
            "fixed-rate run: {} msgs/s for {} s (open loop)",
            self.args.rate,
            self.plan.duration.as_secs()
        );
        self.measured(&announce, &spec, services).await
    }

    /// `--window` messages in flight end to end, closed loop: the most the pipeline carries.
    async fn full_speed(&mut self, services: &mut Stack) -> anyhow::Result<Measured> {
        let spec = RunSpec {
            label: "full-speed".into(),
            shape: Shape::Window {
                window: self.args.window,
            },
            duration: self.plan.duration,
            warmup: self.plan.warmup,
            drain: Duration::from_secs(30),
            quiet: false,
        };
        let announce = format!(
            "full-speed run: {} messages in flight end to end for {} s (closed loop)",
            self.args.window,
            self.plan.duration.as_secs()
        );
        self.measured(&announce, &spec, services).await
    }

    async fn measured(
        &mut self,
        announce: &str,
        spec: &RunSpec,
        services: &mut Stack,
    ) -> anyhow::Result<Measured> {
        measured_run(
            announce,
            spec,
            &self.http,
            &self.target,
            &self.seqs,
            (services, &mut self.nats, &mut self.sims),
        )
        .await
    }

    /// nats-server's memory for the records alive at `--retention-per-day`, built from this
    /// run's own records on a fresh server.
    async fn retention(&mut self) -> anyhow::Result<Option<RetentionSummary>> {
        if self.bins.nats_server.is_none() {
            self.notes
                .push("retention not measured: no nats-server binary to start".into());
            return Ok(None);
        }
        progress(&format!(
            "retention: the records alive at {} messages a day, on a fresh nats-server, measured after a restart",
            self.args.retention_per_day
        ));
        let run = retention::from_run(self.nats.url())
            .await
            .context("cannot read the run's idempotency records")?;
        let r = retention::measure(
            &run,
            self.args.retention_per_day,
            self.bins.nats_server.as_deref(),
            self.work.path(),
            &self.log_dir,
        )
        .await?;
        progress(&format!(
            "  retention: {:.0} B of nats-server memory per record, {:.2} KB on disk per message; {:.1} MB at 100,000 messages a day",
            r.memory_bytes_per_record, r.store_kb_per_message, r.projected_memory_mb_per_100k_day
        ));
        Ok(Some(r))
    }

    /// A week of trail at `--trail-per-day` on a fresh nats-server: memory, disk, lookups.
    async fn trail(&mut self) -> anyhow::Result<Option<TrailSummary>> {
        if self.bins.nats_server.is_none() {
            self.notes
                .push("trail not measured: no nats-server binary to start".into());
            return Ok(None);
        }
        let per_day =
            self.args
                .trail_per_day
                .unwrap_or(if self.args.quick { 10_000 } else { 100_000 });
        progress(&format!(
            "trail: a week at {per_day} messages a day from {} phones on a fresh nats-server, measured after a restart, then looked up",
            self.args.trail_phones
        ));
        let tr = trail::measure(
            per_day,
            7,
            self.args.trail_phones,
            self.bins.nats_server.as_deref(),
            self.work.path(),
            &self.log_dir,
        )
        .await
        .context("trail phase")?;
        progress(&format!(
            "  trail: {:.1} MB kept by nats-server for a week at {} a day, {:.2} KB on disk per message, lookups {:?} ms",
            tr.memory_mb_per_week_at_100k_day, tr.messages_per_day, tr.disk_kb_per_message, tr.lookup_ms
        ));
        Ok(Some(tr))
    }

    /// `count` messages straight to the simulators, same window, no bus.
    async fn baseline(&mut self, count: u64) -> anyhow::Result<Baseline> {
        self.sims.reset(&self.http).await?;
        progress(&format!(
            "baseline: {count} messages straight to the simulators, {} in flight, no bus",
            self.args.window
        ));
        let load0 = load_average();
        let before = snapshot(None, &self.nats, &self.sims);
        let run = baseline::run(
            &self.target,
            &self.sims.otomax_url,
            &self.seqs,
            count,
            self.args.window,
            Duration::from_secs(if self.args.quick { 15 } else { 60 }),
        )
        .await?;
        let after = snapshot(None, &self.nats, &self.sims);
        progress(&format!(
            "  baseline: {} messages in {:.1} s = {:.0} msgs/s, {} errors; latency p50 {:.1} / p99 {:.1} ms{}",
            run.messages,
            run.seconds,
            run.msgs_per_s,
            run.errors,
            run.latency_ms.p50,
            run.latency_ms.p99,
            run.first_error
                .as_ref()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        ));
        let summary = BaselineSummary {
            messages: run.messages,
            errors: run.errors,
            seconds: round2(run.seconds),
            window: self.args.window,
            latency_ms: run.latency_ms,
            cpu_ms_per_msg: cpu_ms_per_msg(&before, &after, run.messages),
            cpu_s: cpu_delta(&before, &after),
            load_1m_before: load0,
            other_cpu_cores: other_cores(&before, &after),
            first_error: run.first_error.clone(),
        };
        Ok(Baseline { run, summary })
    }

    /// The pipeline's NATS traffic alone for `count` messages: no services, no HTTP.
    async fn bus_alone(&mut self, count: u64, baseline: &Baseline) -> anyhow::Result<FloorSummary> {
        progress(&format!(
            "the bus alone: {count} messages x {} acknowledged JetStream writes and {} trail writes, 2 deliveries and 2 acks, {} in flight, no services",
            floor::DURABLE_WRITES_PER_MESSAGE,
            floor::TRAIL_WRITES_PER_MESSAGE,
            self.args.window
        ));
        let counts0 = self.nats.message_counts(&self.http).await;
        let before = snapshot(None, &self.nats, &self.sims);
        let run = floor::run(
            self.nats.url(),
            count,
            self.args.window,
            Duration::from_secs(if self.args.quick { 15 } else { 60 }),
        )
        .await;
        let run = run.map_err(|e| with_nats_log(e, &mut self.nats))?;
        let after = snapshot(None, &self.nats, &self.sims);
        let counts = (counts0, self.nats.message_counts(&self.http).await);
        progress(&format!(
            "  the bus alone: {} messages in {:.1} s = {:.0} msgs/s",
            run.messages, run.seconds, run.msgs_per_s
        ));
        let cpu = cpu_ms_per_msg(&before, &after, run.messages);
        Ok(FloorSummary {
            writes_per_message: floor::DURABLE_WRITES_PER_MESSAGE,
            trail_writes_per_message: floor::TRAIL_WRITES_PER_MESSAGE,
            messages: run.messages,
            seconds: round2(run.seconds),
            window: self.args.window,
            msgs_per_s: round2(run.msgs_per_s),
            cpu_ms_per_msg: cpu,
            ratio_ceiling: round2(ratio_ceiling(
                self.machine.cores,
                pipeline_http_cpu_ms_per_msg(baseline.summary.cpu_ms_per_msg) + cpu,
                baseline.run.msgs_per_s,
            )),
            other_cpu_cores: other_cores(&before, &after),
            nats_in_msgs_per_msg: per_msg(counts, run.messages, |c| c.0),
            nats_out_msgs_per_msg: per_msg(counts, run.messages, |c| c.1),
        })
    }

    /// The pipeline on a fresh nats-server, changed as `variant` says: a fixed-rate run and a
    /// full-speed run, each half as long as the main ones. `None` on an external NATS (its
    /// configuration is not ours to change).
    async fn variant(&mut self, variant: Variant) -> anyhow::Result<Option<VariantSummary>> {
        if !matches!(self.nats, Nats::Own { .. }) {
            self.notes.push(format!(
                "{} not measured on an external NATS",
                variant.config()
            ));
            return Ok(None);
        }
        // Durable: latency at the rate the durable default is held to (it carries about
        // 700 msgs/s on two cores, so at 1,000 a queue would be measured, not the pipeline).
        let (fsync, env, rate) = match variant {
            Variant::Durable => (Fsync::Always, None, self.args.rate.min(DURABLE_RATE)),
            Variant::WithoutTrail => (
                Fsync::Default,
                Some(("TRAIL_RETENTION_DAYS", "0")),
                self.args.rate,
            ),
        };
        self.nats.stop().await;
        self.nats = Nats::start_with(
            self.bins.nats_server.as_deref(),
            self.work.path(),
            &self.log_dir,
            fsync,
        )
        .await?;
        let sync_always = self.nats.syncs_always(&self.http).await;
        self.sims.reset(&self.http).await?;
        let mut config = StackConfig {
            nats_url: self.nats.url().to_string(),
            ..self.services.clone()
        };
        config
            .extra_env
            .extend(env.map(|(k, v)| (k.to_string(), v.to_string())));
        let started = Stack::start(&self.bins, &config, &self.log_dir).await;
        let mut services = started.map_err(|e| with_nats_log(e, &mut self.nats))?;
        let target = Target {
            webhook_url: format!("{}/webhook/gowa", services.ingress_url),
            ..self.target.clone()
        };
        let warm = RunSpec::warm_up(16, Duration::from_secs(1));
        load::drive(&target, &self.seqs, &warm, 0, || services.check_alive()).await?;
        let half = (self.plan.duration / 2).max(Duration::from_secs(2));
        let mut runs = Vec::new();
        for (label, shape) in [
            ("fixed-rate", Shape::FixedRate { rate }),
            (
                "full-speed",
                Shape::Window {
                    window: self.args.window,
                },
            ),
        ] {
            let spec = RunSpec {
                label: format!("{}, {label}", variant.config()),
                shape,
                duration: half,
                warmup: self.plan.warmup,
                drain: Duration::from_secs(15),
                quiet: false,
            };
            let announce = format!("{}: {label} run for {} s", variant.config(), half.as_secs());
            runs.push(
                measured_run(
                    &announce,
                    &spec,
                    &self.http,
                    &target,
                    &self.seqs,
                    (&mut services, &mut self.nats, &mut self.sims),
                )
                .await?,
            );
        }
        services.stop().await;
        let [(fixed, _), (full, full_summary)] =
            <[Measured; 2]>::try_from(runs).map_err(|_| anyhow::anyhow!("two runs"))?;
        Ok(Some(VariantSummary {
            config: variant.config().into(),
            sync_always,
            e2e_msgs_per_s: round2(full.sustained_msgs_per_s),
            latency_ms: fixed.e2e_ms,
            rate,
            full_speed_latency_ms: full.e2e_ms,
            nats_msgs_per_message: InOut::of(&full_summary),
            rss_mb: full_summary
                .rss_mb
                .into_iter()
                .filter(|(k, _)| stack::SERVICE_NAMES.contains(&k.as_str()))
                .collect(),
            lost: fixed.lost + full.lost,
        }))
    }

    /// A fresh nats-server (when the bench runs its own): no backlog, consumer state or stream
    /// history carried over from the last phase.
    async fn fresh_nats(&mut self) -> anyhow::Result<()> {
        if matches!(self.nats, Nats::Own { .. }) {
            self.nats.stop().await;
            self.nats = start_nats(
                self.args.nats_url.as_deref(),
                &self.bins,
                self.work.path(),
                &self.log_dir,
            )
            .await?;
        }
        Ok(())
    }

    /// The services on a fresh nats-server with the routing table `servers` / `accounts` as
    /// their config file; how long they took to be ready.
    async fn start_with_table(
        &mut self,
        file: &str,
        servers: &[ServerEntry],
        accounts: &[(String, String, i64)],
    ) -> anyhow::Result<(Stack, Target, Duration)> {
        self.fresh_nats().await?;
        self.sims.reset(&self.http).await?;
        self.sims.set_otomax_latency(&self.http, 0).await?;
        let path = self.work.path().join(file);
        isolation::write_table(&path, servers, accounts)?;
        let mut config = StackConfig {
            nats_url: self.nats.url().to_string(),
            forwarders: 1,
            callback: true,
            one_process: false,
            ..self.services.clone()
        };
        config
            .extra_env
            .push(("WACENTER_CONFIG".into(), path.display().to_string()));
        let started_at = std::time::Instant::now();
        let started = Stack::start(&self.bins, &config, &self.log_dir).await;
        let services = started.map_err(|e| with_nats_log(e, &mut self.nats))?;
        let target = Target {
            webhook_url: format!("{}/webhook/gowa", services.ingress_url),
            ..self.target.clone()
        };
        Ok((services, target, started_at.elapsed()))
    }

    /// Two OtomaX servers in one deployment; the measured load goes to one while the other
    /// gets a steady side load, first both healthy, then the other one down.
    async fn isolation(&mut self) -> anyhow::Result<IsolationSummary> {
        let resellers = self.work.path().join("resellers.toml");
        let other_url = isolation::start_other_server(&resellers).await?;
        let servers = [
            ServerEntry::bench_sim("default", &self.sims.otomax_url),
            ServerEntry::other(&other_url),
        ];
        let accounts = [
            (stack::DEVICE.to_string(), "default".to_string(), 1),
            (
                isolation::OTHER_DEVICE.to_string(),
                isolation::OTHER_SERVER.to_string(),
                2,
            ),
        ];
        let (mut services, target, _) = self
            .start_with_table("isolation.toml", &servers, &accounts)
            .await?;
        let seconds = self.plan.duration.as_secs();
        let rate = self.args.rate.min(isolation::FIXED_RATE);
        progress(&format!(
            "isolation: servers default and {} ({} msgs/s offered to {} throughout); {} msgs/s, then {} in flight, {seconds} s each; both healthy, then {} down",
            isolation::OTHER_SERVER,
            isolation::SIDE_LOAD_PER_S,
            isolation::OTHER_SERVER,
            rate,
            self.args.window,
            isolation::OTHER_SERVER
        ));
        let warm = RunSpec::warm_up(16, Duration::from_secs(1));
        load::drive(&target, &self.seqs, &warm, 0, || services.check_alive()).await?;
        let other = wacenter_sim::inspect::SimClient::new(&other_url, self.http.clone());
        let mut runs = Vec::new();
        // Both conditions twice, alternating, so that drift over the phase (a shared machine's
        // load, the streams and buckets filling) falls on both alike.
        let conditions = [
            (false, isolation::BOTH_FIXED, isolation::BOTH_WINDOW),
            (true, isolation::DOWN_FIXED, isolation::DOWN_WINDOW),
        ];
        for (down, fixed_label, window_label) in conditions.into_iter().cycle().take(4) {
            let down_for = if down { 3600 } else { 0 };
            other
                .faults(&serde_json::json!({ "down_for_seconds": down_for }))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (label, shape) in [
                (fixed_label, Shape::FixedRate { rate }),
                (
                    window_label,
                    Shape::Window {
                        window: self.args.window,
                    },
                ),
            ] {
                self.sims.reset(&self.http).await?;
                let spec = RunSpec {
                    label: label.into(),
                    shape,
                    duration: self.plan.duration,
                    warmup: self.plan.warmup,
                    drain: Duration::from_secs(15),
                    quiet: false,
                };
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let side = isolation::side_load(
                    &target,
                    &self.seqs,
                    isolation::OTHER_DEVICE,
                    isolation::SIDE_LOAD_PER_S,
                    stopped,
                );
                let (sims, nats) = (&mut self.sims, &mut self.nats);
                let measured = async {
                    let r = load::drive(&target, &self.seqs, &spec, 0, || {
                        services.check_alive()?;
                        sims.check_alive()?;
                        nats.check_alive()
                    })
                    .await;
                    let _ = stop.send(true);
                    r
                };
                let (other_sent, r) = tokio::join!(side, measured);
                let r = r?;
                progress(&format!(
                    "  {label}: {:.0} msgs/s, e2e p50 {:.1} / p99 {:.1} ms, {} lost; {other_sent} to {}",
                    r.sustained_msgs_per_s, r.e2e_ms.p50, r.e2e_ms.p99, r.lost, isolation::OTHER_SERVER
                ));
                runs.push(IsolationRun {
                    label: label.into(),
                    msgs_per_s: round2(r.sustained_msgs_per_s),
                    p99_ms: r.e2e_ms.p99,
                    p50_ms: r.e2e_ms.p50,
                    sent: r.sent,
                    replied: r.replied,
                    lost: r.lost,
                    other_server_sent: other_sent,
                });
            }
        }
        services.stop().await;
        let summary = IsolationSummary::of(runs, rate, self.args.window, seconds);
        progress(&format!(
            "  isolation: the healthy server's p99 {:.2}x and throughput {:.2}x of the all-healthy runs",
            summary.p99_ratio, summary.throughput_ratio
        ));
        Ok(summary)
    }

    /// A hosting provider's table: 100 servers with 2 numbers each. Start-up, consumers,
    /// memory, and one message routed to the last number.
    async fn routing_scale(&mut self) -> anyhow::Result<TableScaleSummary> {
        const SERVERS: usize = 100;
        let names: Vec<String> = (1..=SERVERS).map(|i| format!("s{i:03}")).collect();
        let servers: Vec<ServerEntry> = names
            .iter()
            .map(|n| ServerEntry::bench_sim(n, &self.sims.otomax_url))
            .collect();
        let accounts: Vec<(String, String, i64)> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                (1..=2).map(move |k| (format!("62810{i:05}{k}@s.whatsapp.net"), n.clone(), k))
            })
            .collect();
        progress(&format!(
            "routing table: {SERVERS} servers x 2 accounts, every service reading it"
        ));
        let (services, target, ready_in) = self
            .start_with_table("routing-scale.toml", &servers, &accounts)
            .await?;
        // Every lane's consumers, plus the default lane's.
        let mut lanes = names.clone();
        lanes.push("default".into());
        let started = std::time::Instant::now();
        let (inbound, outbound) =
            isolation::wait_consumers(self.nats.url(), &lanes, Duration::from_secs(60)).await?;
        let startup = ready_in + started.elapsed();
        let mut rss_mb: BTreeMap<String, f64> = services
            .samples()
            .into_iter()
            .filter_map(|(name, s)| s.map(|s| (name, round2(s.rss_kb as f64 / 1024.0))))
            .collect();
        if let Some(s) = self.nats.sample() {
            rss_mb.insert("nats-server".into(), round2(s.rss_kb as f64 / 1024.0));
        }
        // The last number's message reaches its server and is answered through that number.
        let (device, _, _) = accounts.last().expect("accounts");
        let seq = self.seqs.next()?;
        let id = format!("TABLE{}{seq:09}", target.run_id);
        let sent = target
            .post_gowa(device, &id, target.phone(seq), &load::command_text(seq))
            .await;
        let wa = wacenter_sim::inspect::SimClient::new(&self.sims.wa_url, self.http.clone());
        let mut answered = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while sent.is_ok() && !answered && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let out = wa.list("outbox").await.unwrap_or_default();
            answered = out.iter().any(|m| {
                m["device_id"] == serde_json::json!(device)
                    && load::seq_of_reply(m["body"]["message"].as_str().unwrap_or_default())
                        == Some(seq)
            });
        }
        services.stop().await;
        progress(&format!(
            "  routing table: ready in {:.1} s, {inbound} + {outbound} consumers, {}; last number answered: {answered}",
            startup.as_secs_f64(),
            rss_mb
                .iter()
                .map(|(k, v)| format!("{k} {v:.1} MB"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(TableScaleSummary {
            servers: SERVERS,
            accounts: accounts.len(),
            startup_s: round2(startup.as_secs_f64()),
            inbound_consumers: inbound,
            outbound_consumers: outbound,
            rss_mb,
            last_account_answered: answered,
        })
    }

    /// OtomaX slowed down, 1, 2, 4 … forwarders, each on a fresh nats-server.
    async fn scale_out(&mut self) -> anyhow::Result<ScaleOut> {
        let window =
            (4 * SCALE_OUT_CONCURRENCY * self.plan.scale_out.iter().max().copied().unwrap_or(1))
                .max(32);
        let mut points = Vec::new();
        for replicas in self.plan.scale_out.clone() {
            points.push(self.scale_out_run(replicas, window).await?);
        }
        if !self.plan.scale_out.is_empty() {
            self.sims.set_otomax_latency(&self.http, 0).await?;
        }
        self.nats.stop().await;
        self.sims.stop().await;
        Ok(ScaleOut { points, window })
    }

    async fn scale_out_run(
        &mut self,
        replicas: usize,
        window: usize,
    ) -> anyhow::Result<ScalePoint> {
        // A fresh nats-server per run: no backlog, consumer state or stream history carried over.
        self.fresh_nats().await?;
        self.sims.reset(&self.http).await?;
        self.sims.set_otomax_latency(&self.http, 0).await?;
        let config = StackConfig {
            nats_url: self.nats.url().to_string(),
            forwarders: replicas,
            forwarder_concurrency: Some(SCALE_OUT_CONCURRENCY),
            callback: false,
            one_process: false,
            ..self.services.clone()
        };
        let started = Stack::start(&self.bins, &config, &self.log_dir).await;
        let mut services = started.map_err(|e| with_nats_log(e, &mut self.nats))?;
        let warm = RunSpec::warm_up(8, Duration::from_millis(500));
        let target = Target {
            webhook_url: format!("{}/webhook/gowa", services.ingress_url),
            ..self.target.clone()
        };
        let (sims, nats) = (&mut self.sims, &mut self.nats);
        load::drive(&target, &self.seqs, &warm, 0, || {
            services.check_alive()?;
            nats.check_alive()
        })
        .await?;
        sims.reset(&self.http).await?;
        sims.set_otomax_latency(&self.http, SCALE_OUT_LATENCY_MS)
            .await?;
        progress(&format!(
            "scale-out: {replicas} forwarder(s), OtomaX +{SCALE_OUT_LATENCY_MS} ms, FORWARDER_CONCURRENCY={SCALE_OUT_CONCURRENCY}, {window} in flight, {} s",
            self.plan.scale_seconds
        ));
        let load0 = load_average();
        let before = snapshot(Some(&services), nats, sims);
        let spec = RunSpec {
            label: format!("{replicas} fwd"),
            shape: Shape::Window { window },
            duration: Duration::from_secs(self.plan.scale_seconds),
            warmup: self.plan.warmup,
            // A private nats-server is thrown away after the run, backlog and all; a shared one
            // must be left empty for the next run.
            drain: if matches!(nats, Nats::Own { .. }) {
                Duration::ZERO
            } else {
                Duration::from_secs(60)
            },
            quiet: false,
        };
        let r = load::drive(&target, &self.seqs, &spec, 0, || {
            services.check_alive()?;
            sims.check_alive()?;
            nats.check_alive()
        })
        .await?;
        let after = snapshot(Some(&services), nats, sims);
        services.stop().await;
        progress(&format!(
            "  {replicas} forwarder(s): {:.1} msgs/s, e2e p50 {:.0} ms",
            r.sustained_msgs_per_s, r.e2e_ms.p50
        ));
        Ok(ScalePoint {
            replicas,
            msgs_per_s: round2(r.sustained_msgs_per_s),
            sent: r.sent,
            replied: r.replied,
            e2e_latency_ms: r.e2e_ms,
            load_1m: load0,
            other_cpu_cores: other_cores(&before, &after),
        })
    }

    /// `--out` (JSON), the table next to it and on stdout.
    fn report(mut self, results: Results) -> anyhow::Result<()> {
        let Results {
            fixed: (fixed, fixed_summary),
            full: (full, full_summary),
            baseline,
            floor,
            retention,
            trail,
            durable,
            without_trail,
            isolation,
            routing_scale,
            scale_out,
        } = results;
        self.machine.load_1m_end = load_average();
        let points = &scale_out.points;
        let scale_out_efficiency = match (points.first(), points.last()) {
            (Some(a), Some(b)) if b.replicas > a.replicas && a.msgs_per_s > 0.0 => Some(round2(
                b.msgs_per_s / (a.msgs_per_s * b.replicas as f64 / a.replicas as f64),
            )),
            _ => None,
        };
        let service_names = stack::SERVICE_NAMES;
        let pick = |m: &BTreeMap<String, f64>| {
            m.iter()
                .filter(|(k, _)| service_names.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        if fixed.lost > 0 || full.lost > 0 {
            self.notes.push(format!(
                "{} messages got no reply within 35 s (fixed rate {}, full speed {})",
                fixed.lost + full.lost,
                fixed.lost,
                full.lost
            ));
        }
        self.notes.push("end-to-end latency: webhook sent (bench clock) -> reply recorded by the WhatsApp simulator (same clock, millisecond resolution)".into());
        let e2e = round2(full.sustained_msgs_per_s);
        let base = &baseline.run;
        // What the machine could do if the bench had every core: cores ÷ CPU per message of
        // every process involved. Throughput here is CPU-bound, so this tells a result measured
        // while other people's builds ran from one measured on an idle machine.
        let full_cpu_ms_per_msg: f64 = full_summary.cpu_ms_per_msg.values().sum();
        let cpu_bound_msgs_per_s = if full_cpu_ms_per_msg > 0.0 {
            round2(self.machine.cores as f64 * 1000.0 / full_cpu_ms_per_msg)
        } else {
            0.0
        };
        // The same bound with the services taken out: nats-server, the simulators and the load
        // generator do their part of every message whatever the services cost.
        let services_free_cpu_ms_per_msg: f64 = full_summary
            .cpu_ms_per_msg
            .iter()
            .filter(|(k, _)| !service_names.contains(&k.as_str()))
            .map(|(_, v)| v)
            .sum();
        let args = &self.args;
        // Unrounded: the floor ratio divides it.
        let ratio = if base.msgs_per_s > 0.0 {
            e2e / base.msgs_per_s
        } else {
            0.0
        };
        let mut report = Report {
            e2e_msgs_per_s: e2e,
            baseline_msgs_per_s: round2(base.msgs_per_s),
            ratio: round2(ratio),
            floor_ratio: (floor.ratio_ceiling > 0.0).then(|| round2(ratio / floor.ratio_ceiling)),
            nats_msgs_per_message: InOut::of(&full_summary),
            latency_ms_at_1000: (args.rate == 1000).then_some(fixed.e2e_ms),
            durable,
            without_trail,
            latency_ms: fixed.e2e_ms,
            ingress_ack_ms: fixed.ack_ms,
            rss_mb: pick(&fixed_summary.rss_mb),
            cpu_s: pick(&fixed_summary.cpu_s),
            scale_out: scale_out.points,
            cores: self.machine.cores,
            scale_out_efficiency,
            full_speed_latency_ms: full.e2e_ms,
            full_speed_ingress_ack_ms: full.ack_ms,
            fixed_rate: fixed_summary,
            fixed_rate_msgs_per_s_offered: args.rate,
            full_speed: full_summary,
            full_speed_window: args.window,
            full_speed_cpu_ms_per_msg: round3(full_cpu_ms_per_msg),
            cpu_bound_msgs_per_s,
            services_free_cpu_ms_per_msg: round3(services_free_cpu_ms_per_msg),
            ratio_ceiling_services_free: round2(ratio_ceiling(
                self.machine.cores,
                services_free_cpu_ms_per_msg,
                base.msgs_per_s,
            )),
            baseline: baseline.summary,
            durable_writes_floor: Some(floor),
            retention,
            trail,
            isolation: Some(isolation),
            routing_scale: Some(routing_scale),
            scale_out_config: ScaleOutConfig {
                otomax_latency_ms: SCALE_OUT_LATENCY_MS,
                forwarder_concurrency: SCALE_OUT_CONCURRENCY,
                window: scale_out.window,
                seconds_per_run: self.plan.scale_seconds,
            },
            targets: Vec::new(),
            machine: self.machine,
            build_profile: self.bins.profile(),
            nats_server: self.nats_version,
            simulators: self.sims_mode,
            services: self.services_mode.to_string(),
            service_log: args
                .service_log
                .clone()
                .map(|f| format!("RUST_LOG={f}"))
                .unwrap_or_else(|| "at their default level (info), to files".into()),
            service_env: args
                .service_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            quick: args.quick,
            started_at: self
                .wall_start
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            total_seconds: round2(started().elapsed().as_secs_f64()),
            notes: self.notes,
        };
        report.evaluate();
        let table = report.table();
        let out = &self.args.out;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", out.display()))?;
        let txt = out.with_extension("txt");
        std::fs::write(&txt, &table).with_context(|| format!("cannot write {}", txt.display()))?;
        println!("{table}");
        progress(&format!(
            "results: {} and {} ({:.0} s in all)",
            out.display(),
            txt.display(),
            started().elapsed().as_secs_f64()
        ));
        Ok(())
    }
}
