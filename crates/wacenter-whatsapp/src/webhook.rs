//! What every webhook parser returns, and the lenient JSON reading they share.
//!
//! Providers change field types between versions (ids as numbers, booleans as strings,
//! timestamps as RFC 3339 or Unix seconds), so the parsers walk a `serde_json::Value` and accept
//! every reasonable spelling instead of deriving strict structs; what cannot be read becomes a
//! [`ParseError`] that names the field, never a panic.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use wacenter_proto::InboundMessage;

/// The outcome of parsing a well-formed webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Chat messages to publish (a Meta webhook may batch several).
    Messages(Vec<InboundMessage>),
    /// A valid webhook that is not a chat message (receipt, reaction, edit, status, …): answer
    /// 200 so the provider does not retry, publish nothing. The reason is for logs.
    Ignored(String),
}

/// Why a webhook body could not be understood. Answer 400: retrying the same bytes cannot help.
/// Messages name the field and the kind of value found, never the content (which may be a
/// customer's message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    Missing(String),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}` is not a valid timestamp: {reason}")]
    BadTimestamp { field: String, reason: String },
}

pub(crate) type Object = Map<String, Value>;

/// Parses the body into a JSON object.
pub(crate) fn parse_object(raw_body: &[u8]) -> Result<Object, ParseError> {
    // serde_json limits nesting depth (128), so hostile deeply nested input fails cleanly.
    match serde_json::from_slice::<Value>(raw_body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(wrong_type("(body)", "a JSON object", &other)),
        Err(err) => Err(ParseError::Json(err.to_string())),
    }
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn wrong_type(field: &str, expected: &'static str, found: &Value) -> ParseError {
    ParseError::WrongType {
        field: field.to_owned(),
        expected,
        found: kind(found),
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A text field: a string, or a number written out (some versions send ids as numbers).
/// Absent and `null` are `None`.
pub(crate) fn opt_string(
    obj: &Object,
    path: &str,
    key: &str,
) -> Result<Option<String>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(wrong_type(&join(path, key), "a string", other)),
    }
}

/// Like [`opt_string`], empty strings counting as absent.
pub(crate) fn opt_nonempty(
    obj: &Object,
    path: &str,
    key: &str,
) -> Result<Option<String>, ParseError> {
    Ok(opt_string(obj, path, key)?.filter(|s| !s.trim().is_empty()))
}

/// A required, non-empty text field.
pub(crate) fn req_string(obj: &Object, path: &str, key: &str) -> Result<String, ParseError> {
    opt_nonempty(obj, path, key)?.ok_or_else(|| ParseError::Missing(join(path, key)))
}

/// A flag: `true`/`false`, `"true"`/`"false"`, `1`/`0`. Absent and `null` are `None`.
pub(crate) fn opt_bool(obj: &Object, path: &str, key: &str) -> Result<Option<bool>, ParseError> {
    let value = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let flag = match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" | "" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        _ => None,
    };
    flag.map(Some)
        .ok_or_else(|| wrong_type(&join(path, key), "a boolean", value))
}

/// A nested object. Absent and `null` are `None`.
pub(crate) fn opt_object<'a>(
    obj: &'a Object,
    path: &str,
    key: &str,
) -> Result<Option<&'a Object>, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(wrong_type(&join(path, key), "an object", other)),
    }
}

/// A nested array. Absent and `null` are an empty slice.
pub(crate) fn opt_array<'a>(
    obj: &'a Object,
    path: &str,
    key: &str,
) -> Result<&'a [Value], ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(&join(path, key), "an array", other)),
    }
}

/// Unix times at or above this are taken as milliseconds (it is the year 33658 in seconds).
const MILLIS_THRESHOLD: i64 = 1_000_000_000_000;

/// A timestamp written as RFC 3339, or as Unix seconds (number or digit string; milliseconds
/// are recognized by their size). Absent, `null` and `""` are `None`; anything else that does
/// not read as a time is an error, because a wrong time would give OtomaX a wrong `_exp`.
pub(crate) fn opt_timestamp(
    obj: &Object,
    path: &str,
    key: &str,
) -> Result<Option<DateTime<Utc>>, ParseError> {
    let field = || join(path, key);
    let bad = |reason: &str| ParseError::BadTimestamp {
        field: field(),
        reason: reason.to_owned(),
    };
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(time) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(time.with_timezone(&Utc)));
            }
            if s.bytes().all(|b| b.is_ascii_digit()) {
                let secs: i64 = s.parse().map_err(|_| bad("number out of range"))?;
                return from_unix(secs)
                    .map(Some)
                    .ok_or_else(|| bad("number out of range"));
            }
            Err(bad("expected RFC 3339 or Unix seconds"))
        }
        Some(Value::Number(n)) => {
            let secs = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Some(i),
                // Fractional seconds: whole seconds are precise enough for `_exp`. The range
                // check keeps the cast exact (`as` would saturate silently).
                (None, Some(f)) if f.is_finite() && f.abs() < 1e18 => Some(f.trunc() as i64),
                _ => None,
            };
            secs.and_then(from_unix)
                .map(Some)
                .ok_or_else(|| bad("number out of range"))
        }
        Some(other) => Err(wrong_type(&field(), "a timestamp", other)),
    }
}

fn from_unix(value: i64) -> Option<DateTime<Utc>> {
    if value < 0 {
        return None;
    }
    if value >= MILLIS_THRESHOLD {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

/// Shortens attacker-controlled text (an event name) before it goes into a log line.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Object {
        match value {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn timestamps() {
        let o = obj(json!({
            "rfc": "2023-10-15T10:30:00Z",
            "offset": "2023-10-15T17:30:00+07:00",
            "secs": 1697365800,
            "secs_str": "1697365800",
            "millis": 1697365800123_i64,
            "float": 1697365800.9,
            "empty": "",
            "null": null,
            "bad": "yesterday",
            "neg": -5,
            "huge": 1e300,
            "huge_int": u64::MAX,
            "huge_str": "99999999999999999999999999",
            "obj": {},
        }));
        let want = DateTime::parse_from_rfc3339("2023-10-15T10:30:00Z").unwrap();
        for key in ["rfc", "offset", "secs", "secs_str", "float"] {
            assert_eq!(opt_timestamp(&o, "p", key).unwrap().unwrap(), want, "{key}");
        }
        assert_eq!(
            opt_timestamp(&o, "p", "millis")
                .unwrap()
                .unwrap()
                .timestamp_millis(),
            1697365800123
        );
        for key in ["empty", "null", "absent"] {
            assert_eq!(opt_timestamp(&o, "p", key).unwrap(), None, "{key}");
        }
        for key in ["bad", "neg", "huge", "huge_int", "huge_str"] {
            let err = opt_timestamp(&o, "p", key).unwrap_err();
            assert!(
                matches!(err, ParseError::BadTimestamp { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains(&format!("p.{key}")), "{err}");
        }
        assert_eq!(
            opt_timestamp(&o, "p", "obj").unwrap_err().to_string(),
            "field `p.obj` must be a timestamp, found an object"
        );
    }

    #[test]
    fn lenient_scalars() {
        let o = obj(
            json!({"s": "x", "n": 12, "b": true, "bs": "TRUE", "b0": 0, "bx": "maybe", "a": [], "e": " "}),
        );
        assert_eq!(opt_string(&o, "", "n").unwrap().as_deref(), Some("12"));
        assert_eq!(
            opt_string(&o, "", "a").unwrap_err().to_string(),
            "field `a` must be a string, found an array"
        );
        assert_eq!(opt_nonempty(&o, "", "e").unwrap(), None);
        assert_eq!(
            req_string(&o, "x", "e").unwrap_err(),
            ParseError::Missing("x.e".into())
        );
        assert_eq!(opt_bool(&o, "", "b").unwrap(), Some(true));
        assert_eq!(opt_bool(&o, "", "bs").unwrap(), Some(true));
        assert_eq!(opt_bool(&o, "", "b0").unwrap(), Some(false));
        assert!(opt_bool(&o, "", "bx").is_err());
        assert!(opt_bool(&o, "", "s").is_err());
        assert!(opt_object(&o, "", "s").is_err());
        assert!(opt_array(&o, "", "s").is_err());
        assert!(opt_array(&o, "", "absent").unwrap().is_empty());
    }

    #[test]
    fn non_objects_and_garbage_are_errors() {
        assert!(matches!(parse_object(b""), Err(ParseError::Json(_))));
        assert!(matches!(
            parse_object(b"\xff\xfe"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_object(b"[]"),
            Err(ParseError::WrongType { .. })
        ));
        assert!(matches!(
            parse_object(b"null"),
            Err(ParseError::WrongType { .. })
        ));
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_object(deep.as_bytes()),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        assert_eq!(excerpt("message.ack"), "message.ack");
        assert_eq!(excerpt("a\nb"), "a?b");
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), 65);
    }
}
