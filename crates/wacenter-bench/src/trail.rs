//! What the message trail costs nats-server, and how fast one message is found on it.
//!
//! Measured on a week of trail, not extrapolated (nats-server's memory is not linear in what it
//! stores): on a fresh nats-server with wacenter's topology, a week of purchases at `per_day`
//! from `phones` resellers is written as the services write it (six steps and three keys a
//! purchase: received, forwarded, the auto-reply sent, the outbox row, its delivery sent,
//! UpdateStatusOutbox), with texts of real length. The server is restarted (so only what it
//! keeps counts), its memory read, and one purchase from the middle of the week is looked up by
//! each kind of query with `wacenter_bus::trail::find`, as `wacenter trace` and the console do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use std::future::IntoFuture;
use wacenter_bus::trail::{self, Lookup};
use wacenter_proto::{names, TrailEvent, TrailKey, TrailKeyKind, TrailStep, PAYLOAD_VERSION};

use crate::report::{round2, round3};
use crate::stack::Nats;

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
    /// and with the week's trail.
    pub without_trail_rss_mb: f64,
    pub with_trail_rss_mb: f64,
    /// What the week costs in memory, scaled to 100,000 messages a day when `per_day` differs.
    pub memory_mb_per_week_at_100k_day: f64,
    /// `WA_TRAIL` bytes per purchase as JetStream counts them (uncompressed messages).
    pub store_kb_per_message: f64,
    /// What the week adds to nats-server's store on disk, per purchase (S2-compressed blocks
    /// and indexes, as written).
    pub disk_kb_per_message: f64,
    /// One lookup on the week's trail, by kind of query, milliseconds.
    pub lookup_ms: BTreeMap<String, f64>,
}

/// One purchase's steps and keys, as the services write them.
fn purchase(n: u64, phone: &str, at: chrono::DateTime<Utc>) -> (Vec<TrailEvent>, Vec<TrailKey>) {
    let message_id = format!("3EB0{n:016X}");
    let id = format!("gowa:628987654321@s.whatsapp.net:{message_id}");
    let kode_inbox = 9_000_000_000 + n as i64;
    let kode = 7_000_000_000 + n as i64;
    let destination = format!("0812{:08}", n % 100_000_000);
    let step = |kind: TrailStep, id: &str| {
        let mut e = TrailEvent::new(kind, id, phone);
        e.at = at;
        e
    };
    let mut received = step(TrailStep::Received, &id);
    received.text = format!("S5.{destination}.1234");
    let mut forwarded = step(TrailStep::Forwarded, &id);
    forwarded.kode_inbox = Some(kode_inbox);
    forwarded.status = Some(21);
    forwarded.detail = "Sukses Masuk Outbox (1 attempt)".into();
    forwarded.reply = TrailEvent::shorten(&format!(
        "S5.{destination} sedang diproses. Harga Rp 5.150. Saldo Rp 994.850. Trx #{kode_inbox}"
    ));
    let reply_id = format!("autoreply:{id}");
    let mut sent = step(TrailStep::Sent, &reply_id);
    sent.kode_inbox = Some(kode_inbox);
    sent.detail = format!("provider message id 3EB0{:016X}", n ^ 0xABCD);
    sent.text = forwarded.reply.clone();
    let row_id = format!("outbox:{kode}");
    let mut row = step(TrailStep::OutboxReceived, &row_id);
    row.kode = Some(kode);
    row.kode_inbox = Some(kode_inbox);
    row.text = TrailEvent::shorten(&format!(
        "SUKSES S5.{destination} SN:{:020}. Harga Rp 5.150. Saldo Rp 994.850. Trx #{kode_inbox}",
        n * 7919
    ));
    let mut delivered = step(TrailStep::Sent, &row_id);
    delivered.kode = Some(kode);
    delivered.kode_inbox = Some(kode_inbox);
    delivered.detail = format!("provider message id 3EB0{:016X}", n ^ 0x1234);
    delivered.text = row.text.clone();
    let mut status = step(TrailStep::OutboxStatus, &row_id);
    status.kode = Some(kode);
    status.kode_inbox = Some(kode_inbox);
    status.status = Some(20);
    status.detail = "UpdateStatusOutbox 20 reported to OtomaX".into();
    let key = |key: String, kind| TrailKey {
        version: PAYLOAD_VERSION,
        key,
        kind,
        phone: phone.to_string(),
        at,
    };
    (
        vec![received, forwarded, sent, row, delivered, status],
        vec![
            key(message_id, TrailKeyKind::MessageId),
            key(kode_inbox.to_string(), TrailKeyKind::KodeInbox),
            key(kode.to_string(), TrailKeyKind::Kode),
        ],
    )
}

fn phone_of(n: u64, phones: u64) -> String {
    format!("62812{:07}", n % phones.max(1))
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
    let (mut nats, without_kb) = Nats::fresh_with_topology(nats_binary, work, log_dir).await?;
    let disk_before = nats.store_bytes().unwrap_or(0);

    let purchases = per_day * days;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let now = Utc::now();
    // As the services' trail writer does: JetStream publishes with a window of acks, so
    // nothing is dropped however fast this goes.
    let mut in_flight = FuturesUnordered::new();
    for n in 0..purchases {
        let phone = phone_of(n, phones);
        let (steps, keys) = purchase(n, &phone, now);
        let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(9);
        for k in &keys {
            messages.push((names::trail_key_subject(&k.key), serde_json::to_vec(k)?));
        }
        for s in &steps {
            messages.push((names::trail_phone_subject(&s.phone), serde_json::to_vec(s)?));
        }
        for (subject, payload) in messages {
            while in_flight.len() >= 1024 {
                in_flight.next().await.transpose()?;
            }
            let ack = js.publish(subject, payload.into()).await?;
            in_flight.push(ack.into_future());
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack?;
    }
    // Every step stored before it is measured.
    let expected = purchases * (STEPS_PER_PURCHASE + KEYS_PER_PURCHASE);
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let mut stream = js.get_stream(names::TRAIL_STREAM).await?;
        let state = stream.info().await?.state.clone();
        if state.messages >= expected || Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    anyhow::ensure!(
        state.messages == expected,
        "the trail holds {} steps and keys, {expected} were written",
        state.messages
    );
    drop(client);
    let with_kb = nats.restart_settled().await?;
    let disk = nats.store_bytes().unwrap_or(0).saturating_sub(disk_before);

    // One purchase from the middle of the week, found the way an operator finds it.
    let bus =
        wacenter_bus::Bus::connect(nats.url(), "bench", wacenter_bus::Topology::default()).await?;
    let n = purchases / 2;
    let phone = phone_of(n, phones);
    let (_, keys) = purchase(n, &phone, now);
    let mut lookup_ms = BTreeMap::new();
    for (label, query) in [
        ("message_id", keys[0].key.clone()),
        ("kode_inbox", keys[1].key.clone()),
        ("kode", keys[2].key.clone()),
        ("phone", phone.clone()),
    ] {
        let started = Instant::now();
        let found = trail::find(&bus, &query, "62", Lookup::default()).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(
            !found.is_empty(),
            "the lookup by {label} ({query}) found nothing"
        );
        if label != "phone" {
            let steps = found
                .iter()
                .find(|t| t.id.ends_with(&keys[0].key))
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

    let grew_mb = with_kb.saturating_sub(without_kb) as f64 / 1024.0;
    let scale = 100_000.0 / per_day.max(1) as f64 * 7.0 / days.max(1) as f64;
    Ok(TrailSummary {
        messages_per_day: per_day,
        days,
        phones,
        purchases_written: purchases,
        steps_written: purchases * STEPS_PER_PURCHASE,
        without_trail_rss_mb: round2(without_kb as f64 / 1024.0),
        with_trail_rss_mb: round2(with_kb as f64 / 1024.0),
        memory_mb_per_week_at_100k_day: round2(grew_mb * scale),
        store_kb_per_message: round3(state.bytes as f64 / purchases.max(1) as f64 / 1024.0),
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
