//! What the idempotency records the pipeline leaves behind cost nats-server, and what that
//! comes to at 100,000 messages a day.
//!
//! Measured on the private nats-server right after the full-speed run, whose messages' records
//! are all still alive (the shortest life is an hour): the records are counted per bucket, the
//! server is restarted on the same store (so only what it keeps for the records counts, not the
//! burst's caches) and its resident memory compared with what it held empty, at start.
//!
//! The projection multiplies the measured memory per record by the records alive at 100,000
//! messages a day, each bucket's records living as long as its max age (`names::BUCKETS`), for
//! a purchase that also brings an outbox row: one inbound claim, one auto-reply claim, one
//! outbox claim (a day) and two own-message ids.

use serde::Serialize;
use wacenter_proto::names;

use crate::report::{round2, round3};

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
    /// Messages whose records were measured (the full-speed run's, plus earlier runs').
    pub messages: u64,
    /// Records alive per bucket when measured.
    pub records: std::collections::BTreeMap<String, u64>,
    /// nats-server's resident memory with nothing stored (at start), MB.
    pub empty_rss_mb: f64,
    /// Its resident memory after a restart on the store holding the records, MB.
    pub restarted_rss_mb: f64,
    /// Its peak resident memory before the restart (the runs' bursts), MB.
    pub peak_rss_mb: f64,
    pub memory_bytes_per_record: f64,
    /// Memory per message whose records are kept (the measured messages' mix of records).
    pub memory_kb_per_message: f64,
    /// Bytes on disk of the buckets' streams, per message.
    pub store_kb_per_message: f64,
    /// Records alive at 100,000 purchases a day, each with an outbox row.
    pub projected_records_at_100k_day: f64,
    pub projected_memory_mb_per_100k_day: f64,
}

/// Records alive at `per_day` purchases a day: each bucket's records live its max age.
pub fn records_alive(per_day: f64) -> f64 {
    RECORDS_PER_PURCHASE
        .iter()
        .map(|(bucket, per_purchase)| {
            let life = names::BUCKETS
                .iter()
                .find(|(b, _)| b == bucket)
                .map(|(_, life)| life.as_secs_f64())
                .unwrap_or(0.0);
            per_day * per_purchase * life / 86_400.0
        })
        .sum()
}

/// The summary from what was counted and measured.
pub fn summarize(
    messages: u64,
    records: std::collections::BTreeMap<String, u64>,
    store_bytes: u64,
    (empty_kb, restarted_kb, peak_kb): (u64, u64, u64),
) -> RetentionSummary {
    let total: u64 = records.values().sum();
    let grew = restarted_kb.saturating_sub(empty_kb) as f64 * 1024.0;
    let per_record = if total > 0 { grew / total as f64 } else { 0.0 };
    let per_message = |bytes: f64| {
        if messages > 0 {
            bytes / messages as f64 / 1024.0
        } else {
            0.0
        }
    };
    let alive = records_alive(100_000.0);
    RetentionSummary {
        messages,
        records,
        empty_rss_mb: round2(empty_kb as f64 / 1024.0),
        restarted_rss_mb: round2(restarted_kb as f64 / 1024.0),
        peak_rss_mb: round2(peak_kb as f64 / 1024.0),
        memory_bytes_per_record: round2(per_record),
        memory_kb_per_message: round3(per_message(grew)),
        store_kb_per_message: round3(per_message(store_bytes as f64)),
        projected_records_at_100k_day: alive.round(),
        projected_memory_mb_per_100k_day: round2(alive * per_record / 1024.0 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_of_outbox_claims_dominates_what_is_alive() {
        // 100k inbound, auto-reply and 2 x own-id records for an hour, 100k outbox for a day.
        let alive = records_alive(100_000.0);
        let expected = 100_000.0 * (1.0 + 1.0 + 2.0) / 24.0 + 100_000.0;
        assert!((alive - expected).abs() < 1.0, "{alive} vs {expected}");
        let s = summarize(
            10_000,
            [
                ("wa_forwarded".to_string(), 10_000),
                ("wa_replied".into(), 10_000),
            ]
            .into(),
            4_000_000,
            (13_000, 19_000, 60_000),
        );
        assert_eq!(
            s.memory_bytes_per_record,
            round2(6_000.0 * 1024.0 / 20_000.0)
        );
        assert!(s.projected_memory_mb_per_100k_day > 30.0);
        assert_eq!(
            s.store_kb_per_message,
            round3(4_000_000.0 / 10_000.0 / 1024.0)
        );
    }
}
