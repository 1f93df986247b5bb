//! The inspection list shared by both simulators: what arrived, oldest first, with its time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"received_at": "<RFC3339 ms>", "body": <JSON as received>, …extra}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    #[serde(with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    pub body: Value,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `?since=<n>`: items from index n on.
#[derive(Debug, Default, Deserialize)]
pub struct Since {
    #[serde(default)]
    pub since: usize,
}

pub fn page<T: Clone>(items: &[T], since: usize) -> Vec<T> {
    items
        .get(since.min(items.len())..)
        .unwrap_or_default()
        .to_vec()
}

pub mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
