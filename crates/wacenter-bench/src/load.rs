//! The load generator: signed GOWA v8 webhooks posted to ingress, and the auto-replies that come
//! out at the WhatsApp simulator matched back to them.
//!
//! Every message is a deposit-ticket command `TIKET.<amount>.<pin>` from one of the simulator's
//! resellers. The OtomaX simulator answers it with status 21 and a text that repeats the amount
//! ("Tiket deposit Rp 10.042 berhasil…"), and it creates no outbox row, so the only thing the
//! message causes at the WhatsApp simulator is its auto-reply. Giving each message its own amount
//! (`10_000 + sequence`) makes every reply name exactly the message it answers: latency is
//! measured per message, not guessed from arrival order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::{watch, Semaphore};

use crate::report::{Latencies, Pcts};
use crate::stack::{DEVICE, WEBHOOK_SECRET};

pub const PIN: &str = "1234";
/// The simulator accepts ticket amounts from 10,000 to 100,000,000.
const AMOUNT_BASE: u64 = 10_000;
const MAX_SEQ: u64 = 99_000_000;
/// A message without a reply after this long is counted lost (its `_exp` is 30 s).
const LOST_AFTER: Duration = Duration::from_secs(35);

/// The text a message carries.
pub fn command_text(seq: u64) -> String {
    format!("TIKET.{}.{PIN}", AMOUNT_BASE + seq)
}

/// The sequence number a reply answers: the amount in "Tiket deposit Rp 10.042 berhasil…".
pub fn seq_of_reply(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("Tiket deposit Rp ")?;
    let amount: String = rest
        .split(' ')
        .next()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    amount.parse::<u64>().ok()?.checked_sub(AMOUNT_BASE)
}

/// Sequence numbers unique across the whole bench invocation, so a late reply from one run can
/// never be taken for a message of the next.
pub struct Sequence(AtomicU64);

impl Sequence {
    pub fn new() -> Self {
        Self(AtomicU64::new(1))
    }
    pub fn next(&self) -> anyhow::Result<u64> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(n < MAX_SEQ, "bench request budget exhausted");
        Ok(n)
    }
}

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn now_unix_us() -> i64 {
    unix_us(SystemTime::now())
}

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    pub webhook_url: String,
    pub wa_url: String,
    pub phones: Arc<Vec<String>>,
    /// Makes provider message ids unique across bench invocations against the same NATS.
    pub run_id: String,
}

impl Target {
    pub fn phone(&self, seq: u64) -> &str {
        &self.phones[(seq % self.phones.len() as u64) as usize]
    }

    /// Posts message `seq` of the load as one signed webhook to the bench's number; the ack
    /// latency in ms, or why it was not accepted.
    async fn post_webhook(&self, seq: u64) -> Result<f64, String> {
        let id = format!("BENCH{}{seq:09}", self.run_id);
        self.post_gowa(DEVICE, &id, self.phone(seq), &command_text(seq))
            .await
    }

    /// Posts one signed GOWA webhook: `text` from `phone` to our number `device`.
    pub async fn post_gowa(
        &self,
        device: &str,
        id: &str,
        phone: &str,
        text: &str,
    ) -> Result<f64, String> {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // The shape of GOWA v8's message event (see `gowa_message` in the e2e tests). Every
        // value is digits or fixed ASCII, so formatting it directly gives valid JSON.
        let body = format!(
            r#"{{"event":"message","device_id":"{device}","payload":{{"id":"{id}","chat_id":"{phone}@s.whatsapp.net","from":"{phone}@s.whatsapp.net","from_name":"Bench","timestamp":"{ts}","is_from_me":false,"body":"{text}"}}}}"#,
        );
        let signature = wacenter_whatsapp::sign_hub(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        let started = Instant::now();
        let response = self
            .http
            .post(&self.webhook_url)
            .header("content-type", "application/json")
            .header(wacenter_whatsapp::HUB_SIGNATURE_HEADER, signature)
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("webhook: {}", e.without_url()))?;
        let status = response.status();
        let text = response
            .bytes()
            .await
            .map_err(|e| format!("webhook body: {}", e.without_url()))?;
        let ack_ms = started.elapsed().as_secs_f64() * 1000.0;
        if !status.is_success() {
            return Err(format!(
                "ingress answered HTTP {}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&text)
            ));
        }
        Ok(ack_ms)
    }
}

/// What the bench knows about the messages of one run.
pub struct Tracker {
    state: Mutex<State>,
    /// Closed-loop runs: a permit per message in flight end to end (sent, reply not seen yet).
    window: Option<Arc<Semaphore>>,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub ack_errors: AtomicU64,
    pub replied: AtomicU64,
}

#[derive(Default)]
struct State {
    /// seq → when it was sent (Unix µs).
    pending: HashMap<u64, i64>,
    e2e_ms: Latencies,
    ack_ms: Latencies,
    reply_unix_us: Vec<i64>,
    lost: u64,
    unmatched: u64,
    first_error: Option<String>,
}

impl Tracker {
    pub fn new(window: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            window: window.map(|w| Arc::new(Semaphore::new(w))),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            replied: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tracker lock")
    }

    fn release(&self) {
        if let Some(w) = &self.window {
            w.add_permits(1);
        }
    }

    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    fn register(&self, seq: u64) {
        self.lock().pending.insert(seq, now_unix_us());
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn acked(&self, ms: f64) {
        self.lock().ack_ms.record_ms(ms);
        self.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, seq: u64, error: String) {
        let mut s = self.lock();
        s.first_error.get_or_insert(error);
        let was_pending = s.pending.remove(&seq).is_some();
        drop(s);
        self.ack_errors.fetch_add(1, Ordering::Relaxed);
        if was_pending {
            self.release();
        }
    }

    fn replied_at(&self, seq: u64, received_us: i64) {
        let mut s = self.lock();
        match s.pending.remove(&seq) {
            Some(sent_us) => {
                // The simulator stamps arrival with millisecond precision; never below zero.
                s.e2e_ms
                    .record_ms(((received_us - sent_us) as f64 / 1000.0).max(0.0));
                s.reply_unix_us.push(received_us);
                drop(s);
                self.replied.fetch_add(1, Ordering::Relaxed);
                self.release();
            }
            None => s.unmatched += 1,
        }
    }

    /// Gives up on messages whose reply is overdue, so a lost one cannot hold a window slot.
    fn sweep(&self) {
        let cutoff = now_unix_us() - LOST_AFTER.as_micros() as i64;
        let mut s = self.lock();
        let before = s.pending.len();
        s.pending.retain(|_, sent| *sent >= cutoff);
        let lost = before - s.pending.len();
        s.lost += lost as u64;
        drop(s);
        for _ in 0..lost {
            self.release();
        }
    }

    /// Gives up on everything still pending (end of a run).
    fn abandon(&self) {
        let mut s = self.lock();
        s.lost += s.pending.len() as u64;
        s.pending.clear();
    }
}

#[derive(Deserialize)]
struct OutItem {
    received_at: String,
    body: OutBody,
}

#[derive(Deserialize)]
struct OutBody {
    #[serde(default)]
    message: String,
}

/// Reads the WhatsApp simulator's outbox from `since` on, page by page, matching replies to
/// messages, until `stop`. Paging with `?since=` keeps every poll proportional to what is new.
async fn poll_replies(
    target: Target,
    tracker: Arc<Tracker>,
    mut since: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_sweep = Instant::now();
    loop {
        let url = format!("{}/_sim/outbox?since={since}", target.wa_url);
        let mut got = 0;
        match target.http.get(&url).send().await {
            Ok(r) => match r.json::<Vec<OutItem>>().await {
                Ok(items) => {
                    got = items.len();
                    since += got;
                    for item in items {
                        let Some(seq) = seq_of_reply(&item.body.message) else {
                            tracker.lock().unmatched += 1;
                            continue;
                        };
                        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&item.received_at) else {
                            continue;
                        };
                        tracker.replied_at(seq, at.timestamp_micros());
                    }
                }
                Err(e) => {
                    tracker
                        .lock()
                        .first_error
                        .get_or_insert(format!("outbox poll: {e}"));
                }
            },
            Err(e) => {
                tracker
                    .lock()
                    .first_error
                    .get_or_insert(format!("outbox poll: {}", e.without_url()));
            }
        }
        if last_sweep.elapsed() > Duration::from_secs(1) {
            tracker.sweep();
            last_sweep = Instant::now();
        }
        if *stop.borrow() {
            return;
        }
        // A full page means more is waiting: fetch it at once. Otherwise 5 ms between polls is
        // far below the latencies measured (arrival times come from the simulator's own clock,
        // so the poll interval does not add to them).
        if got < 1000 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// How a run offers its load.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Open loop: message i is sent at start + i / rate, whatever happens to earlier ones.
    FixedRate { rate: u32 },
    /// Closed loop: at most `window` messages in flight end to end; a reply (or an ingress error)
    /// lets the next one go. "As fast as the pipeline completes messages."
    Window { window: usize },
}

pub struct RunSpec {
    pub label: String,
    pub shape: Shape,
    pub duration: Duration,
    /// Replies before this are left out of the sustained rate (connections warming, queues
    /// filling up).
    pub warmup: Duration,
    /// How long to wait for the last replies after sending stops.
    pub drain: Duration,
    pub quiet: bool,
}

impl RunSpec {
    /// `window` in flight for `duration`, unmeasured: connections made, consumers bound, first
    /// pulls done.
    pub fn warm_up(window: usize, duration: Duration) -> Self {
        Self {
            label: "warm-up".into(),
            shape: Shape::Window { window },
            duration,
            warmup: Duration::ZERO,
            drain: Duration::from_secs(15),
            quiet: true,
        }
    }
}

/// Everything measured in one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub label: String,
    pub sent: u64,
    pub acked: u64,
    pub ack_errors: u64,
    pub replied: u64,
    pub lost: u64,
    pub unmatched: u64,
    pub send_seconds: f64,
    /// Replies per second between warm-up and the end of sending.
    pub sustained_msgs_per_s: f64,
    pub e2e_ms: Pcts,
    pub ack_ms: Pcts,
    /// The open-loop generator's worst lag behind its schedule (should be ~0).
    pub generator_lag_ms: f64,
    pub first_error: Option<String>,
}

/// Drives one run against `target` and returns what was measured. `check` is called every second
/// (it stops the run early when a service died).
pub async fn drive(
    target: &Target,
    seqs: &Sequence,
    spec: &RunSpec,
    since: usize,
    mut check: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<RunResult> {
    let window = match spec.shape {
        Shape::Window { window } => Some(window),
        Shape::FixedRate { .. } => None,
    };
    let tracker = Tracker::new(window);
    let (stop_tx, stop_rx) = watch::channel(false);
    let poller = tokio::spawn(poll_replies(
        target.clone(),
        tracker.clone(),
        since,
        stop_rx,
    ));
    let progress = (!spec.quiet).then(|| {
        tokio::spawn(show_progress(
            spec.label.clone(),
            tracker.clone(),
            spec.duration,
        ))
    });
    let started = Instant::now();
    let started_us = now_unix_us();
    let end = tokio::time::Instant::now() + spec.duration;
    // Bounds open-loop requests waiting for ingress, so a stalled ingress cannot make the bench
    // pile up unbounded tasks.
    let http_slots = Arc::new(Semaphore::new(4096));
    let mut lag_ms: f64 = 0.0;
    let mut last_check = Instant::now();
    let mut i: u64 = 0;
    let outcome: anyhow::Result<()> = async {
        loop {
            if last_check.elapsed() >= Duration::from_secs(1) {
                check()?;
                last_check = Instant::now();
            }
            match spec.shape {
                Shape::FixedRate { rate } => {
                    let at = tokio::time::Instant::from_std(started)
                        + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    if at >= end {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    lag_ms = lag_ms.max(at.elapsed().as_secs_f64() * 1000.0);
                }
                Shape::Window { .. } => {
                    let w = tracker.window.as_ref().expect("window run");
                    match tokio::time::timeout_at(end, w.acquire()).await {
                        Ok(permit) => permit.expect("never closed").forget(),
                        Err(_) => break,
                    }
                }
            }
            let slot = http_slots.clone().acquire_owned().await?;
            let seq = seqs.next()?;
            tracker.register(seq);
            let (t, tr) = (target.clone(), tracker.clone());
            tokio::spawn(async move {
                match t.post_webhook(seq).await {
                    Ok(ms) => tr.acked(ms),
                    Err(e) => tr.failed(seq, e),
                }
                drop(slot);
            });
            i += 1;
        }
        Ok(())
    }
    .await;
    let send_seconds = started.elapsed().as_secs_f64();
    let end_us = now_unix_us();
    if outcome.is_ok() {
        // Drain: wait for the replies still on their way.
        let drain_end = Instant::now() + spec.drain;
        while tracker.pending() > 0 && Instant::now() < drain_end {
            if last_check.elapsed() >= Duration::from_secs(1) {
                check()?;
                last_check = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = stop_tx.send(true);
    let _ = poller.await;
    if let Some(p) = progress {
        p.abort();
    }
    outcome?;
    tracker.abandon();
    let s = tracker.lock();
    // A warm-up as long as the run would leave nothing to count.
    let warm_us = started_us + spec.warmup.min(spec.duration / 3).as_micros() as i64;
    let counted = s
        .reply_unix_us
        .iter()
        .filter(|t| **t >= warm_us && **t <= end_us)
        .count();
    let measured_s = (end_us - warm_us) as f64 / 1e6;
    Ok(RunResult {
        label: spec.label.clone(),
        sent: tracker.sent.load(Ordering::Relaxed),
        acked: tracker.acked.load(Ordering::Relaxed),
        ack_errors: tracker.ack_errors.load(Ordering::Relaxed),
        replied: tracker.replied.load(Ordering::Relaxed),
        lost: s.lost,
        unmatched: s.unmatched,
        send_seconds,
        sustained_msgs_per_s: if measured_s > 0.0 {
            counted as f64 / measured_s
        } else {
            0.0
        },
        e2e_ms: s.e2e_ms.pcts(),
        ack_ms: s.ack_ms.pcts(),
        generator_lag_ms: lag_ms,
        first_error: s.first_error.clone(),
    })
}

/// One line a second while a run goes.
async fn show_progress(label: String, tracker: Arc<Tracker>, duration: Duration) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last_replied = 0;
    loop {
        tick.tick().await;
        let replied = tracker.replied.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let phase = if elapsed <= duration.as_secs_f64() + 0.5 {
            format!("{elapsed:>4.0}s/{}s", duration.as_secs())
        } else {
            "draining".into()
        };
        crate::progress(&format!(
            "  {label:<12} {phase:>9}  sent {:>7}  acked {:>7}  replied {:>7}  in flight {:>5}  {:>6} replies/s",
            tracker.sent.load(Ordering::Relaxed),
            tracker.acked.load(Ordering::Relaxed),
            replied,
            tracker.pending(),
            replied - last_replied,
        ));
        last_replied = replied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_name_their_message() {
        assert_eq!(command_text(42), "TIKET.10042.1234");
        assert_eq!(
            seq_of_reply(
                "Tiket deposit Rp 10.042 berhasil. Transfer tepat Rp 10.300 sebelum 3 jam."
            ),
            Some(42)
        );
        assert_eq!(
            seq_of_reply("Tiket deposit Rp 98.010.000 berhasil."),
            Some(98_000_000)
        );
        assert_eq!(seq_of_reply("Saldo Reseller R1 Rp 1.000.000"), None);
    }
}
