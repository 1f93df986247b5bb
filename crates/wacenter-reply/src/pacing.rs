//! Pacing per WhatsApp account (`WA_SEND_RATE`, an account's `send_rate`): WhatsApp bans numbers
//! that send in bursts.
//!
//! Every reply replica books its sends in one shared record per account in the `wa_pacing` KV
//! bucket: the time the account may send next. A send takes the next free slot with a
//! compare-and-set update at the record's revision, so two replicas never take the same slot
//! and three replicas together still send at the rate, not three times it. A replica that loses
//! the race reads the record again.
//!
//! Auto-replies go ahead of bulk outbox rows: an auto-reply may book a slot up to
//! [`BOOK_AHEAD`] away and waits for it in place; an outbox row takes a slot only when one is
//! free now, and otherwise comes back when the account's booked slots have passed. Waiting is
//! not a failed attempt (the worker's `Wait`), and nothing is booked for a message that waits,
//! so a crash while waiting loses no place that matters: the message simply asks again.
//!
//! Slots are times on the replicas' clocks; replicas whose clocks differ by Δ can put two sends
//! Δ closer than the rate allows (NTP keeps Δ to milliseconds). No promise about a message
//! rests on these clocks: only the spacing of sends does.

use std::time::Duration;

use wacenter_bus::kv;
use wacenter_proto::names;

/// How far ahead an auto-reply books a slot and waits for it in place.
pub const BOOK_AHEAD: Duration = Duration::from_secs(2);

/// Which queue a message stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Answers to what a reseller just sent: ahead of bulk.
    AutoReply,
    /// Outbox rows: only free slots.
    Bulk,
}

/// What the account's pacing says about one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A slot is booked: send after waiting this long (zero: now).
    SendAfter(Duration),
    /// No slot for this message yet: ask again after this long.
    WaitFor(Duration),
}

#[derive(Clone)]
pub struct Pacer {
    store: kv::Store,
}

impl Pacer {
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }

    /// Books the next slot of `account` at `per_second` sends a second for a message of
    /// `priority`, or says how long to wait before asking again.
    pub async fn book(
        &self,
        account: &str,
        per_second: u32,
        priority: Priority,
    ) -> Result<Pace, String> {
        let key = names::kv_key(account);
        let interval = 1000 / i64::from(per_second.max(1));
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let entry = self.store.entry(&key).await.ok().flatten();
            let next_free = entry
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<i64>().ok())
                .unwrap_or(0);
            let slot = next_free.max(now);
            let ahead = u64::try_from(slot - now).unwrap_or(0);
            let may_book = match priority {
                Priority::AutoReply => Duration::from_millis(ahead) <= BOOK_AHEAD,
                Priority::Bulk => ahead == 0,
            };
            if !may_book {
                // Come back when the booked slots have passed (an outbox row then finds the
                // account free unless auto-replies keep it busy).
                return Ok(Pace::WaitFor(Duration::from_millis(ahead.max(50))));
            }
            let booked = (slot + interval).to_string();
            // `Ok(false)`: another replica booked first; look again.
            let written = match entry {
                Some(e) => match self.store.update(&key, booked.into(), e.revision).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                    Err(e) => Err(e.to_string()),
                },
                None => match self.store.create(&key, booked.into()).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e.to_string()),
                },
            };
            if written? {
                return Ok(Pace::SendAfter(Duration::from_millis(ahead)));
            }
        }
    }
}
