//! What the message trail costs nats-server, and how fast one message is found on it.
//!
//! Measured on a week of trail, not extrapolated (nats-server's memory is not linear in what it
//! stores): on a fresh nats-server with wacenter's topology, a week of purchases at `per_day`
//! from `phones` resellers is written as the services write it (six steps and three keys a
//! purchase: received, forwarded, the auto-reply sent, the outbox row, its delivery sent,
//! UpdateStatusOutbox; each key after its step is stored, with the step's sequence), with texts
//! of real length and the steps' own times spread over the week. The server is restarted (so
//! only what it keeps counts), its memory read, and one purchase from the middle of the week is
//! looked up by each kind of query with `wacenter_bus::trail::find`, as `wacenter trace` and
//! the console do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use std::future::IntoFuture;
use wacenter_bus::trail::{self, Lookup};
use wacenter_proto::{names, TrailEvent, TrailKey, TrailKeyKind, TrailStep};

use crate::report::{round2, round3};
use crate::stack::Nats;

/// How long nats-server's heap is watched after a restart for what it keeps: a minute at the
/// target's rate, whose week of blocks takes that long to leave the caches; less for the small
/// trails of quick runs and tests, whose figure is not held to the target.
fn heap_settle(per_day: u64) -> Duration {
    Duration::from_secs(if per_day >= 100_000 { 60 } else { 10 })
}

/// Steps and keys one purchase leaves on the trail.
pub const STEPS_PER_PURCHASE: u64 = 6;
pub const KEYS_PER_PURCHASE: u64 = 3;

/// The trail figures of `bench/results/latest.json` (`trail`).
#[derive(Debug, Clone, Serialize)]
pub struct TrailSummary {
    pub messages_per_day: u64,
    pub days: u64,
    /// Resellers the messages came from (one trail subject each).
    pub phones: u64,
    pub purchases_written: u64,
    pub steps_written: u64,
    /// nats-server's resident memory after a restart, MB: with wacenter's topology and no trail,
    /// and with the week's trail. It includes block buffers Go has freed but not yet handed
    /// back to the OS, so it moves by tens of MB from one run to the next.
    pub without_trail_rss_mb: f64,
    pub with_trail_rss_mb: f64,
    /// nats-server's Go heap after a forced collection, MB, without and with the week's trail:
    /// what the server keeps (the least of samples over a minute after the restart, once the
    /// blocks the restart loaded have left its caches).
    pub without_trail_heap_mb: f64,
    pub with_trail_heap_mb: f64,
    /// What the week makes nats-server keep (heap growth), measured at `messages_per_day`
    /// (100,000 in the full bench) and not scaled: the cost is per block and per subject, not
    /// per message (a `--quick` week of 10,000 a day kept 13.7 MB, ten times that 19.7 MB).
    pub memory_mb_per_week_at_100k_day: f64,
    /// `WA_TRAIL` and `WA_TRAIL_KEYS` bytes per purchase as JetStream counts them (uncompressed
    /// messages).
    pub store_kb_per_message: f64,
    /// What the week adds to nats-server's store on disk, per purchase (S2-compressed blocks
    /// and indexes, as written).
    pub disk_kb_per_message: f64,
    /// One lookup on the week's trail, by kind of query, milliseconds.
    pub lookup_ms: BTreeMap<String, f64>,
}

/// One purchase's steps, and its keys each with the index of the step it is recorded with.
/// `at`: when its message came; the steps follow over a minute.
fn purchase(
    n: u64,
    phone: &str,
    at: chrono::DateTime<Utc>,
) -> (Vec<TrailEvent>, Vec<(TrailKey, usize)>) {
    let message_id = format!("3EB0{n:016X}");
    let id = format!("gowa:628987654321@s.whatsapp.net:{message_id}");
    let kode_inbox = 9_000_000_000 + n as i64;
    let kode = 7_000_000_000 + n as i64;
    let destination = format!("0812{:08}", n % 100_000_000);
    let step = |kind: TrailStep, id: &str, secs: i64| {
        let mut e = TrailEvent::new(kind, id, phone);
        e.at = at + chrono::Duration::seconds(secs);
        e
    };
    let mut received = step(TrailStep::Received, &id, 0);
    received.text = format!("S5.{destination}.1234");
    let mut forwarded = step(TrailStep::Forwarded, &id, 1);
    forwarded.kode_inbox = Some(kode_inbox);
    forwarded.status = Some(21);
    forwarded.detail = "Sukses Masuk Outbox (1 attempt)".into();
    forwarded.reply = TrailEvent::shorten(&format!(
        "S5.{destination} sedang diproses. Harga Rp 5.150. Saldo Rp 994.850. Trx #{kode_inbox}"
    ));
    let reply_id = format!("autoreply:{id}");
    let mut sent = step(TrailStep::Sent, &reply_id, 2);
    sent.kode_inbox = Some(kode_inbox);
    sent.detail = format!("provider message id 3EB0{:016X}", n ^ 0xABCD);
    sent.text = forwarded.reply.clone();
    let row_id = format!("outbox:{kode}");
    let mut row = step(TrailStep::OutboxReceived, &row_id, 60);
    row.kode = Some(kode);
    row.kode_inbox = Some(kode_inbox);
    row.text = TrailEvent::shorten(&format!(
        "SUKSES S5.{destination} SN:{:020}. Harga Rp 5.150. Saldo Rp 994.850. Trx #{kode_inbox}",
        n * 7919
    ));
    let mut delivered = step(TrailStep::Sent, &row_id, 61);
    delivered.kode = Some(kode);
    delivered.kode_inbox = Some(kode_inbox);
    delivered.detail = format!("provider message id 3EB0{:016X}", n ^ 0x1234);
    delivered.text = row.text.clone();
    let mut status = step(TrailStep::OutboxStatus, &row_id, 62);
    status.kode = Some(kode);
    status.kode_inbox = Some(kode_inbox);
    status.status = Some(20);
    status.detail = "UpdateStatusOutbox 20 reported to OtomaX".into();
    // As `Trail::record_with_key` makes them.
    let key = |key: String, kind, of: &TrailEvent| TrailKey::for_step(of, key, kind);
    let keys = vec![
        (key(message_id, TrailKeyKind::MessageId, &received), 0),
        (
            key(kode_inbox.to_string(), TrailKeyKind::KodeInbox, &forwarded),
            1,
        ),
        (key(kode.to_string(), TrailKeyKind::Kode, &row), 3),
    ];
    (
        vec![received, forwarded, sent, row, delivered, status],
        keys,
    )
}

fn phone_of(n: u64, phones: u64) -> String {
    format!("62812{:07}", n % phones.max(1))
}

/// When purchase `n` of `purchases` came, the week ending now.
fn time_of(n: u64, purchases: u64, days: u64, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    let week_ms = (days * 24 * 3600 * 1000) as i64;
    let offset = week_ms * n as i64 / purchases.max(1) as i64;
    now - chrono::Duration::milliseconds(week_ms - offset)
}

/// Publishes one purchase as the services' trail writers do: each step, then each key with
/// its step's `WA_TRAIL` sequence once that step is stored.
async fn write_purchase(
    js: &async_nats::jetstream::Context,
    steps: Vec<TrailEvent>,
    keys: Vec<(TrailKey, usize)>,
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(steps.len());
    for s in &steps {
        let ack = js
            .publish(
                names::trail_phone_subject(&s.phone),
                serde_json::to_vec(s)?.into(),
            )
            .await?;
        acks.push(ack.into_future());
    }
    let seqs: Vec<u64> = futures::future::try_join_all(acks)
        .await?
        .into_iter()
        .map(|a| a.sequence)
        .collect();
    let mut acks = Vec::with_capacity(keys.len());
    for (mut key, step) in keys {
        key.seq = Some(seqs[step]);
        let ack = js
            .publish(
                names::trail_key_subject(&key.key, key.at.date_naive()),
                serde_json::to_vec(&key)?.into(),
            )
            .await?;
        acks.push(ack.into_future());
    }
    futures::future::try_join_all(acks).await?;
    Ok(())
}

/// The messages a stream holds, once it holds `expected` (or two minutes passed).
async fn stored(
    js: &async_nats::jetstream::Context,
    stream: &str,
    expected: u64,
) -> anyhow::Result<async_nats::jetstream::stream::State> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = js.get_stream(stream).await?.info().await?.state.clone();
        if state.messages >= expected || Instant::now() > deadline {
            anyhow::ensure!(
                state.messages == expected,
                "{stream} holds {} messages, {expected} were written",
                state.messages
            );
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes a week of trail at `per_day` on a fresh nats-server, measures its memory and disk,
/// and looks one purchase up by each kind of query.
pub async fn measure(
    per_day: u64,
    days: u64,
    phones: u64,
    nats_binary: Option<&Path>,
    work: &Path,
    log_dir: &Path,
) -> anyhow::Result<TrailSummary> {
    let http = reqwest::Client::new();
    let (mut nats, without_kb) = Nats::fresh_with_topology(nats_binary, work, log_dir).await?;
    let without_heap_kb = nats
        .settled_heap_kb(&http, heap_settle(per_day))
        .await
        .unwrap_or(0);
    let disk_before = nats.store_bytes().unwrap_or(0);

    let purchases = per_day * days;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let now = Utc::now();
    // Many purchases at once, each in the writer's order (step stored, then its key), so
    // nothing is dropped however fast this goes.
    let mut in_flight = FuturesUnordered::new();
    for n in 0..purchases {
        while in_flight.len() >= 256 {
            in_flight.next().await.transpose()?;
        }
        let phone = phone_of(n, phones);
        let (steps, keys) = purchase(n, &phone, time_of(n, purchases, days, now));
        in_flight.push(write_purchase(&js, steps, keys));
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    // Every step and key stored before it is measured.
    let steps_state = stored(&js, names::TRAIL_STREAM, purchases * STEPS_PER_PURCHASE).await?;
    let keys_state = stored(&js, names::TRAIL_KEYS_STREAM, purchases * KEYS_PER_PURCHASE).await?;
    drop(client);
    let with_kb = nats.restart_settled().await?;
    let with_heap_kb = nats
        .settled_heap_kb(&http, heap_settle(per_day))
        .await
        .unwrap_or(0);
    let disk = nats.store_bytes().unwrap_or(0).saturating_sub(disk_before);

    // One purchase from the middle of the week, found the way an operator finds it.
    let bus =
        wacenter_bus::Bus::connect(nats.url(), "bench", wacenter_bus::Topology::default()).await?;
    let n = purchases / 2;
    let phone = phone_of(n, phones);
    let (_, keys) = purchase(n, &phone, time_of(n, purchases, days, now));
    let message_id = keys[0].0.key.clone();
    let mut lookup_ms = BTreeMap::new();
    for (label, query) in [
        ("message_id", message_id.clone()),
        ("kode_inbox", keys[1].0.key.clone()),
        ("kode", keys[2].0.key.clone()),
        ("phone", phone.clone()),
    ] {
        // The purchase is a week's half old: a phone's recent messages are looked for over
        // the last four days, so the lookup by phone reaches it.
        let lookup = Lookup {
            phone_window: Duration::from_secs(4 * 24 * 3600),
            ..Lookup::default()
        };
        let started = Instant::now();
        let found = trail::find(&bus, &query, "62", lookup).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            !found.is_empty(),
            "the lookup by {label} ({query}) found nothing"
        );
        if label != "phone" {
            let steps = found
                .iter()
                .find(|t| t.id.ends_with(&message_id))
                .map(|t| t.steps.len())
                .unwrap_or(0);
            anyhow::ensure!(
                steps as u64 == STEPS_PER_PURCHASE,
                "the lookup by {label} found {steps} steps of the purchase"
            );
        }
        lookup_ms.insert(label.to_string(), round2(ms));
    }
    bus.drain().await;
    nats.stop().await;

    let grew_mb = with_heap_kb.saturating_sub(without_heap_kb) as f64 / 1024.0;
    let stored_bytes = steps_state.bytes + keys_state.bytes;
    Ok(TrailSummary {
        messages_per_day: per_day,
        days,
        phones,
        purchases_written: purchases,
        steps_written: purchases * STEPS_PER_PURCHASE,
        without_trail_rss_mb: round2(without_kb as f64 / 1024.0),
        with_trail_rss_mb: round2(with_kb as f64 / 1024.0),
        without_trail_heap_mb: round2(without_heap_kb as f64 / 1024.0),
        with_trail_heap_mb: round2(with_heap_kb as f64 / 1024.0),
        memory_mb_per_week_at_100k_day: round2(grew_mb),
        store_kb_per_message: round3(stored_bytes as f64 / purchases.max(1) as f64 / 1024.0),
        disk_kb_per_message: round3(disk as f64 / purchases.max(1) as f64 / 1024.0),
        lookup_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purchase_is_six_steps_and_three_keys_of_one_timeline() {
        let now = Utc::now();
        let (steps, keys) = purchase(42, &phone_of(42, 1000), now);
        assert_eq!(steps.len() as u64, STEPS_PER_PURCHASE);
        assert_eq!(keys.len() as u64, KEYS_PER_PURCHASE);
        // Each key rides with the step that first knows it.
        for (key, step) in &keys {
            let step = &steps[*step];
            assert_eq!(key.at, step.at);
            match key.kind {
                TrailKeyKind::MessageId => assert!(step.id.ends_with(&key.key)),
                TrailKeyKind::KodeInbox => {
                    assert_eq!(
                        step.kode_inbox.map(|k| k.to_string()),
                        Some(key.key.clone())
                    )
                }
                TrailKeyKind::Kode => {
                    assert_eq!(step.kode.map(|k| k.to_string()), Some(key.key.clone()))
                }
            }
        }
        // The week ends now and is spread over its days.
        assert!(time_of(0, 700, 7, now) < time_of(350, 700, 7, now));
        assert!(time_of(699, 700, 7, now) <= now);
        assert_eq!(phone_of(1042, 1000), phone_of(42, 1000));
        // Texts of real length, cut as the services cut them.
        assert!(steps.iter().all(|s| s.text.chars().count() <= 121));
        let bytes: usize = steps
            .iter()
            .map(|s| serde_json::to_vec(s).unwrap().len())
            .sum();
        assert!((1_000..3_000).contains(&bytes), "{bytes} bytes of JSON");
    }
}
