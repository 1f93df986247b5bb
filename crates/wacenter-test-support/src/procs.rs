//! Child processes the bench and the end-to-end tests start (nats-server, the services, the
//! simulators) and what the kernel says about them: peak resident memory (`VmHWM` in `/proc/<pid>/status`) and CPU time
//! (`utime + stime` in `/proc/<pid>/stat`). Every child is killed when its handle is dropped, so
//! an error or Ctrl-C in the middle of a run leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

/// One started process.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: tokio::process::Child,
    log: PathBuf,
}

/// Memory and CPU of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Peak resident set since the process started (kB).
    pub hwm_kb: u64,
    /// Resident set now (kB).
    pub rss_kb: u64,
    /// CPU time used so far, user + system, in seconds.
    pub cpu_s: f64,
}

impl ProcSample {
    pub fn hwm_mb(&self) -> f64 {
        self.hwm_kb as f64 / 1024.0
    }
}

impl Proc {
    /// Starts `program` with exactly `env` (nothing inherited, so a stray `RUST_LOG` or
    /// `NATS_URL` in the operator's shell cannot change what is measured); stdout and stderr go
    /// to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Proc {
            name: name.to_string(),
            pid,
            child,
            log,
        })
    }

    /// What `/proc` says now; `None` once the process is gone.
    pub fn sample(&self) -> Option<ProcSample> {
        sample_pid(self.pid)
    }

    /// `Err` with the end of its log when the process has stopped on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => anyhow::bail!(
                "{} stopped unexpectedly ({status}); end of its log:\n{}",
                self.name,
                self.log_tail(20)
            ),
            Err(e) => anyhow::bail!("cannot check {}: {e}", self.name),
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGKILL, as a crash would: no graceful shutdown, in-flight work abandoned.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM (the services finish in-flight work on it), then SIGKILL after `grace`. Returns
    /// the last sample taken before the signal.
    pub async fn stop(&mut self, grace: Duration) -> Option<ProcSample> {
        let last = self.sample();
        // No libc here (the workspace forbids unsafe code): `kill` does the signalling.
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        last
    }
}

/// Reads `VmHWM` and `utime + stime` of `pid`.
pub fn sample_pid(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (hwm_kb, rss_kb) = (kb("VmHWM:"), kb("VmRSS:"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count fields after its closing paren.
    // What follows is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample {
        hwm_kb,
        rss_kb,
        cpu_s: ticks as f64 / clock_ticks_per_second(),
    })
}

/// `sysconf(_SC_CLK_TCK)` without libc: ask `getconf` once (100 on every common Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds the whole machine has been busy (all cores: user, nice, system, irq, softirq,
/// steal), from the first line of `/proc/stat`.
pub fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy as f64 / clock_ticks_per_second())
}

/// 1-minute load average (`/proc/loadavg`), for the report next to every number.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `n` distinct loopback ports nobody listens on right now, below the kernel's ephemeral range:
/// a port taken from that range could meanwhile become the source port of one of the many
/// outgoing connections of a run (the server then cannot bind it), or let a readiness poll
/// "connect" to itself. All `n` are held while choosing, so they differ from each other.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(12_000));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32);
    let mut held = Vec::with_capacity(n);
    for _ in 0..20_000 {
        if held.len() == n {
            break;
        }
        // xorshift: any spread will do, it only has to avoid retrying the same ports.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = low + (seed % u64::from(high - low)) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    anyhow::ensure!(held.len() == n, "cannot find {n} free loopback ports");
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port} after {limit:?}")
}

/// Waits until a NATS server answers on 127.0.0.1:`port` (it greets every client with `INFO`).
pub async fn wait_for_nats(port: u16, limit: Duration) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut greeting = [0u8; 5];
            let read =
                tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut greeting))
                    .await;
            if matches!(read, Ok(Ok(_))) && &greeting == b"INFO " {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no NATS server answers on 127.0.0.1:{port} after {limit:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample_pid(std::process::id()).expect("own /proc entry");
        assert!(s.hwm_kb > 0);
        assert!(s.cpu_s >= 0.0);
        assert!(sample_pid(u32::MAX).is_none());
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(16).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 16);
    }
}
