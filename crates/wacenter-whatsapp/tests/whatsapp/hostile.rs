// Hostile input: property tests (bounded, run by `scripts/test`) that every webhook parser,
// the signature check and phone/JID normalization answer any input with a value or an error,
//! never a panic, and that what they accept has the shape the rest of wacenter relies on.

use chrono::Utc;
use proptest::prelude::*;
use serde_json::{json, Value};
use wacenter_whatsapp::{gowa, meta, normalize_phone, verify_hub_signature, Parsed};

/// Any JSON value, a few levels deep, biased towards the field names the parsers look at.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("event".to_string()),
        Just("payload".to_string()),
        Just("id".to_string()),
        Just("from".to_string()),
        Just("chat_id".to_string()),
        Just("body".to_string()),
        Just("timestamp".to_string()),
        Just("is_from_me".to_string()),
        Just("image".to_string()),
        Just("message".to_string()),
        Just("entry".to_string()),
        Just("changes".to_string()),
        Just("value".to_string()),
        Just("messages".to_string()),
        Just("text".to_string()),
        Just("type".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("message")),
        Just(json!("628123456789@s.whatsapp.net")),
        Just(json!("2023-10-15T10:30:00Z")),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = gowa::parse_webhook(&bytes, Utc::now(), "62");
        let _ = meta::parse_webhook(&bytes, Utc::now(), "62");
    }

    #[test]
    fn parsers_never_panic_on_json(v in arb_json()) {
        let raw = serde_json::to_vec(&v).unwrap();
        for parsed in [gowa::parse_webhook(&raw, Utc::now(), "62"), meta::parse_webhook(&raw, Utc::now(), "62")].into_iter().flatten() {
            if let Parsed::Messages(messages) = parsed {
                for m in messages {
                    prop_assert!(!m.message_id.is_empty(), "a message always has an id");
                    prop_assert!(m.sender.as_deref().unwrap_or("").chars().all(|c| c.is_ascii_digit()), "sender is digits: {:?}", m.sender);
                }
            }
        }
    }

    #[test]
    fn gowa_v8_messages_keep_their_id_and_sender(id in "[A-F0-9]{8,24}", phone in "62[1-9][0-9]{8,11}", text in "[A-Za-z0-9][A-Za-z0-9 .,]{0,60}[A-Za-z0-9]") {
        let body = json!({"event": "message", "device_id": "628987654321@s.whatsapp.net", "payload": {
            "id": id, "chat_id": format!("{phone}@s.whatsapp.net"), "from": format!("{phone}@s.whatsapp.net"),
            "timestamp": "2023-10-15T10:30:00Z", "is_from_me": false, "body": text}});
        let parsed = gowa::parse_webhook(&serde_json::to_vec(&body).unwrap(), Utc::now(), "62").unwrap();
        let Parsed::Messages(m) = parsed else { panic!("a chat message must parse") };
        prop_assert_eq!(&m[0].message_id, &id);
        prop_assert_eq!(m[0].sender.as_deref(), Some(phone.as_str()));
        prop_assert_eq!(&m[0].text, &text);
    }

    #[test]
    fn phone_normalization_is_total_and_idempotent(input in ".{0,40}") {
        if let Some(digits) = normalize_phone(&input, "62") {
            prop_assert!(digits.chars().all(|c| c.is_ascii_digit()));
            prop_assert!((6..=15).contains(&digits.len()), "{digits}");
            prop_assert_eq!(normalize_phone(&digits, "62"), Some(digits.clone()));
        }
    }

    #[test]
    fn jids_and_local_numbers(user in "[1-9][0-9]{8,11}", device in 0u8..40) {
        let jid = format!("{user}:{device}@s.whatsapp.net");
        prop_assert_eq!(normalize_phone(&jid, "62").map(String::from), Some(user.clone()));
        prop_assert_eq!(normalize_phone(&format!("0{user}"), "62").map(String::from), Some(format!("62{user}")));
        prop_assert_eq!(normalize_phone(&format!("{user}@g.us"), "62"), None);
    }

    #[test]
    fn signature_check_never_panics(header in ".{0,100}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert!(verify_hub_signature(b"secret", &body, Some(&header)).is_err() || header.starts_with("sha256=") || header.starts_with("SHA256="));
    }
}
