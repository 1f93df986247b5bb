//! Starting the pieces of a wacenter on loopback: nats-server, the two simulators and the four
//! services, each as its own process (so `/proc` can tell their memory and CPU apart).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::sync::watch;
use wacenter_config::Settings;
use wacenter_sim::inspect::SimClient;

use wacenter_test_support::procs::{free_ports, wait_for_nats, wait_for_port, Proc, ProcSample};

/// The demo's credentials and WhatsApp device, as everywhere else.
pub use wacenter_sim::demo::{APP_ID, APP_KEY, DEVICE, DEV_KEY, WEBHOOK_SECRET};

/// Where the binaries are.
pub struct Binaries {
    pub dir: PathBuf,
    pub wacenter: Option<PathBuf>,
    pub nats_server: Option<PathBuf>,
}

impl Binaries {
    /// The service binaries next to the running executable (`target/<profile>/`), or one level up
    /// when it is an example or test (`target/<profile>/examples/`), or `dir` when given.
    pub fn find(dir: Option<&Path>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot tell where this executable is")?;
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => vec![d.to_path_buf()],
            None => exe
                .ancestors()
                .skip(1)
                .take(2)
                .map(Path::to_path_buf)
                .collect(),
        };
        let dir = candidates
            .iter()
            .find(|d| SERVICES.iter().all(|s| d.join(s.binary()).is_file()))
            .cloned()
            .with_context(|| {
                format!(
                    "the service binaries (wacenter-ingress, -forwarder, -reply, -callback) are not in {}; \
                     build them with `cargo build --release --workspace --bins` or pass --bin-dir",
                    candidates
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                )
            })?;
        let wacenter = Some(dir.join("wacenter")).filter(|p| p.is_file());
        let nats_server = find_nats_server(&dir);
        Ok(Self {
            dir,
            wacenter,
            nats_server,
        })
    }

    pub fn service(&self, service: Service) -> PathBuf {
        self.dir.join(service.binary())
    }

    /// `release`, `debug`, … (the directory name under `target/`).
    pub fn profile(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// `$NATS_SERVER_BIN`, the project-local `.local/bin/nats-server` that `scripts/test` /
/// `scripts/bench` install when the one on `PATH` is missing or too old (two levels above
/// `target/<profile>/`), or `nats-server` on `PATH`.
fn find_nats_server(bin_dir: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    if let Some(p) = bin_dir
        .ancestors()
        .skip(2)
        .take(1)
        .map(|root| root.join(".local/bin/nats-server"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingress,
    Forwarder,
    Reply,
    Callback,
}

/// The names processes of the services are sampled under (the others are nats-server, the
/// simulators and the load generator).
pub const SERVICE_NAMES: [&str; 5] = ["ingress", "forwarder", "reply", "callback", ONE_PROCESS];

pub const SERVICES: [Service; 4] = [
    Service::Ingress,
    Service::Forwarder,
    Service::Reply,
    Service::Callback,
];

impl Service {
    fn binary(self) -> &'static str {
        match self {
            Self::Ingress => "wacenter-ingress",
            Self::Forwarder => "wacenter-forwarder",
            Self::Reply => "wacenter-reply",
            Self::Callback => "wacenter-callback",
        }
    }
}

/// The NATS the services use: a private nats-server (fresh store) or one given with --nats-url.
pub enum Nats {
    Own {
        proc: Box<Proc>,
        url: String,
        /// HTTP monitoring port (`/varz`: message counts).
        monitor_port: u16,
        /// Go's profiling port (`/debug/pprof/heap`: the memory it keeps, after a collection).
        profile_port: u16,
        /// How it was started, to start it again on the same store.
        binary: PathBuf,
        args: Vec<String>,
        log_dir: PathBuf,
        // Removed when dropped, after the process is gone.
        _store: tempfile::TempDir,
    },
    External {
        url: String,
    },
}

/// When a private nats-server makes JetStream's writes durable on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// nats-server's default: the store is synced every 2 minutes, so an OS crash or power loss
    /// can lose what it acknowledged since.
    Default,
    /// `sync_interval: always`: every write is on disk before it is acknowledged.
    Always,
}

impl Nats {
    pub async fn start(binary: Option<&Path>, work: &Path, log_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(binary, work, log_dir, Fsync::Default).await
    }

    pub async fn start_with(
        binary: Option<&Path>,
        work: &Path,
        log_dir: &Path,
        fsync: Fsync,
    ) -> anyhow::Result<Self> {
        let binary = binary.context(
            "no nats-server found: put it on PATH, set NATS_SERVER_BIN, run scripts/bench (it installs one), or pass --nats-url",
        )?;
        let store = tempfile::Builder::new().prefix("nats-").tempdir_in(work)?;
        let ports = free_ports(3)?;
        let (port, monitor_port, profile_port) = (ports[0], ports[1], ports[2]);
        let mut args = vec![
            "-a".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "--profile".into(),
            profile_port.to_string(),
            "-js".into(),
            "-sd".into(),
            store.path().display().to_string(),
        ];
        if fsync == Fsync::Always {
            // No command-line flag sets it; the options above still apply on top of the file.
            let conf = store.path().with_extension("conf");
            std::fs::write(&conf, "jetstream {\n  sync_interval: always\n}\n")
                .with_context(|| format!("cannot write {}", conf.display()))?;
            args.extend(["-c".into(), conf.display().to_string()]);
        }
        let proc = spawn_nats(binary, &args, log_dir, port).await?;
        Ok(Nats::Own {
            proc: Box::new(proc),
            url: format!("nats://127.0.0.1:{port}"),
            monitor_port,
            profile_port,
            binary: binary.to_path_buf(),
            args,
            log_dir: log_dir.to_path_buf(),
            _store: store,
        })
    }

    /// A fresh private nats-server with wacenter's topology declared, restarted and settled:
    /// with its resident memory (KB), the base a measured store is compared with.
    pub async fn fresh_with_topology(
        binary: Option<&Path>,
        work: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<(Self, u64)> {
        let mut nats = Nats::start(binary, work, log_dir).await?;
        let bus =
            wacenter_bus::Bus::connect(nats.url(), "bench", wacenter_bus::Topology::default())
                .await?;
        bus.ensure_topology().await?;
        bus.drain().await;
        let rss_kb = nats.restart_settled().await?;
        Ok((nats, rss_kb))
    }

    /// [`Nats::restart`], then a few seconds to settle: its resident memory (KB) then.
    pub async fn restart_settled(&mut self) -> anyhow::Result<u64> {
        self.restart().await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(self.sample().map(|s| s.rss_kb).unwrap_or(0))
    }

    /// Bytes the private nats-server's store takes on disk (every file under it, as written:
    /// after compression), or `None` for an external NATS.
    pub fn store_bytes(&self) -> Option<u64> {
        let Nats::Own { _store, .. } = self else {
            return None;
        };
        fn walk(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| match entry.metadata() {
                    Ok(m) if m.is_dir() => walk(&entry.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        Some(walk(_store.path()))
    }

    /// Stops the private nats-server (SIGTERM) and starts it again on the same store and
    /// ports: what it holds afterwards is what it keeps, not what a burst left in caches.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let Nats::Own {
            proc,
            url,
            binary,
            args,
            log_dir,
            ..
        } = self
        else {
            bail!("an external NATS is not restarted");
        };
        let port: u16 = url.rsplit(':').next().unwrap_or_default().parse()?;
        proc.stop(Duration::from_secs(10)).await;
        **proc = spawn_nats(binary, args, log_dir, port).await?;
        Ok(())
    }

    /// `Err` when the private nats-server has stopped (crashed).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Nats::Own { proc, .. } => proc.check_alive().map_err(|e| {
                e.context(
                    "nats-server stopped: nats-server 2.9 is known to crash when several clients \
                     declare the same stream at once; use a newer one (NATS_SERVER_BIN=..., or \
                     scripts/bench's pinned 2.12 when none is on PATH)",
                )
            }),
            Nats::External { .. } => Ok(()),
        }
    }

    /// The end of the server's log (for errors).
    pub fn log_tail(&self) -> String {
        match self {
            Nats::Own { proc, .. } => proc.log_tail(15),
            Nats::External { .. } => String::new(),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Nats::Own { url, .. } | Nats::External { url } => url,
        }
    }

    pub fn sample(&self) -> Option<ProcSample> {
        match self {
            Nats::Own { proc, .. } => proc.sample(),
            Nats::External { .. } => None,
        }
    }

    /// Messages the server has received and sent so far (`/varz` `in_msgs`, `out_msgs`): every
    /// publish, KV write, ack and API request counts, so the difference over a run divided by
    /// the messages of the run is the NATS traffic one WhatsApp message causes.
    pub async fn message_counts(&self, http: &reqwest::Client) -> Option<(u64, u64)> {
        let v = self.varz(http).await?;
        Some((v.get("in_msgs")?.as_u64()?, v.get("out_msgs")?.as_u64()?))
    }

    /// Whether the private nats-server syncs every write before acknowledging it, as it says
    /// itself (`/varz` `jetstream.config.sync_always`).
    pub async fn syncs_always(&self, http: &reqwest::Client) -> Option<bool> {
        let v = self.varz(http).await?;
        Some(
            v["jetstream"]["config"]["sync_always"]
                .as_bool()
                .unwrap_or(false),
        )
    }

    /// The private nats-server's `/varz` (`None` for an external NATS, or when it does not
    /// answer).
    async fn varz(&self, http: &reqwest::Client) -> Option<Value> {
        let Nats::Own { monitor_port, .. } = self else {
            return None;
        };
        http.get(format!("http://127.0.0.1:{monitor_port}/varz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    /// The Go heap the private nats-server keeps (KB): `HeapAlloc` read right after a forced
    /// collection (`/debug/pprof/heap?gc=1`), so it is what the server holds on to, not garbage
    /// nor memory Go has not handed back to the OS yet (which its resident size still counts).
    pub async fn live_heap_kb(&self, http: &reqwest::Client) -> Option<u64> {
        let Nats::Own { profile_port, .. } = self else {
            return None;
        };
        let text = http
            .get(format!(
                "http://127.0.0.1:{profile_port}/debug/pprof/heap?gc=1&debug=1"
            ))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let bytes: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("# HeapAlloc = "))?
            .trim()
            .parse()
            .ok()?;
        Some(bytes / 1024)
    }

    /// [`Nats::live_heap_kb`] once nats-server's block caches have expired: the least of
    /// samples every 10 s over `over` (a restart and any read load whole blocks, which it
    /// keeps a while and then lets go).
    pub async fn settled_heap_kb(&self, http: &reqwest::Client, over: Duration) -> Option<u64> {
        let until = std::time::Instant::now() + over;
        let mut least = self.live_heap_kb(http).await?;
        while std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(10)).await;
            least = least.min(self.live_heap_kb(http).await?);
        }
        Some(least)
    }

    /// Stops a nats-server of our own (its store goes when this is dropped).
    pub async fn stop(&mut self) -> Option<ProcSample> {
        match self {
            Nats::Own { proc, .. } => proc.stop(Duration::from_secs(5)).await,
            Nats::External { .. } => None,
        }
    }
}

async fn spawn_nats(
    binary: &Path,
    args: &[String],
    log_dir: &Path,
    port: u16,
) -> anyhow::Result<Proc> {
    let mut proc = Proc::spawn("nats-server", binary, args, &[], log_dir)?;
    if let Err(e) = wait_for_nats(port, Duration::from_secs(15)).await {
        proc.check_alive()?;
        return Err(e);
    }
    Ok(proc)
}

/// `nats-server --version`, for the report.
pub fn nats_version(binary: Option<&Path>) -> Option<String> {
    let out = std::process::Command::new(binary?)
        .arg("--version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The OtomaX and WhatsApp simulators.
pub struct Sims {
    /// With a trailing `/` (the services' OTOMAX_API_URL).
    pub otomax_url: String,
    pub wa_url: String,
    procs: Vec<Proc>,
    /// In-process simulators stop when this is dropped.
    _stop: Option<watch::Sender<bool>>,
}

impl Sims {
    /// As `wacenter sim otomax|whatsapp` processes when the `wacenter` binary is there (their
    /// CPU then stays out of the bench's own numbers), else inside this process.
    pub async fn start(
        wacenter: Option<&Path>,
        in_process: bool,
        resellers_file: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let sims = match wacenter.filter(|_| !in_process) {
            Some(bin) => Self::start_processes(bin, resellers_file, log_dir).await?,
            None => Self::start_in_process(resellers_file).await?,
        };
        let http = wacenter_otomax::client::shared_http_client();
        for url in [
            format!("{}_sim/stats", sims.otomax_url),
            format!("{}/_sim/stats", sims.wa_url),
        ] {
            wait_ok(&http, &url, Duration::from_secs(15)).await?;
        }
        Ok(sims)
    }

    async fn start_processes(
        bin: &Path,
        resellers_file: &Path,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let ports = free_ports(2)?;
        let (otomax_port, wa_port) = (ports[0], ports[1]);
        let otomax_env = vec![
            ("OTOMAX_APP_ID".to_string(), APP_ID.to_string()),
            ("OTOMAX_APP_KEY".into(), APP_KEY.into()),
            ("OTOMAX_DEV_KEY".into(), DEV_KEY.into()),
            // The simulators log at warn: their per-request lines are not what is measured.
            ("RUST_LOG".into(), "warn".into()),
        ];
        let otomax = Proc::spawn(
            "sim-otomax",
            bin,
            &[
                "sim".into(),
                "otomax".into(),
                "--port".into(),
                otomax_port.to_string(),
                "--resellers-file".into(),
                resellers_file.display().to_string(),
            ],
            &otomax_env,
            log_dir,
        )?;
        let wa_env = vec![
            ("WA_WEBHOOK_SECRET".to_string(), WEBHOOK_SECRET.to_string()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        let wa = Proc::spawn(
            "sim-whatsapp",
            bin,
            &[
                "sim".into(),
                "whatsapp".into(),
                "--port".into(),
                wa_port.to_string(),
                // Nothing is posted there: the bench sends its webhooks itself.
                "--webhook-url".into(),
                "http://127.0.0.1:9/webhook/gowa".into(),
                "--device-id".into(),
                DEVICE.into(),
            ],
            &wa_env,
            log_dir,
        )?;
        let mut procs = vec![otomax, wa];
        for (proc, port) in procs.iter_mut().zip([otomax_port, wa_port]) {
            if let Err(e) = wait_for_port(port, Duration::from_secs(15)).await {
                proc.check_alive()?;
                return Err(e);
            }
        }
        Ok(Self {
            otomax_url: format!("http://127.0.0.1:{otomax_port}/"),
            wa_url: format!("http://127.0.0.1:{wa_port}"),
            procs,
            _stop: None,
        })
    }

    async fn start_in_process(resellers_file: &Path) -> anyhow::Result<Self> {
        use wacenter_sim::otomax::{load_resellers_file, OtomaxSim};
        use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};
        let resellers = load_resellers_file(resellers_file).map_err(anyhow::Error::msg)?;
        let (stop, stopped) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let otomax = OtomaxSim::new(wacenter_sim::demo::otomax(
            resellers,
            Duration::from_millis(1500),
        ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let otomax_addr = l.local_addr()?;
        tokio::spawn(otomax.serve(l, until(stopped.clone())));
        let wa = WhatsappSim::new(WhatsappSimConfig {
            webhook_url: None,
            webhook_secret: WEBHOOK_SECRET.into(),
            device_id: DEVICE.into(),
            other_devices: Vec::new(),
            basic_auth: None,
            echo_sent: false,
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let wa_addr = l.local_addr()?;
        tokio::spawn(wa.serve(l, until(stopped)));
        Ok(Self {
            otomax_url: format!("http://{otomax_addr}/"),
            wa_url: format!("http://{wa_addr}"),
            procs: Vec::new(),
            _stop: Some(stop),
        })
    }

    pub fn in_process(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn samples(&self) -> Vec<(String, Option<ProcSample>)> {
        self.procs
            .iter()
            .map(|p| (p.name.clone(), p.sample()))
            .collect()
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.procs.iter_mut().try_for_each(Proc::check_alive)
    }

    /// Forgets everything both simulators received (keeps their lists, and their memory, small).
    pub async fn reset(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        for base in [&self.otomax_url, &self.wa_url] {
            SimClient::new(base, http.clone()).reset().await?;
        }
        Ok(())
    }

    /// OtomaX's added latency per call (`POST /_sim/faults`).
    pub async fn set_otomax_latency(&self, http: &reqwest::Client, ms: u64) -> anyhow::Result<()> {
        SimClient::new(&self.otomax_url, http.clone())
            .faults(&serde_json::json!({"latency_ms": ms}))
            .await?;
        Ok(())
    }

    pub async fn stop(&mut self) {
        for p in &mut self.procs {
            p.stop(Duration::from_secs(5)).await;
        }
        self._stop.take();
    }
}

/// Polls `url` until it answers 2xx.
pub async fn wait_ok(http: &reqwest::Client, url: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                last = format!(
                    "HTTP {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{url} not ready after {limit:?}: {last}")
}

/// Waits for `/readyz` on `port` of the service `what` that `proc` runs; on failure, says
/// whether the process died and shows the end of its log.
async fn wait_ready(
    http: &reqwest::Client,
    proc: &mut Proc,
    what: &str,
    port: u16,
) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    if let Err(e) = wait_ok(http, &url, Duration::from_secs(30)).await {
        proc.check_alive()?;
        return Err(e.context(format!(
            "{what} did not become ready; end of its log:\n{}",
            proc.log_tail(15)
        )));
    }
    Ok(())
}

/// What the services are started with.
#[derive(Clone)]
pub struct StackConfig {
    pub nats_url: String,
    pub otomax_url: String,
    pub wa_url: String,
    pub forwarders: usize,
    pub forwarder_concurrency: Option<usize>,
    pub callback: bool,
    /// `RUST_LOG` for the services; `None` = their own default (info for wacenter's crates).
    pub rust_log: Option<String>,
    /// Extra environment for every service process (experiments: `TOKIO_WORKER_THREADS=1`,
    /// `LD_PRELOAD=…jemalloc…`).
    pub extra_env: Vec<(String, String)>,
    /// Run the services as one `wacenter all` process (one forwarder only) instead of one
    /// process each: the single-machine deployment.
    pub one_process: bool,
}

impl StackConfig {
    /// The environment of a service process: its settings, then `RUST_LOG` and the extras.
    fn env_for(&self, settings: &Settings) -> Vec<(String, String)> {
        let mut env = settings.to_env();
        if let Some(filter) = &self.rust_log {
            env.push(("RUST_LOG".into(), filter.clone()));
        }
        env.extend(self.extra_env.iter().cloned());
        env
    }
}

/// The process name of `wacenter all` in the results.
pub const ONE_PROCESS: &str = "all (one process)";

/// The services of one run, each a process.
pub struct Stack {
    pub procs: Vec<(Service, Proc)>,
    pub ingress_url: String,
}

impl Stack {
    pub async fn start(
        bins: &Binaries,
        config: &StackConfig,
        log_dir: &Path,
    ) -> anyhow::Result<Stack> {
        // Every port of the run at once, so none repeats.
        let ports = free_ports(3 + config.forwarders)?;
        let mut base = Settings {
            otomax_api_url: config.otomax_url.clone(),
            gowa_url: config.wa_url.clone(),
            ingress_port: ports[0],
            reply_port: ports[1],
            app_port: ports[2],
            ..wacenter_sim::demo::settings(&config.nats_url)
        };
        base.public_url = format!("http://127.0.0.1:{}", base.app_port);
        if let Some(c) = config.forwarder_concurrency {
            base.forwarder_concurrency = c;
        }
        if config.one_process {
            base.forwarder_port = ports[3];
            return Self::start_one_process(bins, config, &base, log_dir).await;
        }
        let mut plan: Vec<(Service, String, u16, Settings)> = Vec::new();
        plan.push((
            Service::Ingress,
            "ingress".into(),
            base.ingress_port,
            base.clone(),
        ));
        for i in 0..config.forwarders {
            let mut s = base.clone();
            s.forwarder_port = ports[3 + i];
            let name = if config.forwarders == 1 {
                "forwarder".to_string()
            } else {
                format!("forwarder-{}", i + 1)
            };
            plan.push((Service::Forwarder, name, s.forwarder_port, s));
        }
        plan.push((
            Service::Reply,
            "reply".into(),
            base.reply_port,
            base.clone(),
        ));
        if config.callback {
            plan.push((
                Service::Callback,
                "callback".into(),
                base.app_port,
                base.clone(),
            ));
        }
        let mut stack = Stack {
            procs: Vec::new(),
            ingress_url: format!("http://127.0.0.1:{}", base.ingress_port),
        };
        let http = wacenter_otomax::client::shared_http_client();
        // Ingress first, alone, until ready (its streams and buckets declared); then the rest.
        // Four services declaring the same streams at the same instant crash nats-server 2.9
        // now and then (a nil dereference in its stream update); on a declared topology their
        // create-or-update calls are harmless.
        let mut plan = plan.into_iter();
        let first: Vec<_> = plan.by_ref().take(1).collect();
        for batch in [first, plan.collect()] {
            let start = stack.procs.len();
            let mut ports = Vec::new();
            for (service, name, port, settings) in batch {
                let env = config.env_for(&settings);
                let proc = Proc::spawn(&name, &bins.service(service), &[], &env, log_dir)?;
                stack.procs.push((service, proc));
                ports.push(port);
            }
            for (i, port) in ports.into_iter().enumerate() {
                let p = &mut stack.procs[start + i].1;
                let name = p.name.clone();
                wait_ready(&http, p, &name, port).await?;
            }
        }
        Ok(stack)
    }

    /// `wacenter all --services ingress,forwarder,reply[,callback]`, ready on every port.
    async fn start_one_process(
        bins: &Binaries,
        config: &StackConfig,
        settings: &Settings,
        log_dir: &Path,
    ) -> anyhow::Result<Stack> {
        anyhow::ensure!(
            config.forwarders == 1,
            "one process runs exactly one forwarder"
        );
        let wacenter = bins.wacenter.as_deref().with_context(|| {
            format!(
                "--one-process needs the `wacenter` binary in {}",
                bins.dir.display()
            )
        })?;
        let mut services = vec![
            ("ingress", settings.ingress_port),
            ("forwarder", settings.forwarder_port),
            ("reply", settings.reply_port),
        ];
        if config.callback {
            services.push(("callback", settings.app_port));
        }
        let names: Vec<&str> = services.iter().map(|(n, _)| *n).collect();
        let args = vec!["all".to_string(), "--services".into(), names.join(",")];
        let env = config.env_for(settings);
        let proc = Proc::spawn(ONE_PROCESS, wacenter, &args, &env, log_dir)?;
        let mut stack = Stack {
            procs: vec![(Service::Ingress, proc)],
            ingress_url: format!("http://127.0.0.1:{}", settings.ingress_port),
        };
        let http = wacenter_otomax::client::shared_http_client();
        for (name, port) in services {
            let what = format!("{name} in `wacenter all`");
            wait_ready(&http, &mut stack.procs[0].1, &what, port).await?;
        }
        Ok(stack)
    }

    pub fn samples(&self) -> Vec<(String, Option<ProcSample>)> {
        self.procs
            .iter()
            .map(|(_, p)| (p.name.clone(), p.sample()))
            .collect()
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.procs.iter_mut().try_for_each(|(_, p)| p.check_alive())
    }

    /// Stops every service gracefully (in parallel: each may take a moment to drain).
    pub async fn stop(self) -> Vec<(String, Option<ProcSample>)> {
        let stops = self.procs.into_iter().map(|(_, mut p)| async move {
            let name = p.name.clone();
            (name, p.stop(Duration::from_secs(10)).await)
        });
        futures::future::join_all(stops).await
    }
}
