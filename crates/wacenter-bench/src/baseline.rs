//! The no-bus baseline: the same messages, with the same number in flight, sent straight to the
//! simulators: a signed InsertInbox to the OtomaX simulator, then OtomaX's answer posted to the
//! WhatsApp simulator's `/send/message`, with the very clients the forwarder and the reply
//! service use. What the pipeline adds on top of this is NATS, four hops and the idempotency
//! records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wacenter_otomax::{ClientConfig, InsertInboxRequest, OtomaxClient, RetryPolicy};
use wacenter_whatsapp::GowaSender;

use crate::load::{command_text, Sequence, Target};
use crate::report::{Latencies, Pcts};
use crate::stack::{APP_ID, APP_KEY, DEVICE, DEV_KEY};

#[derive(Debug, Clone)]
pub struct BaselineResult {
    pub messages: u64,
    pub errors: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    pub latency_ms: Pcts,
    pub first_error: Option<String>,
}

/// Sends `count` messages (or as many as fit in `time_cap`) with `window` in flight.
pub async fn run(
    target: &Target,
    otomax_url: &str,
    seqs: &Sequence,
    count: u64,
    window: usize,
    time_cap: Duration,
) -> anyhow::Result<BaselineResult> {
    let otomax = OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: url::Url::parse(otomax_url)?,
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        policy: RetryPolicy::default(),
        rate_limit: 0,
    });
    let gowa = GowaSender::new(url::Url::parse(&target.wa_url)?, None, target.http.clone());
    let slots = Arc::new(Semaphore::new(window));
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + time_cap;
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                crate::progress(&format!(
                    "  {:<12} {:>5.0}s  done {now:>7}/{count}  {:>6} msgs/s",
                    "baseline",
                    started.elapsed().as_secs_f64(),
                    now - last
                ));
                last = now;
            }
        })
    };
    let mut sent = 0;
    while sent < count {
        let permit = match tokio::time::timeout_at(deadline, slots.clone().acquire_owned()).await {
            Ok(p) => p?,
            Err(_) => break,
        };
        let seq = seqs.next()?;
        let phone = target.phone(seq).to_string();
        let (otomax, gowa) = (otomax.clone(), gowa.clone());
        let (latencies, errors, done, first_error) = (
            latencies.clone(),
            errors.clone(),
            done.clone(),
            first_error.clone(),
        );
        tokio::spawn(async move {
            let t = Instant::now();
            let exp = chrono::Utc::now() + chrono::Duration::seconds(30);
            let req = InsertInboxRequest::whatsapp(command_text(seq), "", phone.clone(), 1, exp);
            let outcome = match otomax.insert_inbox(&req).await {
                Ok(resp) => match resp.result.auto_reply_text() {
                    Some(text) => gowa
                        .send_text(&phone, text, Some(DEVICE), None)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    None => Err(format!("OtomaX answered status {}", resp.result.status)),
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    latencies
                        .lock()
                        .expect("latencies")
                        .record_ms(t.elapsed().as_secs_f64() * 1000.0);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error.lock().expect("error").get_or_insert(e);
                }
            }
            drop(permit);
        });
        sent += 1;
    }
    // Every permit back: every message finished.
    let _ = slots.acquire_many(window as u32).await?;
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    let messages = done.load(Ordering::Relaxed);
    let latencies = latencies.lock().expect("latencies");
    let first_error = first_error.lock().expect("error").clone();
    Ok(BaselineResult {
        messages,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        msgs_per_s: messages as f64 / seconds.max(1e-9),
        latency_ms: latencies.pcts(),
        first_error,
    })
}
