//! Lenient decoding helpers: OtomaX (and the gateways around it) send numbers sometimes as JSON
//! numbers and sometimes as strings, and omit fields freely.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An integer that may arrive as a number, a numeric string, or be absent/null/empty.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().and_then(value_as_i64))
}

/// Like [`opt_i64`] but a missing value becomes 0.
pub fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(opt_i64(d)?.unwrap_or(0))
}

/// A text that may arrive as a string, a number or a boolean; null/absent becomes empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.as_ref().map(value_as_string).unwrap_or_default())
}

pub fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

pub fn value_as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_strings() {
        assert_eq!(value_as_i64(&json!(5)), Some(5));
        assert_eq!(value_as_i64(&json!(" 42 ")), Some(42));
        assert_eq!(value_as_i64(&json!("x")), None);
        assert_eq!(value_as_i64(&json!(null)), None);
        assert_eq!(value_as_string(&json!(628)), "628");
        assert_eq!(value_as_string(&json!(null)), "");
    }
}
