//! What the idempotency records cost nats-server at a steady 100,000 messages a day.
//!
//! Measured, not extrapolated: nats-server's memory is not linear in the records it keeps (each
//! stream caches its last block, the Go heap grows in steps), so a small run divided out says
//! little about a busy week. Instead:
//!
//! 1. the full-speed run's records are counted per bucket, with their bytes on disk, and one
//!    real record of each bucket is taken as the template of its kind (an outbox claim, which
//!    the bench's messages do not produce, is made from the auto-reply claim: the same record
//!    under an `outbox:<kode>` key);
//! 2. a fresh nats-server gets wacenter's topology and is restarted: its memory without records;
//! 3. it gets the records alive at `per_day` purchases a day (each with an outbox row), each
//!    bucket's records living its max age (`names::BUCKETS`), written from the templates under
//!    keys of the same shape, and is restarted again (so only what it keeps counts, not a
//!    burst's caches): the difference is what the records cost.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use wacenter_proto::names;

use crate::report::{round2, round3};
use crate::stack::Nats;

/// Records one purchase leaves, per bucket: its claim, its auto-reply's claim, its outbox
/// row's claim, and the provider ids of the auto-reply and of the outbox delivery.
pub const RECORDS_PER_PURCHASE: [(&str, f64); 4] = [
    (names::FORWARDED_BUCKET, 1.0),
    (names::REPLIED_BUCKET, 1.0),
    (names::DELIVERED_BUCKET, 1.0),
    (names::OWN_MESSAGES_BUCKET, 2.0),
];

/// The retention figures of `bench/results/latest.json` (`retention`).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionSummary {
    /// Purchases a day the steady state was built for.
    pub messages_per_day: u64,
    /// Records alive at that rate, per bucket (what was written).
    pub records: BTreeMap<String, u64>,
    /// nats-server's resident memory after a restart, MB: with wacenter's topology and no
    /// records, and with the records.
    pub without_records_rss_mb: f64,
    pub with_records_rss_mb: f64,
    pub memory_bytes_per_record: f64,
    /// Memory per message kept: its records (5 for a purchase with an outbox row) at the
    /// measured cost per record.
    pub memory_kb_per_message: f64,
    /// Bytes on disk of the pipeline run's buckets, per message that made them.
    pub store_kb_per_message: f64,
    pub projected_memory_mb_per_100k_day: f64,
}

/// Records alive per bucket at `per_day` purchases a day: each bucket's records live its max age.
pub fn records_alive(per_day: f64) -> BTreeMap<String, u64> {
    RECORDS_PER_PURCHASE
        .iter()
        .map(|(bucket, per_purchase)| {
            let life = names::BUCKETS
                .iter()
                .find(|(b, _)| b == bucket)
                .map(|(_, life)| life.as_secs_f64())
                .unwrap_or(0.0);
            (
                bucket.to_string(),
                (per_day * per_purchase * life / 86_400.0).round() as u64,
            )
        })
        .collect()
}

/// One real record of a bucket: its key and its value.
#[derive(Debug, Clone)]
pub struct Template {
    pub key: String,
    pub value: Bytes,
}

/// What the pipeline run left: one template per bucket, and its bytes on disk per message.
pub struct RunRecords {
    pub templates: BTreeMap<String, Template>,
    pub store_kb_per_message: f64,
}

/// Reads the run's records on the bench's NATS.
pub async fn from_run(nats_url: &str) -> anyhow::Result<RunRecords> {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    let mut templates = BTreeMap::new();
    let (mut bytes, mut messages) = (0, 0);
    for (bucket, _) in names::BUCKETS {
        let mut s = js.get_stream(format!("KV_{bucket}")).await?;
        let state = s.info().await?.state.clone();
        bytes += state.bytes;
        if bucket == names::FORWARDED_BUCKET {
            messages = state.messages;
        }
        if state.messages == 0 {
            continue;
        }
        let m = s.get_raw_message(state.last_sequence).await?;
        let prefix = format!("$KV.{bucket}.");
        let key = m.subject.strip_prefix(prefix.as_str()).unwrap_or_default();
        templates.insert(
            bucket.to_string(),
            Template {
                key: key.to_string(),
                value: m.payload,
            },
        );
    }
    // The bench's messages bring no outbox row: its claim is an auto-reply's claim under an
    // outbox key.
    if !templates.contains_key(names::DELIVERED_BUCKET) {
        if let Some(reply) = templates.get(names::REPLIED_BUCKET).cloned() {
            let key = names::kv_key("outbox:4522967");
            templates.insert(names::DELIVERED_BUCKET.into(), Template { key, ..reply });
        }
    }
    // Own-message ids are written only with OTOMAX_FORWARD_OUTGOING on, which the bench's
    // stack leaves off; the projection keeps them (the larger figure), shaped as the reply
    // service writes them.
    if !templates.contains_key(names::OWN_MESSAGES_BUCKET) {
        let value = serde_json::json!({"outbound_id": "reply:gowa:628111222333@s.whatsapp.net:3EB0B1C2D3E4F5A6B7C8", "at": chrono::Utc::now()});
        templates.insert(
            names::OWN_MESSAGES_BUCKET.into(),
            Template {
                key: names::kv_key("3EB0C767D8B5A2F1C0E4"),
                value: value.to_string().into(),
            },
        );
    }
    let store_kb_per_message = if messages > 0 {
        bytes as f64 / messages as f64 / 1024.0
    } else {
        0.0
    };
    Ok(RunRecords {
        templates,
        store_kb_per_message,
    })
}

/// Builds the steady state of `per_day` purchases a day on a fresh nats-server and measures it.
pub async fn measure(
    run: &RunRecords,
    per_day: u64,
    nats_binary: Option<&Path>,
    work: &Path,
    log_dir: &Path,
) -> anyhow::Result<RetentionSummary> {
    let (mut nats, without_kb) = Nats::fresh_with_topology(nats_binary, work, log_dir).await?;
    let records = records_alive(per_day as f64);
    write_records(nats.url(), &run.templates, &records).await?;
    let with_kb = nats.restart_settled().await?;
    nats.stop().await;
    Ok(summarize(
        per_day,
        records,
        run.store_kb_per_message,
        (without_kb, with_kb),
    ))
}

/// Writes `count` records per bucket, each its template's value under the template's key with
/// a running number in place of its last characters (same length, same shape).
async fn write_records(
    nats_url: &str,
    templates: &BTreeMap<String, Template>,
    records: &BTreeMap<String, u64>,
) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    for (bucket, &count) in records {
        let template = templates
            .get(bucket)
            .with_context(|| format!("the run left no record in {bucket} to copy"))?;
        let kv = js.get_key_value(bucket).await?;
        let stem = &template.key[..template.key.len().saturating_sub(8)];
        stream::iter(0..count)
            .map(|i| {
                let kv = kv.clone();
                let key = format!("{stem}{i:08X}");
                let value = template.value.clone();
                async move { kv.put(key, value).await }
            })
            .buffer_unordered(256)
            .try_collect::<Vec<_>>()
            .await
            .with_context(|| format!("cannot write the {bucket} records"))?;
    }
    Ok(())
}

/// The summary from what was written and measured.
pub fn summarize(
    per_day: u64,
    records: BTreeMap<String, u64>,
    store_kb_per_message: f64,
    (without_kb, with_kb): (u64, u64),
) -> RetentionSummary {
    let total: u64 = records.values().sum();
    let grew = with_kb.saturating_sub(without_kb) as f64 * 1024.0;
    let per_record = if total > 0 { grew / total as f64 } else { 0.0 };
    let per_purchase: f64 = RECORDS_PER_PURCHASE.iter().map(|(_, n)| n).sum();
    let scale = if per_day > 0 {
        100_000.0 / per_day as f64
    } else {
        0.0
    };
    RetentionSummary {
        messages_per_day: per_day,
        records,
        without_records_rss_mb: round2(without_kb as f64 / 1024.0),
        with_records_rss_mb: round2(with_kb as f64 / 1024.0),
        memory_bytes_per_record: round2(per_record),
        memory_kb_per_message: round3(per_record * per_purchase / 1024.0),
        store_kb_per_message: round3(store_kb_per_message),
        projected_memory_mb_per_100k_day: round2(grew * scale / 1024.0 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_outbox_claims_dominates_what_is_alive() {
        // Inbound, auto-reply and 2 x own-id records for an hour, outbox claims for a day.
        let alive = records_alive(100_000.0);
        assert_eq!(alive[names::FORWARDED_BUCKET], 4_167);
        assert_eq!(alive[names::OWN_MESSAGES_BUCKET], 8_333);
        assert_eq!(alive[names::DELIVERED_BUCKET], 100_000);
        let s = summarize(100_000, alive, 0.9, (15_000, 45_000));
        let total = 4_167 + 4_167 + 8_333 + 100_000;
        assert_eq!(
            s.memory_bytes_per_record,
            round2(30_000.0 * 1024.0 / total as f64)
        );
        assert_eq!(
            s.projected_memory_mb_per_100k_day,
            round2(30_000.0 / 1024.0)
        );
        // Measured at a twentieth of the rate: the projection scales it up.
        let small = summarize(5_000, records_alive(5_000.0), 0.9, (15_000, 16_500));
        assert_eq!(
            small.projected_memory_mb_per_100k_day,
            round2(30_000.0 / 1024.0)
        );
    }
}
