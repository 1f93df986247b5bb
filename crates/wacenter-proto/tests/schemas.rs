//! The contract in `proto/` and the Rust types agree:
//!
//! * every payload type, serialized with serde, validates against its JSON Schema in
//!   `proto/schemas/` (optional fields present and absent), and the schemas' property and
//!   `required` lists are exactly what serde writes;
//! * the schemas reject what breaks the contract (missing required field, wrong enum value, extra
//!   field, newer version, bad timestamp), so this check can fail;
//! * the examples in the schemas and in `proto/README.md` are valid and readable by the types;
//! * `proto/README.md` names every stream, subject, consumer, bucket and header of `names.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use jsonschema::Validator;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use wacenter_proto::{
    names, schemas, DeadLetter, DeadLetterReason, InboundMessage, OutboundId, OutboundKind,
    OutboundMessage, PhoneNumber, Provider, TrailEvent, TrailKey, TrailKeyKind, TrailStep,
    PAYLOAD_VERSION,
};

const INBOUND: &str = "inbound-message.v1.json";
const OUTBOUND: &str = "outbound-message.v1.json";
const DEAD_LETTER: &str = "dead-letter.v1.json";
const CLAIM: &str = "claim-record.v1.json";
const TRAIL_EVENT: &str = "trail-event.v1.json";
const TRAIL_KEY: &str = "trail-key.v1.json";

const ALL_REASONS: [DeadLetterReason; 10] = [
    DeadLetterReason::Expired,
    DeadLetterReason::AuthFailed,
    DeadLetterReason::Rejected,
    DeadLetterReason::RetriesExhausted,
    DeadLetterReason::Uncertain,
    DeadLetterReason::Invalid,
    DeadLetterReason::SendFailed,
    DeadLetterReason::Unreadable,
    DeadLetterReason::UnknownAccount,
    DeadLetterReason::NoPhoneNumber,
];

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A schema file as stored on disk.
fn schema(name: &str) -> Value {
    let text = read(proto_dir().join("schemas").join(name));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// A draft 2020-12 validator that also checks `format` (date-time).
fn validator(name: &str) -> Validator {
    let schema = schema(name);
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{name} is not a valid JSON Schema: {e}");
    }
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

fn errors(v: &Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} (at {:?})", e.instance_path().as_str()))
        .collect()
}

#[track_caller]
fn assert_valid(v: &Validator, doc: &Value, what: &str) {
    let errors = errors(v, doc);
    assert!(
        errors.is_empty(),
        "{what} should be valid but: {errors:#?}\n{doc:#}"
    );
}

#[track_caller]
fn assert_invalid(v: &Validator, doc: &Value, what: &str) {
    assert!(
        !v.is_valid(doc),
        "{what} should be rejected by the schema\n{doc:#}"
    );
}

/// Serializes with serde and validates, then checks the document reads back as the same value.
#[track_caller]
fn assert_round_trip<T>(v: &Validator, value: &T, what: &str) -> Value
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let doc = serde_json::to_value(value).expect("payloads serialize");
    assert_valid(v, &doc, what);
    let back: T = serde_json::from_value(doc.clone()).expect("payloads deserialize");
    assert_eq!(&back, value, "{what} does not round-trip");
    doc
}

fn at(secs: u32, nanos: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 8, 15, secs).unwrap()
        + chrono::Duration::nanoseconds(i64::from(nanos))
}

fn keys(doc: &Value) -> BTreeSet<String> {
    doc.as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn schema_properties(schema: &Value) -> BTreeSet<String> {
    keys(&schema["properties"])
}

fn schema_required(schema: &Value) -> BTreeSet<String> {
    schema["required"]
        .as_array()
        .expect("required is a list")
        .iter()
        .map(|k| k.as_str().expect("required names are strings").to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `full` has every optional field, `minimal` none: the schema must list exactly the fields of
/// `full` as properties, and require exactly those of `minimal` except the `#[serde(default)]`
/// ones, which readers accept missing.
#[track_caller]
fn assert_fields_match(name: &str, full: &Value, minimal: &Value, defaulted: &[&str]) {
    let schema = schema(name);
    assert_eq!(
        schema_properties(&schema),
        keys(full),
        "{name}: properties differ from the fields serde writes"
    );
    let expected: BTreeSet<String> = keys(minimal).difference(&set(defaulted)).cloned().collect();
    assert_eq!(
        schema_required(&schema),
        expected,
        "{name}: required differs from the fields serde always writes"
    );
    assert_eq!(
        schema["additionalProperties"],
        json!(false),
        "{name}: the Rust type is closed"
    );
}

/// The common violations, each of which must be rejected; with `T`, also checks that the Rust
/// reader refuses what the schema calls a missing required field or a wrong enum value.
#[track_caller]
fn assert_violations_rejected<T: DeserializeOwned>(
    name: &str,
    valid: &Value,
    enums: &[&str],
    dates: &[&str],
    check_rust: bool,
) {
    let v = validator(name);
    assert_valid(&v, valid, &format!("{name}: the base document"));
    let schema = schema(name);
    for field in schema_required(&schema) {
        let mut doc = valid.clone();
        doc.as_object_mut().unwrap().remove(&field);
        assert_invalid(&v, &doc, &format!("{name} without required {field:?}"));
        if check_rust {
            assert!(
                serde_json::from_value::<T>(doc).is_err(),
                "{name}: the Rust type accepts a document without {field:?}, but the schema requires it"
            );
        }
    }
    for field in enums {
        let mut doc = valid.clone();
        doc[*field] = json!("carrier_pigeon");
        assert_invalid(&v, &doc, &format!("{name} with a wrong {field:?}"));
        if check_rust {
            assert!(
                serde_json::from_value::<T>(doc).is_err(),
                "{name}: the Rust type accepts a wrong {field:?}"
            );
        }
    }
    for field in dates {
        for bad in ["yesterday", "2025-06-01 08:15:30", "2025-13-01T08:15:30Z"] {
            let mut doc = valid.clone();
            doc[*field] = json!(bad);
            assert_invalid(&v, &doc, &format!("{name} with {field:?} = {bad:?}"));
        }
    }
    let mut doc = valid.clone();
    doc["surprise"] = json!(true);
    assert_invalid(&v, &doc, &format!("{name} with an extra field"));
    let mut doc = valid.clone();
    doc.as_object_mut()
        .unwrap()
        .insert("Version".into(), json!(1));
    assert_invalid(&v, &doc, &format!("{name} with a miscased extra field"));
    if doc.get("version").is_some() {
        for bad in [json!(2), json!(0), json!("1")] {
            let mut doc = valid.clone();
            doc["version"] = bad.clone();
            assert_invalid(&v, &doc, &format!("{name} with version {bad}"));
        }
    }
    assert_invalid(&v, &json!([valid]), &format!("{name}: an array"));
    assert_invalid(&v, &json!("text"), &format!("{name}: a string"));
}

// ---------------------------------------------------------------------------------------------
// Payload values

fn inbound_full() -> InboundMessage {
    InboundMessage {
        version: PAYLOAD_VERSION,
        provider: Provider::Gowa,
        account: "628111222333@s.whatsapp.net".into(),
        message_id: "3EB0C127D7BACC83D6A1".into(),
        chat: "120363025246125888@g.us".into(),
        sender: Some(PhoneNumber::from_digits("628987654321").unwrap()),
        sender_name: "Toko Maju".into(),
        timestamp: at(30, 0),
        text: "bukti transfer".into(),
        is_group: true,
        from_me: false,
        has_media: true,
        media_type: Some("image".into()),
        received_at: at(31, 204_000_000),
    }
}

fn inbound_minimal() -> InboundMessage {
    InboundMessage {
        version: PAYLOAD_VERSION,
        provider: Provider::Meta,
        account: String::new(),
        message_id: "wamid.HBgNNjI4OTg3NjU0MzIxFQIAEhggQjNFM0".into(),
        chat: "628987654321".into(),
        sender: None,
        sender_name: String::new(),
        timestamp: at(30, 123_456_789),
        text: "S5.08123456789.1234".into(),
        is_group: false,
        from_me: true,
        has_media: false,
        media_type: None,
        received_at: Utc::now(),
    }
}

fn outbound_full() -> OutboundMessage {
    let inbound = inbound_full();
    OutboundMessage {
        version: PAYLOAD_VERSION,
        id: OutboundId::auto_reply(&inbound.dedupe_id()),
        kind: OutboundKind::AutoReply,
        provider: Some(Provider::Gowa),
        account: inbound.account.clone(),
        to: inbound.sender.clone().unwrap(),
        text: "Transaksi S5 ke 08123456789 sedang diproses".into(),
        reply_to: Some(inbound.message_id.clone()),
        in_reply_to: Some(inbound.message_id.clone()),
        otomax: Some("jaya".into()),
        outbox_kode: Some(99_120),
        kode_inbox: Some(218_223),
        part: Some(2),
        created_at: at(31, 912_000_000),
    }
}

fn outbound_minimal() -> OutboundMessage {
    OutboundMessage {
        version: PAYLOAD_VERSION,
        id: OutboundId::outbox_without_kode("0123456789abcdef0123456789abcdef", Utc::now()),
        kind: OutboundKind::Outbox,
        provider: None,
        account: String::new(),
        to: PhoneNumber::from_digits("628987654321").unwrap(),
        text: "SUKSES S5.08123456789 SN:0412345678901234".into(),
        reply_to: None,
        in_reply_to: None,
        otomax: None,
        outbox_kode: None,
        kode_inbox: None,
        part: None,
        created_at: Utc::now(),
    }
}

fn dead_letter(reason: DeadLetterReason, original: Value, subject: &str) -> DeadLetter {
    DeadLetter {
        version: PAYLOAD_VERSION,
        id: "gowa:628111222333@s.whatsapp.net:3EB0C127D7BACC83D6A1".into(),
        reason,
        error: format!("{} happened", reason.as_str()),
        subject: subject.into(),
        payload: original,
        attempts: 3,
        failed_at: at(59, 1),
    }
}

fn claim_examples() -> Vec<Value> {
    vec![
        json!({"state": "claimed", "seq": 1, "at": "2025-06-01T08:15:31Z"}),
        json!({"state": "in_progress", "seq": 77, "at": "2025-06-01T08:15:31.870123456Z"}),
        json!({"state": "done", "seq": 1042, "at": "2025-06-01T08:15:31.870Z", "detail": {
            "kode_inbox": 218223, "status": 21, "statusDesc": "OK", "pesan": "diproses"}}),
        json!({"state": "done", "seq": 1042, "at": "2025-06-01T08:15:31.870Z", "detail": {
            "kode_inbox": null, "status": 0, "statusDesc": "", "pesan": "", "extra": [1, 2]}}),
        json!({"state": "done", "seq": 5, "at": "2025-06-01T08:15:32+00:00", "detail": {
            "provider_message_id": "3EB0D0E5A1F2"}}),
        json!({"state": "failed", "seq": 1043, "at": "2025-06-01T08:16:02.430Z", "detail": {
            "reason": "expired", "error": "_exp had passed"}}),
        json!({"state": "failed", "seq": 9, "at": "2025-06-01T08:16:02Z", "detail": {
            "error": "provider refused: not a WhatsApp user"}}),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn schema_files_are_valid_and_embedded() {
    let dir = proto_dir().join("schemas");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let embedded: BTreeSet<String> = schemas::ALL.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        on_disk, embedded,
        "wacenter_proto::schemas::ALL must list every file in proto/schemas/"
    );
    for (name, text) in schemas::ALL {
        assert_eq!(
            text,
            read(dir.join(name)),
            "{name}: embedded text differs from the file"
        );
        let doc = schema(name);
        assert_eq!(
            doc["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema"),
            "{name}"
        );
        // Meta-validates and compiles; then the schema's own examples must be valid.
        let v = validator(name);
        let examples = doc["examples"]
            .as_array()
            .expect("every schema has examples");
        assert!(!examples.is_empty(), "{name} has no examples");
        for (i, example) in examples.iter().enumerate() {
            assert_valid(&v, example, &format!("{name} example {i}"));
        }
    }
    assert_eq!(schemas::INBOUND_MESSAGE, read(dir.join(INBOUND)));
    assert_eq!(schemas::OUTBOUND_MESSAGE, read(dir.join(OUTBOUND)));
    assert_eq!(schemas::DEAD_LETTER, read(dir.join(DEAD_LETTER)));
    assert_eq!(schemas::CLAIM_RECORD, read(dir.join(CLAIM)));
}

#[test]
fn schema_examples_read_as_the_rust_types() {
    fn each<T: DeserializeOwned>(name: &str) {
        for (i, example) in schema(name)["examples"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            if let Err(e) = serde_json::from_value::<T>(example.clone()) {
                panic!("{name} example {i} does not deserialize: {e}");
            }
        }
    }
    each::<InboundMessage>(INBOUND);
    each::<OutboundMessage>(OUTBOUND);
    each::<DeadLetter>(DEAD_LETTER);
}

#[test]
fn subjects_map_to_schemas() {
    for provider in [Provider::Gowa, Provider::Meta] {
        for lane in [names::DEFAULT_LANE, "jaya"] {
            assert_eq!(
                schemas::for_subject(&names::inbound_subject(provider, lane)),
                Some(schemas::INBOUND_MESSAGE)
            );
        }
    }
    for subject in [
        names::OUTBOUND_AUTO_REPLY,
        names::OUTBOUND_OUTBOX,
        &names::auto_reply_subject("jaya"),
        &names::outbox_subject("jaya"),
    ] {
        assert_eq!(
            schemas::for_subject(subject),
            Some(schemas::OUTBOUND_MESSAGE)
        );
    }
    for subject in [names::DEADLETTER_INBOUND, names::DEADLETTER_OUTBOUND] {
        assert_eq!(schemas::for_subject(subject), Some(schemas::DEAD_LETTER));
    }
    assert_eq!(schemas::for_subject("$KV.wa_forwarded.abc"), None);
    assert_eq!(schemas::for_subject("wa.inboundx"), None);
}

#[test]
fn inbound_messages_match_the_schema() {
    let v = validator(INBOUND);
    let full = assert_round_trip(&v, &inbound_full(), "inbound with media");
    let minimal = assert_round_trip(&v, &inbound_minimal(), "inbound without media_type");
    assert!(minimal.get("media_type").is_none());
    assert_fields_match(INBOUND, &full, &minimal, &[]);
    for provider in [Provider::Gowa, Provider::Meta] {
        let msg = InboundMessage {
            provider,
            ..inbound_minimal()
        };
        assert_round_trip(&v, &msg, &format!("inbound from {provider}"));
    }
    // Contract rules that the Rust type does not enforce by itself.
    let mut doc = full.clone();
    doc["sender"] = json!("+62 898-765");
    assert_invalid(&v, &doc, "inbound with a sender that is not digits");
    let mut doc = full.clone();
    doc["media_type"] = json!(null);
    assert_invalid(&v, &doc, "inbound with media_type null (omit it instead)");
    let mut doc = full.clone();
    doc["is_group"] = json!("false");
    assert_invalid(&v, &doc, "inbound with a boolean as a string");
    assert_violations_rejected::<InboundMessage>(
        INBOUND,
        &full,
        &["provider"],
        &["timestamp", "received_at"],
        true,
    );
}

#[test]
fn outbound_messages_match_the_schema() {
    let v = validator(OUTBOUND);
    let full = assert_round_trip(&v, &outbound_full(), "auto-reply with every field");
    let minimal = assert_round_trip(&v, &outbound_minimal(), "outbox row with no optional field");
    for absent in [
        "provider",
        "reply_to",
        "in_reply_to",
        "outbox_kode",
        "kode_inbox",
    ] {
        assert!(
            minimal.get(absent).is_none(),
            "{absent} is omitted when None"
        );
    }
    // `account` has #[serde(default)]: always written, optional on input.
    assert_eq!(minimal["account"], json!(""));
    assert_fields_match(OUTBOUND, &full, &minimal, &["account"]);
    let mut without_account = minimal.clone();
    without_account.as_object_mut().unwrap().remove("account");
    assert_valid(&v, &without_account, "outbound without account");
    let read: OutboundMessage = serde_json::from_value(without_account).unwrap();
    assert_eq!(read.account, "");

    let outbox = OutboundMessage {
        id: OutboundId::outbox(99_120),
        provider: Some(Provider::Meta),
        account: "106540352242922".into(),
        otomax: None,
        outbox_kode: Some(99_120),
        kode_inbox: Some(-1),
        ..outbound_minimal()
    };
    assert_round_trip(&v, &outbox, "outbox row with kode");
    let second_part = OutboundMessage {
        id: OutboundId::outbox(99_120).part(2),
        part: Some(2),
        ..outbox.clone()
    };
    assert_eq!(second_part.id.as_str(), "outbox:99120#2");
    assert_eq!(second_part.id.part(3).as_str(), "outbox:99120#3");
    assert_round_trip(&v, &second_part, "the second part of a long outbox row");

    let mut doc = full.clone();
    doc["outbox_kode"] = json!("99120");
    assert_invalid(&v, &doc, "outbound with outbox_kode as a string");
    let mut doc = full.clone();
    doc["kind"] = json!("autoreply");
    assert_invalid(&v, &doc, "outbound with kind spelled like the subject");
    let mut doc = full.clone();
    doc["provider"] = json!("GOWA");
    assert_invalid(&v, &doc, "outbound with an upper-case provider");
    assert_violations_rejected::<OutboundMessage>(
        OUTBOUND,
        &full,
        &["kind", "provider"],
        &["created_at"],
        true,
    );
}

#[test]
fn dead_letters_match_the_schema() {
    let v = validator(DEAD_LETTER);
    let inbound = serde_json::to_value(inbound_full()).unwrap();
    let outbound = serde_json::to_value(outbound_minimal()).unwrap();
    let mut first = None;
    for reason in ALL_REASONS {
        let letter = dead_letter(reason, inbound.clone(), "wa.inbound.gowa");
        let doc = assert_round_trip(&v, &letter, &format!("inbound dead letter {reason:?}"));
        assert_eq!(doc["reason"], json!(reason.as_str()));
        first.get_or_insert(doc);
        let letter = DeadLetter {
            id: "outbox:99120".into(),
            ..dead_letter(reason, outbound.clone(), names::OUTBOUND_OUTBOX)
        };
        assert_round_trip(&v, &letter, &format!("outbound dead letter {reason:?}"));
    }
    // The schema lists exactly the reasons the type has.
    let listed: BTreeSet<String> = schema(DEAD_LETTER)["properties"]["reason"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = ALL_REASONS.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(listed, known);

    // A payload that was not JSON is kept as a string; an unreadable one as whatever JSON it was.
    let raw = DeadLetter {
        id: "unknown".into(),
        ..dead_letter(
            DeadLetterReason::Invalid,
            json!("not json \u{fffd}"),
            "wa.outbound.autoreply",
        )
    };
    assert_round_trip(&v, &raw, "dead letter of a non-JSON payload");
    // A signed webhook ingress could not read: kept raw with its headers, under webhook.<provider>.
    let webhook = DeadLetter {
        id: "webhook:gowa:0123456789abcdef0123456789abcdef".into(),
        ..dead_letter(
            DeadLetterReason::Unreadable,
            json!({"provider": "gowa", "body": "{\"payload\":{\"id\":{}}}", "headers": {"x-hub-signature-256": "sha256=00"}}),
            &names::webhook_letter_subject(Provider::Gowa),
        )
    };
    assert_round_trip(&v, &webhook, "dead letter of an unreadable webhook");
    let odd = DeadLetter {
        id: "seq:42".into(),
        attempts: u32::MAX,
        ..dead_letter(
            DeadLetterReason::RetriesExhausted,
            json!([1, 2]),
            "wa.inbound.meta",
        )
    };
    assert_round_trip(&v, &odd, "dead letter of a non-object payload");

    let full = first.unwrap();
    assert_fields_match(DEAD_LETTER, &full, &full, &[]);
    let mut doc = full.clone();
    doc["subject"] = json!("wa.deadletter.inbound");
    assert_invalid(&v, &doc, "dead letter of a dead letter");
    let mut doc = full.clone();
    doc["attempts"] = json!(-1);
    assert_invalid(&v, &doc, "dead letter with negative attempts");
    let mut doc = full.clone();
    doc["reason"] = json!("retries-exhausted");
    assert_invalid(&v, &doc, "dead letter with a kebab-case reason");
    assert_violations_rejected::<DeadLetter>(DEAD_LETTER, &full, &["reason"], &["failed_at"], true);
}

#[test]
fn claim_records_match_the_schema() {
    let v = validator(CLAIM);
    for (i, doc) in claim_examples().iter().enumerate() {
        assert_valid(&v, doc, &format!("claim record {i}"));
    }
    let states: BTreeSet<String> = schema(CLAIM)["properties"]["state"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, set(&["claimed", "in_progress", "done", "failed"]));
    assert_eq!(
        schema_required(&schema(CLAIM)),
        set(&["state", "seq", "at"])
    );

    let base = claim_examples()[2].clone();
    for bad in [
        json!({"state": "InProgress", "seq": 1, "at": "2025-06-01T08:15:31Z"}),
        json!({"state": "done", "seq": -1, "at": "2025-06-01T08:15:31Z"}),
        json!({"state": "done", "seq": "1", "at": "2025-06-01T08:15:31Z"}),
        json!({"state": "done", "seq": 1, "at": "2025-06-01T08:15:31Z", "detail": null}),
        json!({"state": "done", "seq": 1, "at": "2025-06-01T08:15:31Z", "detail": "ok"}),
        json!({"state": "done", "seq": 1, "at": 1748765731}),
    ] {
        assert_invalid(&v, &bad, "bad claim record");
    }
    assert_violations_rejected::<Value>(CLAIM, &base, &["state"], &["at"], false);
}

#[test]
fn readme_names_everything_in_names_rs() {
    let readme = read(proto_dir().join("README.md"));
    let mentioned = |s: &str| readme.contains(&format!("`{s}`"));

    // Every `pub const X: &str = "…"` of names.rs, found in its source so new ones are covered.
    let source = include_str!("../src/names.rs");
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("pub const ") {
        rest = &rest[i + "pub const ".len()..];
        let decl_end = rest.find(';').expect("a const ends with ;");
        let decl = &rest[..decl_end];
        if let Some((name, value)) = decl.split_once(": &str =") {
            let value = value.trim();
            assert!(
                value.starts_with('"') && value.ends_with('"'),
                "{name}: not a plain string literal"
            );
            found.push((name.trim().to_string(), value.trim_matches('"').to_string()));
        }
    }
    assert!(found.len() >= 18, "parsed only {found:?} from names.rs");
    for (name, value) in &found {
        assert!(
            mentioned(value),
            "proto/README.md does not mention `{value}` (names::{name})"
        );
    }

    // The same, by the constants themselves, plus what functions produce.
    for value in [
        names::INBOUND_STREAM,
        names::INBOUND_SUBJECTS,
        names::OUTBOUND_STREAM,
        names::OUTBOUND_SUBJECTS,
        names::OUTBOUND_AUTO_REPLY,
        names::OUTBOUND_OUTBOX,
        names::DEADLETTER_STREAM,
        names::DEADLETTER_SUBJECTS,
        names::DEADLETTER_INBOUND,
        names::DEADLETTER_OUTBOUND,
        names::FORWARDER_CONSUMER,
        names::REPLY_CONSUMER,
        names::FORWARDED_BUCKET,
        names::DELIVERED_BUCKET,
        names::REPLIED_BUCKET,
        names::OWN_MESSAGES_BUCKET,
        names::DEADLETTER_WEBHOOK,
        names::HEADER_MSG_ID,
        names::HEADER_TRACEPARENT,
        names::HEADER_WA_MESSAGE_ID,
    ] {
        assert!(
            mentioned(value),
            "proto/README.md does not mention `{value}`"
        );
    }
    // Every lane's names, with the server written `<server>` as the README writes it.
    let server = "<server>";
    let mut lane_names = vec![
        names::auto_reply_subject(server),
        names::outbox_subject(server),
        names::forwarder_lane(server).0,
        names::reply_lane(server).0,
    ];
    lane_names.extend(names::forwarder_lane(server).1);
    lane_names.extend(names::reply_lane(server).1);
    for provider in [Provider::Gowa, Provider::Meta] {
        lane_names.push(names::inbound_subject(provider, names::DEFAULT_LANE));
        lane_names.push(names::inbound_subject(provider, server));
    }
    for name in lane_names {
        assert!(
            mentioned(&name),
            "proto/README.md does not mention `{name}`"
        );
    }
    for (bucket, max_age) in names::BUCKETS {
        let life = match max_age.as_secs() {
            3600 => "1 hour".to_string(),
            s if s % 86_400 == 0 => format!("{} day", s / 86_400),
            s => format!("{s} s"),
        };
        assert!(
            readme.contains(&format!("| `{bucket}` | {life}")),
            "proto/README.md gives {bucket} its life ({life}) in the retention table"
        );
    }
    for reason in ALL_REASONS {
        assert!(
            mentioned(reason.as_str()),
            "proto/README.md does not explain reason `{}`",
            reason.as_str()
        );
    }
    for (file, text) in schemas::ALL {
        assert!(
            readme.contains(&format!("schemas/{file}")),
            "proto/README.md does not link schemas/{file}"
        );
        // Every field of every payload is in a field table.
        let schema: Value = serde_json::from_str(text).unwrap();
        for field in schema_properties(&schema) {
            assert!(
                readme.contains(&format!("| `{field}` |")),
                "proto/README.md has no table row for `{field}` ({file})"
            );
        }
    }
}

/// Examples in the README are preceded by `<!-- example: <schema file> -->`; each must validate.
#[test]
fn readme_examples_are_valid() {
    let readme = read(proto_dir().join("README.md"));
    let marker = "<!-- example: ";
    let mut checked = BTreeSet::new();
    let mut count = 0;
    let mut rest = readme.as_str();
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let file = rest[..rest.find(" -->").expect("marker ends with -->")].trim();
        let start = rest
            .find("```json\n")
            .expect("a ```json block follows the marker")
            + 8;
        let len = rest[start..].find("\n```").expect("the block ends");
        let block = &rest[start..start + len];
        let doc: Value = serde_json::from_str(block)
            .unwrap_or_else(|e| panic!("README example for {file} is not JSON: {e}\n{block}"));
        assert_valid(
            &validator(file),
            &doc,
            &format!("README example for {file}"),
        );
        match file {
            INBOUND => {
                let _: InboundMessage = serde_json::from_value(doc).unwrap();
            }
            OUTBOUND => {
                let _: OutboundMessage = serde_json::from_value(doc).unwrap();
            }
            DEAD_LETTER => {
                let _: DeadLetter = serde_json::from_value(doc).unwrap();
            }
            TRAIL_EVENT => {
                let _: TrailEvent = serde_json::from_value(doc).unwrap();
            }
            TRAIL_KEY => {
                let _: TrailKey = serde_json::from_value(doc).unwrap();
            }
            _ => {}
        }
        checked.insert(file.to_string());
        count += 1;
        rest = &rest[start + len..];
    }
    assert!(count >= 4, "only {count} README examples found");
    assert_eq!(
        checked,
        set(&[
            INBOUND,
            OUTBOUND,
            DEAD_LETTER,
            CLAIM,
            TRAIL_EVENT,
            TRAIL_KEY
        ]),
        "every schema needs a README example"
    );
}

const ALL_STEPS: [TrailStep; 11] = [
    TrailStep::Received,
    TrailStep::Skipped,
    TrailStep::Forwarded,
    TrailStep::OtomaxFailed,
    TrailStep::NoticeQueued,
    TrailStep::Sent,
    TrailStep::SendFailed,
    TrailStep::OutboxReceived,
    TrailStep::OutboxStatus,
    TrailStep::DeadLettered,
    TrailStep::Replayed,
];

#[test]
fn trail_steps_and_keys_match_the_schema() {
    let v = validator(TRAIL_EVENT);
    let mut full = TrailEvent::new(TrailStep::Forwarded, "gowa:a:3EB0", "628987654321");
    full.at = at(31, 380_000_000);
    full.otomax = Some("jaya".into());
    full.kode_inbox = Some(218_223);
    full.kode = Some(9_047_353);
    full.status = Some(21);
    full.detail = "Sukses Masuk Outbox (1 attempt)".into();
    full.text = TrailEvent::shorten(&"x".repeat(500));
    full.reply = "diproses".into();
    assert_eq!(full.text.chars().count(), 121);
    let mut minimal = TrailEvent::new(TrailStep::Received, "gowa:a:3EB0", "");
    minimal.at = at(31, 0);
    let full_doc = assert_round_trip(&v, &full, "a full trail step");
    let minimal_doc = assert_round_trip(&v, &minimal, "a minimal trail step");
    assert_fields_match(TRAIL_EVENT, &full_doc, &minimal_doc, &[]);
    for step in ALL_STEPS {
        let doc = assert_round_trip(
            &v,
            &TrailEvent {
                step,
                ..minimal.clone()
            },
            &format!("step {step:?}"),
        );
        assert_eq!(doc["step"], json!(step.as_str()));
    }
    let listed: BTreeSet<String> = schema(TRAIL_EVENT)["properties"]["step"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let known: BTreeSet<String> = ALL_STEPS.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(listed, known);
    assert_violations_rejected::<TrailEvent>(TRAIL_EVENT, &full_doc, &["step"], &["at"], true);

    let v = validator(TRAIL_KEY);
    for kind in [
        TrailKeyKind::MessageId,
        TrailKeyKind::KodeInbox,
        TrailKeyKind::Kode,
    ] {
        let key = TrailKey {
            version: PAYLOAD_VERSION,
            key: "218223".into(),
            kind,
            phone: "628987654321".into(),
            at: at(31, 0),
            seq: Some(48_213),
            message: (kind == TrailKeyKind::KodeInbox)
                .then(|| "gowa:628111222333@s.whatsapp.net:3EB0C1".to_string()),
            kode_inbox: (kind == TrailKeyKind::Kode).then_some(218_223),
        };
        let doc = assert_round_trip(&v, &key, &format!("key {kind:?}"));
        assert_violations_rejected::<TrailKey>(TRAIL_KEY, &doc, &["kind"], &["at"], true);
    }
    let full = TrailKey {
        version: PAYLOAD_VERSION,
        key: "218223".into(),
        kind: TrailKeyKind::KodeInbox,
        phone: "628987654321".into(),
        at: at(31, 0),
        seq: Some(48_213),
        message: Some("gowa:628111222333@s.whatsapp.net:3EB0C1".into()),
        kode_inbox: Some(218_223),
    };
    let minimal = TrailKey {
        seq: None,
        message: None,
        kode_inbox: None,
        ..full.clone()
    };
    assert_fields_match(
        TRAIL_KEY,
        &assert_round_trip(&v, &full, "full key"),
        &assert_round_trip(&v, &minimal, "minimal key"),
        &[],
    );
    assert_eq!(
        schemas::for_subject(&names::trail_phone_subject("628987654321")),
        Some(schemas::TRAIL_EVENT)
    );
    assert_eq!(
        schemas::for_subject(&names::trail_key_subject(
            "218223",
            chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
        )),
        Some(schemas::TRAIL_KEY)
    );
}
