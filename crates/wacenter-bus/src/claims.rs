//! Idempotency claims in a KV bucket: "claim the id with a create-if-absent write, never
//! read-then-write", so two simultaneous deliveries of one message still give exactly one
//! effect. The record then moves through its states with compare-and-set updates.
//!
//! The claim itself is written in the state the work starts in (`in_progress` just before the
//! call, or `failed` when the message is already known to fail), so the common path costs two
//! writes: the claim and the outcome. Every write is a JetStream round trip, and these are most
//! of what a message costs.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::BusError;

/// Where a message is in its one-time effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimState {
    /// The effect (OtomaX call, WhatsApp send) has not started: a send that definitely did not
    /// happen gave its claim back so the retry can send.
    Claimed,
    /// The effect is on the wire: if the worker dies now, nobody can tell whether it happened.
    InProgress,
    /// The effect happened.
    Done,
    /// The effect definitely did not happen and will not be retried automatically.
    Failed,
}

/// The record stored under the message's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub state: ClaimState,
    /// Stream sequence of the message that owns the claim.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// What the effect produced (e.g. OtomaX's answer, the provider's message id).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// How often the owner of an `in_progress` record renews it while its call is on the wire.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(3);

/// How long a redelivery watches an `in_progress` record before it concludes that nobody is
/// renewing it: several renewals' worth, so a NATS blip or a slow write does not kill a live
/// owner. Measured on the reader's own monotonic clock; no two machines' clocks are compared.
pub const LEASE_LAPSES_AFTER: Duration = Duration::from_secs(15);

impl ClaimRecord {
    pub fn new(state: ClaimState, seq: u64) -> Self {
        Self {
            state,
            seq,
            at: Utc::now(),
            detail: serde_json::Value::Null,
        }
    }

    /// The last error a `failed` record keeps (`detail.error`), for the dead letter a
    /// redelivery writes again.
    pub fn error(&self) -> &str {
        self.detail
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("failed earlier")
    }
}

/// What a redelivery found out about the owner of an `in_progress` record.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// The record changed while we watched (renewed, or the outcome recorded): the owner is
    /// alive, or finished. Look again later.
    Alive,
    /// Nobody renewed the record for [`LEASE_LAPSES_AFTER`]: the owner is gone, and whether its
    /// call reached the peer is unknown.
    Gone,
}

/// Result of trying to claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This caller owns the new claim.
    New { revision: u64 },
    /// Someone claimed it before (maybe this same message, in an earlier delivery).
    Existing { record: ClaimRecord, revision: u64 },
}

/// Where a delivery stands with its message's one-time effect, from [`Claims::begin`].
#[derive(Debug, Clone, PartialEq)]
pub enum Begun {
    /// This delivery holds the claim, written in the state it began with, at `revision`: do
    /// the work.
    Fresh { revision: u64 },
    /// Another copy of the message (another stream sequence) claimed it first: drop this one.
    Duplicate(ClaimRecord),
    /// An earlier delivery of this message is still at work (its lease moves): look again.
    StillRunning,
    /// An earlier delivery died while the effect was on the wire: whether it happened is
    /// unknown, and it is never done again automatically.
    Uncertain,
    /// An earlier delivery did it; its record says what it produced. Finish what may not have
    /// followed (the auto-reply, the report to OtomaX).
    Done(ClaimRecord),
    /// An earlier delivery failed for good; its record says why.
    Failed(ClaimRecord),
}

#[derive(Clone)]
pub struct Claims {
    store: kv::Store,
}

impl Claims {
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }

    /// Claims `key` by creating it as `record` (whose `seq` names the message that owns it).
    /// Write `in_progress` when the effect starts right after this: a worker that dies in
    /// between leaves a record that a redelivery reads as "maybe sent", which is the safe side.
    pub async fn claim(&self, key: &str, record: &ClaimRecord) -> Result<Claim, BusError> {
        match self.store.create(key, encode(record)).await {
            Ok(revision) => Ok(Claim::New { revision }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                match self.get(key).await? {
                    // Our own create landed but its acknowledgement was lost (NATS failed in
                    // between): async-nats then reads the key, finds it and says "exists". The
                    // timestamp makes the record ours alone; taking it for someone else's would
                    // leave the message waiting on itself until it is called uncertain.
                    Some((existing, revision)) if existing == *record => {
                        Ok(Claim::New { revision })
                    }
                    Some((record, revision)) => Ok(Claim::Existing { record, revision }),
                    // Deleted between the two calls (TTL): claim again.
                    None => Box::pin(self.claim(key, record)).await,
                }
            }
            Err(e) => Err(BusError::Kv(format!("claim {key}: {e}"))),
        }
    }

    /// Claims `key` for the delivery `first.seq` by writing `first` (create-if-absent; the
    /// state the work starts in), or finds out where an earlier claim stands: the one state
    /// machine both consuming roles share. A claim an earlier delivery of this message gave
    /// back (`claimed`) is taken over; an `in_progress` one is judged by its lease
    /// ([`Claims::owner`], up to [`LEASE_LAPSES_AFTER`]). `Err` is NATS trouble, after anything
    /// this call may have half-written was given back ([`Claims::release_unstarted`]).
    pub async fn begin(&self, key: &str, first: &ClaimRecord) -> Result<Begun, BusError> {
        let (record, revision) = match self.claim(key, first).await {
            Ok(Claim::New { revision }) => return Ok(Begun::Fresh { revision }),
            Ok(Claim::Existing { record, revision }) => (record, revision),
            Err(e) => {
                self.release_unstarted(key, first).await;
                return Err(e);
            }
        };
        if record.seq != first.seq {
            return Ok(Begun::Duplicate(record));
        }
        match record.state {
            ClaimState::Claimed => match self.advance(key, first, revision).await {
                Ok(revision) => Ok(Begun::Fresh { revision }),
                Err(e) => {
                    self.release_unstarted(key, first).await;
                    Err(e)
                }
            },
            ClaimState::InProgress => Ok(match self.owner(key, revision).await? {
                Owner::Alive => Begun::StillRunning,
                Owner::Gone => Begun::Uncertain,
            }),
            ClaimState::Done => Ok(Begun::Done(record)),
            ClaimState::Failed => Ok(Begun::Failed(record)),
        }
    }

    /// The record under `key` and its revision.
    pub async fn get(&self, key: &str) -> Result<Option<(ClaimRecord, u64)>, BusError> {
        Ok(self.entry(key).await?.map(|e| {
            let record = serde_json::from_slice(&e.value)
                .unwrap_or_else(|_| ClaimRecord::new(ClaimState::Done, 0));
            (record, e.revision)
        }))
    }

    /// Moves the record on, only if nobody changed it since `revision` (compare-and-set).
    pub async fn advance(
        &self,
        key: &str,
        record: &ClaimRecord,
        revision: u64,
    ) -> Result<u64, BusError> {
        self.store
            .update(key, encode(record), revision)
            .await
            .map_err(|e| BusError::Kv(format!("update {key}: {e}")))
    }

    /// Like [`Claims::advance`], retried through a NATS blip for up to about a minute: after
    /// the effect happened, the record must land or a redelivery would call it uncertain. The
    /// message's progress acks keep it with this worker meanwhile. A write that landed although
    /// its acknowledgement was lost (NATS died in between) is recognised on the next try.
    pub async fn advance_durably(&self, key: &str, record: &ClaimRecord, revision: u64) {
        let landed = || async {
            matches!(self.get(key).await, Ok(Some((r, _))) if r.seq == record.seq && r.state == record.state)
        };
        let mut retry = OutageRetry::new();
        let mut first = true;
        loop {
            if !first && landed().await {
                return;
            }
            first = false;
            let Err(e) = self.advance(key, record, revision).await else {
                return;
            };
            if !retry.again("record the outcome", &e).await {
                tracing::warn!(
                    "gave up recording the outcome; a redelivery will dead-letter it as uncertain"
                );
                return;
            }
        }
    }

    /// After a claim or `in_progress` write whose outcome is unknown (NATS failed while it was
    /// on the wire), and before the effect started: make sure the record says `claimed`, so the
    /// redelivery goes on instead of reading our own `in_progress` as "maybe sent" and
    /// dead-lettering a message that was never sent.
    ///
    /// The write may still land later: the client keeps what it could not send while
    /// disconnected and sends it after reconnecting. So this does not just look; it writes a
    /// fence behind it on the same connection (messages keep their order): a `claimed` record
    /// created where there was none, or written over our own `claimed` at its revision. The
    /// late write then fails its own create-if-absent or revision check. Only `ours`, the very
    /// record this worker tried to write (its timestamp makes it unique), is ever replaced:
    /// never an `in_progress` that a redelivery wrote meanwhile and may be acting on. Retried
    /// through a NATS outage for up to about a minute, like [`Claims::advance_durably`].
    pub async fn release_unstarted(&self, key: &str, ours: &ClaimRecord) {
        let released = ClaimRecord::new(ClaimState::Claimed, ours.seq);
        let mut retry = OutageRetry::new();
        loop {
            let result = match self.get(key).await {
                Ok(None) => match self.store.create(key, encode(&released)).await {
                    Ok(_) => Ok(()),
                    // Something landed meanwhile: look again.
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(BusError::Kv(
                        format!("fence {key}: a write landed meanwhile"),
                    )),
                    Err(e) => Err(BusError::Kv(format!("fence {key}: {e}"))),
                },
                Ok(Some((r, revision)))
                    if r == *ours || (r.seq == ours.seq && r.state == ClaimState::Claimed) =>
                {
                    self.advance(key, &released, revision).await.map(drop)
                }
                // Someone else's record: a late write of ours fails against it.
                Ok(Some(_)) => return,
                Err(e) => Err(e),
            };
            let Err(e) = result else {
                tracing::info!("claim given back: nothing was sent, the redelivery will send");
                return;
            };
            if !retry.again("give the claim back", &e).await {
                tracing::warn!(
                    "gave up giving the claim back; a redelivery will dead-letter it as uncertain"
                );
                return;
            }
        }
    }

    /// Runs `work` (the call on the wire) while holding the lease on the `in_progress` record
    /// `ours`, written at `revision`: the record is written again every [`LEASE_RENEW_EVERY`],
    /// so a redelivery can tell a live owner from a dead one without reading any clock but its
    /// own ([`Claims::owner`]). Returns the work's output and the record's revision now, for the
    /// outcome's compare-and-set.
    pub async fn hold<F: Future>(
        &self,
        key: &str,
        ours: &ClaimRecord,
        mut revision: u64,
        work: F,
    ) -> (F::Output, u64) {
        tokio::pin!(work);
        let mut renew = tokio::time::interval(LEASE_RENEW_EVERY);
        renew.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return (out, revision),
                _ = renew.tick() => {
                    // Not inside the select: a renewal that was sent is seen through, so its
                    // revision is known when the outcome is written.
                    match self.advance(key, ours, revision).await {
                        Ok(r) => revision = r,
                        // Landed with its acknowledgement lost, or NATS is away: read it back.
                        Err(e) => match self.get(key).await {
                            Ok(Some((r, rev))) if r == *ours => revision = rev,
                            _ => tracing::warn!(error = %e, "cannot renew the lease; trying again"),
                        },
                    }
                }
            }
        }
    }

    /// Watches an `in_progress` record read at `revision` for up to [`LEASE_LAPSES_AFTER`]: if
    /// it changes, its owner is alive (or done); if nobody renews it, the owner is gone.
    pub async fn owner(&self, key: &str, revision: u64) -> Result<Owner, BusError> {
        let watching = tokio::time::Instant::now();
        while watching.elapsed() < LEASE_LAPSES_AFTER {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match self.get(key).await? {
                Some((_, now)) if now == revision => {}
                _ => return Ok(Owner::Alive),
            }
        }
        Ok(Owner::Gone)
    }

    /// Unconditional write (records that only ever grow, like "we sent this provider id").
    pub async fn put(&self, key: &str, value: Bytes) -> Result<(), BusError> {
        self.store
            .put(key, value)
            .await
            .map(|_| ())
            .map_err(|e| BusError::Kv(format!("put {key}: {e}")))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BusError> {
        Ok(self.raw(key).await?.is_some())
    }

    /// The value under `key` as stored, for records that are not claims.
    pub async fn raw(&self, key: &str) -> Result<Option<Bytes>, BusError> {
        Ok(self.entry(key).await?.map(|e| e.value))
    }

    /// The live entry under `key` (not a delete or purge marker).
    async fn entry(&self, key: &str) -> Result<Option<kv::Entry>, BusError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| BusError::Kv(format!("read {key}: {e}")))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }
}

/// Retries through a NATS outage: 40 tries spaced 100 ms doubling to 2 s, about a minute in all.
pub(crate) struct OutageRetry {
    tries: u32,
    wait: std::time::Duration,
}

impl OutageRetry {
    pub(crate) fn new() -> Self {
        Self {
            tries: 0,
            wait: std::time::Duration::from_millis(100),
        }
    }

    /// Logs the failure and waits before the next try; false once the tries are spent.
    pub(crate) async fn again(&mut self, doing: &str, error: &BusError) -> bool {
        self.tries += 1;
        if self.tries >= 40 {
            return false;
        }
        tracing::warn!(%error, "cannot {doing} yet; retrying");
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(std::time::Duration::from_secs(2));
        true
    }
}

fn encode(record: &ClaimRecord) -> Bytes {
    serde_json::to_vec(record)
        .expect("claim records serialize")
        .into()
}
