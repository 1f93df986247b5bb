//! What the simulator knows and remembers: its resellers, fault knobs, inbox and outbox.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;
use wacenter_otomax::Signer;

use crate::inspect::Received;

/// A reseller the simulator knows, by phone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimReseller {
    pub phone: String,
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_saldo")]
    pub saldo: i64,
    /// When set, commands must carry this PIN (else status 49).
    #[serde(default)]
    pub pin: Option<String>,
}

pub(crate) fn default_saldo() -> i64 {
    1_000_000
}

impl SimReseller {
    /// `PHONE=CODE` as given to `--reseller`.
    pub fn parse_arg(arg: &str) -> Result<Self, String> {
        let (phone, code) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected PHONE=CODE, e.g. 628123456789=R001"))?;
        let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
        if phone.is_empty() || code.trim().is_empty() {
            return Err(format!(
                "{arg:?}: expected PHONE=CODE, e.g. 628123456789=R001"
            ));
        }
        Ok(Self {
            phone,
            code: code.trim().to_string(),
            name: String::new(),
            saldo: default_saldo(),
            pin: None,
        })
    }
}

/// Resellers from a TOML file: `[[reseller]]` tables with `phone`, `code`, optional `name`,
/// `saldo`, `pin`.
pub fn load_resellers_file(path: &std::path::Path) -> Result<Vec<SimReseller>, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        reseller: Vec<SimReseller>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.reseller)
}

#[derive(Debug, Clone)]
pub struct OtomaxSimConfig {
    pub app_id: String,
    pub app_key: String,
    pub dev_key: String,
    pub resellers: Vec<SimReseller>,
    pub result_delay: Duration,
    pub faults: Faults,
}

/// Fault knobs; all can change at run time through `POST /_sim/faults`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub error_rate: f64,
    /// While down every call gets 503.
    #[serde(skip)]
    pub down_until: Option<Instant>,
    /// Every InsertInbox is refused with `ok:false` (HTTP 200), as a server whose terminal is
    /// switched off answers.
    #[serde(default)]
    pub reject_inbox: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaultsRequest {
    pub(crate) latency_ms: Option<u64>,
    pub(crate) error_rate: Option<f64>,
    pub(crate) down_for_seconds: Option<f64>,
    pub(crate) reject_inbox: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutboxEntry {
    pub(crate) row: Value,
    /// `pending` until the callback URL answered 2xx, then `delivered`.
    pub(crate) state: &'static str,
    pub(crate) attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub(crate) delivered_at: Option<DateTime<Utc>>,
    /// What UpdateStatusOutbox reported (20 delivered, 40 failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) update_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_millis")]
    pub(crate) update_status_at: Option<DateTime<Utc>>,
}

pub(crate) mod opt_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => s.serialize_none(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) inbox: Vec<Received>,
    pub(crate) outbox: Vec<OutboxEntry>,
    pub(crate) outbox_index: HashMap<i64, usize>,
    pub(crate) trx: HashMap<i64, Value>,
    pub(crate) callback_url: Option<String>,
    pub(crate) next_kode_inbox: i64,
    pub(crate) next_outbox: i64,
    pub(crate) next_trx: i64,
    pub(crate) requests: u64,
    pub(crate) by_endpoint: HashMap<String, u64>,
    pub(crate) rejected_tokens: u64,
    pub(crate) expired: u64,
    /// Bumped by reset so delivery tasks of forgotten rows stop.
    pub(crate) generation: u64,
    pub(crate) resellers: Vec<SimReseller>,
}

pub(crate) struct Shared {
    pub(crate) signer: Signer,
    pub(crate) result_delay: Duration,
    pub(crate) http: reqwest::Client,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) inner: Mutex<Inner>,
}
