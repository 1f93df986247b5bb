//! Meta WhatsApp Business Cloud API webhooks: the `GET` verification handshake and the `POST`
//! notifications (`entry[].changes[].value.messages[]`), turned into [`InboundMessage`]s.
//!
//! Only text and captioned media reach OtomaX; statuses (sent/delivered/read/failed), error
//! notifications and other message kinds (reactions, locations, button replies, …) are not
//! chat messages. Meta retries for days, so the message id (`wamid…`) is what dedupes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use subtle::ConstantTimeEq;
use wacenter_proto::{InboundMessage, PhoneNumber, Provider, PAYLOAD_VERSION};

use crate::phone::normalize_phone;
use crate::webhook::{
    excerpt, opt_array, opt_nonempty, opt_object, opt_string, opt_timestamp, parse_object,
    req_string, wrong_type, Object, ParseError, Parsed,
};

/// Message types that carry something OtomaX can read: text, or media with an optional caption.
const MEDIA_TYPES: &[&str] = &["image", "video", "audio", "document", "sticker"];

/// Longest `hub.challenge` echoed back. Meta sends a short integer.
const MAX_CHALLENGE_LEN: usize = 256;

/// Answers Meta's subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`):
/// the challenge to send back as plain text with 200 when the token matches, `None` for 403.
///
/// The token is compared in constant time. An empty expected token never matches (an unset
/// setting must not open the endpoint), and the challenge is only echoed if it is short and
/// made of letters, digits, `-`, `_` and `.`, since it is reflected into our response.
pub fn verify_challenge(query: &HashMap<String, String>, expected_token: &str) -> Option<String> {
    let mode = query.get("hub.mode")?;
    let token = query.get("hub.verify_token")?;
    let challenge = query.get("hub.challenge")?;
    if mode != "subscribe" || expected_token.is_empty() {
        return None;
    }
    if !bool::from(token.as_bytes().ct_eq(expected_token.as_bytes())) {
        return None;
    }
    let safe = !challenge.is_empty()
        && challenge.len() <= MAX_CHALLENGE_LEN
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    safe.then(|| challenge.clone())
}

/// Parses a Meta webhook body. `received_at` stands in for a missing timestamp; `default_cc`
/// is only used if Meta ever sends a national number (it sends international digits).
pub fn parse_webhook(
    raw_body: &[u8],
    received_at: DateTime<Utc>,
    default_cc: &str,
) -> Result<Parsed, ParseError> {
    let root = parse_object(raw_body)?;
    if let Some(object) = opt_string(&root, "", "object")? {
        if object != "whatsapp_business_account" {
            return Ok(Parsed::Ignored(format!(
                "object {} is not a WhatsApp Business Account",
                excerpt(&object)
            )));
        }
    }

    let mut messages = Vec::new();
    let mut seen = Seen::default();
    for (e, entry) in opt_array(&root, "", "entry")?.iter().enumerate() {
        let entry_path = format!("entry[{e}]");
        let entry = as_object(entry, &entry_path)?;
        for (c, change) in opt_array(entry, &entry_path, "changes")?.iter().enumerate() {
            let change_path = format!("{entry_path}.changes[{c}]");
            let change = as_object(change, &change_path)?;
            if let Some(field) = opt_string(change, &change_path, "field")? {
                if field != "messages" {
                    seen.other_fields.push(excerpt(&field));
                    continue;
                }
            }
            let value_path = format!("{change_path}.value");
            let Some(value) = opt_object(change, &change_path, "value")? else {
                continue;
            };
            parse_value(
                value,
                &value_path,
                received_at,
                default_cc,
                &mut messages,
                &mut seen,
            )?;
        }
    }

    if !messages.is_empty() {
        return Ok(Parsed::Messages(messages));
    }
    Ok(Parsed::Ignored(seen.reason()))
}

/// What a payload without chat messages contained, for the log line.
#[derive(Default)]
struct Seen {
    statuses: usize,
    errors: usize,
    skipped_types: Vec<String>,
    other_fields: Vec<String>,
}

impl Seen {
    fn reason(self) -> String {
        if self.statuses > 0 {
            format!("{} status update(s), not chat messages", self.statuses)
        } else if !self.skipped_types.is_empty() {
            format!(
                "message type(s) {} are not supported",
                self.skipped_types.join(", ")
            )
        } else if self.errors > 0 {
            format!("{} error notification(s), not chat messages", self.errors)
        } else if !self.other_fields.is_empty() {
            format!(
                "field(s) {} are not chat messages",
                self.other_fields.join(", ")
            )
        } else {
            "the notification contains no messages".to_owned()
        }
    }
}

fn parse_value(
    value: &Object,
    path: &str,
    received_at: DateTime<Utc>,
    default_cc: &str,
    out: &mut Vec<InboundMessage>,
    seen: &mut Seen,
) -> Result<(), ParseError> {
    seen.statuses += opt_array(value, path, "statuses")?.len();
    seen.errors += opt_array(value, path, "errors")?.len();
    let messages = opt_array(value, path, "messages")?;
    if messages.is_empty() {
        return Ok(());
    }

    let metadata_path = format!("{path}.metadata");
    let account = match opt_object(value, path, "metadata")? {
        Some(metadata) => opt_string(metadata, &metadata_path, "phone_number_id")?,
        None => None,
    }
    .unwrap_or_default();
    let names = contact_names(value, path)?;

    for (i, message) in messages.iter().enumerate() {
        let mpath = format!("{path}.messages[{i}]");
        let m = as_object(message, &mpath)?;
        let message_id = req_string(m, &mpath, "id")?;
        let from = req_string(m, &mpath, "from")?;
        let kind = req_string(m, &mpath, "type")?;
        let (text, media_type) = match kind.as_str() {
            "text" => {
                let body = opt_object(m, &mpath, "text")?
                    .map(|t| opt_string(t, &format!("{mpath}.text"), "body"))
                    .transpose()?
                    .flatten()
                    .unwrap_or_default();
                (body, None)
            }
            media if MEDIA_TYPES.contains(&media) => {
                let caption = opt_object(m, &mpath, media)?
                    .map(|o| opt_string(o, &format!("{mpath}.{media}"), "caption"))
                    .transpose()?
                    .flatten()
                    .unwrap_or_default();
                (caption, Some(media.to_owned()))
            }
            other => {
                seen.skipped_types.push(excerpt(other));
                continue;
            }
        };
        let sender = normalize_phone(&from, default_cc);
        let sender_name = names
            .get(from.as_str())
            .cloned()
            .or_else(|| {
                (names.len() == 1)
                    .then(|| names.values().next().cloned())
                    .flatten()
            })
            .unwrap_or_default();
        out.push(InboundMessage {
            version: PAYLOAD_VERSION,
            provider: Provider::Meta,
            account: account.clone(),
            message_id,
            // A Cloud API number only ever talks one-to-one: the chat is the sender's number.
            chat: sender.as_ref().map_or(from, PhoneNumber::to_string),
            sender,
            sender_name,
            timestamp: opt_timestamp(m, &mpath, "timestamp")?.unwrap_or(received_at),
            text,
            is_group: false,
            // Meta does not notify about messages the business sent.
            from_me: false,
            has_media: media_type.is_some(),
            media_type,
            received_at,
        });
    }
    Ok(())
}

/// `value.contacts[]`: `wa_id` → `profile.name`.
fn contact_names(value: &Object, path: &str) -> Result<HashMap<String, String>, ParseError> {
    let mut names = HashMap::new();
    for (i, contact) in opt_array(value, path, "contacts")?.iter().enumerate() {
        let cpath = format!("{path}.contacts[{i}]");
        let contact = as_object(contact, &cpath)?;
        let name = match opt_object(contact, &cpath, "profile")? {
            Some(profile) => opt_nonempty(profile, &format!("{cpath}.profile"), "name")?,
            None => None,
        };
        if let Some(name) = name {
            let wa_id = opt_string(contact, &cpath, "wa_id")?.unwrap_or_default();
            names.insert(wa_id, name);
        }
    }
    Ok(names)
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, ParseError> {
    match value {
        Value::Object(o) => Ok(o),
        other => Err(wrong_type(path, "an object", other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &[u8] = include_bytes!("../tests/fixtures/meta-text.json");
    const STATUS: &[u8] = include_bytes!("../tests/fixtures/meta-status.json");

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_749_416_400, 0).unwrap()
    }

    fn parse(value: &Value) -> Result<Parsed, ParseError> {
        parse_webhook(value.to_string().as_bytes(), now(), "62")
    }

    fn messages(value: Value) -> Vec<InboundMessage> {
        match parse(&value) {
            Ok(Parsed::Messages(m)) => m,
            other => panic!("expected messages, got {other:?}"),
        }
    }

    fn ignored(value: Value) -> String {
        match parse(&value) {
            Ok(Parsed::Ignored(reason)) => reason,
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    fn wrap(messages: Value) -> Value {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"profile": {"name": "Sheena"}, "wa_id": "16505551234"}],
                "messages": messages
            }}]}]
        })
    }

    #[test]
    fn text_fixture() {
        let parsed = parse_webhook(TEXT, now(), "62").unwrap();
        let Parsed::Messages(messages) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            messages,
            vec![InboundMessage {
                version: PAYLOAD_VERSION,
                provider: Provider::Meta,
                account: "106540352242922".into(),
                message_id: "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=".into(),
                chat: "16505551234".into(),
                sender: PhoneNumber::from_digits("16505551234").ok(),
                sender_name: "Sheena Nelson".into(),
                timestamp: DateTime::from_timestamp(1_749_416_383, 0).unwrap(),
                text: "Does it come in another color?".into(),
                is_group: false,
                from_me: false,
                has_media: false,
                media_type: None,
                received_at: now(),
            }]
        );
    }

    #[test]
    fn status_fixture_is_ignored() {
        assert_eq!(
            parse_webhook(STATUS, now(), "62").unwrap(),
            Parsed::Ignored("1 status update(s), not chat messages".into())
        );
    }

    #[test]
    fn media_with_and_without_caption() {
        let got = messages(wrap(json!([
            {"from": "16505551234", "id": "wamid.1", "timestamp": "1749416383", "type": "image",
             "image": {"caption": "bukti transfer", "mime_type": "image/jpeg", "sha256": "x", "id": "m1"}},
            {"from": "16505551234", "id": "wamid.2", "timestamp": "1749416384", "type": "audio",
             "audio": {"mime_type": "audio/ogg", "id": "m2", "voice": true}},
            {"from": "16505551234", "id": "wamid.3", "timestamp": "1749416385", "type": "document",
             "document": {"caption": "invoice", "filename": "a.pdf", "id": "m3"}},
        ])));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].text, "bukti transfer");
        assert_eq!(got[0].media_type.as_deref(), Some("image"));
        assert!(got[0].has_media);
        assert_eq!(got[1].text, "");
        assert_eq!(got[1].media_type.as_deref(), Some("audio"));
        assert_eq!(got[2].text, "invoice");
        assert!(got
            .iter()
            .all(|m| m.sender_name == "Sheena" && m.account == "106540352242922"));
    }

    #[test]
    fn unsupported_types_are_skipped() {
        let got = messages(wrap(json!([
            {"from": "16505551234", "id": "wamid.r", "timestamp": "1749416383", "type": "reaction",
             "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
            {"from": "16505551234", "id": "wamid.t", "timestamp": "1749416384", "type": "text",
             "text": {"body": "saldo"}},
        ])));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message_id, "wamid.t");

        let reason = ignored(wrap(json!([
            {"from": "16505551234", "id": "wamid.u", "timestamp": "1749416383", "type": "unsupported",
             "errors": [{"code": 131051}]},
            {"from": "16505551234", "id": "wamid.s", "timestamp": "1749416383", "type": "system",
             "system": {"body": "changed number"}},
        ])));
        assert_eq!(
            reason,
            "message type(s) unsupported, system are not supported"
        );
    }

    #[test]
    fn several_entries_and_changes_are_flattened() {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"changes": [
                {"field": "messages", "value": {"metadata": {"phone_number_id": 111}, "messages": [
                    {"from": "6281234567890", "id": "a", "timestamp": 1749416383, "type": "text", "text": {"body": "1"}}]}},
                {"field": "messages", "value": {"metadata": {"phone_number_id": "222"}, "statuses": [{"id": "x"}]}}
            ]},
            {"changes": [
                {"field": "messages", "value": {"metadata": {"phone_number_id": "333"}, "messages": [
                    {"from": "6281234567891", "id": "b", "type": "text", "text": {"body": "2"}}]}}
            ]}
        ]});
        let got = messages(body);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].account, "111");
        assert_eq!(got[0].sender.as_deref(), Some("6281234567890"));
        assert_eq!(got[0].sender_name, "");
        assert_eq!(got[1].account, "333");
        // No timestamp: when we received it.
        assert_eq!(got[1].timestamp, now());
    }

    #[test]
    fn names_are_matched_by_wa_id() {
        let body = json!({"entry": [{"changes": [{"value": {
            "metadata": {"phone_number_id": "1"},
            "contacts": [
                {"profile": {"name": "A"}, "wa_id": "6281111111111"},
                {"profile": {"name": "B"}, "wa_id": "6282222222222"}],
            "messages": [
                {"from": "6282222222222", "id": "x", "type": "text", "text": {"body": "hi"}},
                {"from": "6283333333333", "id": "y", "type": "text", "text": {"body": "hi"}}]
        }}]}]});
        let got = messages(body);
        assert_eq!(got[0].sender_name, "B");
        assert_eq!(got[1].sender_name, "");
    }

    #[test]
    fn non_messages_are_ignored_with_a_reason() {
        assert_eq!(
            ignored(json!({"object": "page", "entry": []})),
            "object page is not a WhatsApp Business Account"
        );
        assert_eq!(
            ignored(
                json!({"object": "whatsapp_business_account", "entry": [{"changes": [
                {"field": "account_update", "value": {"event": "x"}}]}]})
            ),
            "field(s) account_update are not chat messages"
        );
        assert_eq!(
            ignored(
                json!({"entry": [{"changes": [{"field": "messages", "value": {
                "errors": [{"code": 131008}]}}]}]})
            ),
            "1 error notification(s), not chat messages"
        );
        assert_eq!(ignored(json!({})), "the notification contains no messages");
    }

    #[test]
    fn errors_name_the_field() {
        let err = |v: Value| parse(&v).unwrap_err().to_string();
        assert_eq!(
            err(wrap(
                json!([{"from": "1", "type": "text", "text": {"body": "x"}}])
            )),
            "missing field `entry[0].changes[0].value.messages[0].id`"
        );
        assert_eq!(
            err(wrap(json!([{"id": "1", "type": "text"}]))),
            "missing field `entry[0].changes[0].value.messages[0].from`"
        );
        assert_eq!(
            err(wrap(json!([{"id": "1", "from": "1"}]))),
            "missing field `entry[0].changes[0].value.messages[0].type`"
        );
        assert_eq!(
            err(wrap(json!([{"id": "1", "from": "1", "type": "text", "timestamp": "later"}]))),
            "field `entry[0].changes[0].value.messages[0].timestamp` is not a valid timestamp: expected RFC 3339 or Unix seconds"
        );
        assert_eq!(
            err(wrap(
                json!([{"id": "1", "from": "1", "type": "text", "text": "x"}])
            )),
            "field `entry[0].changes[0].value.messages[0].text` must be an object, found a string"
        );
        assert_eq!(
            err(json!({"entry": {}})),
            "field `entry` must be an array, found an object"
        );
        assert_eq!(
            err(json!({"entry": [5]})),
            "field `entry[0]` must be an object, found a number"
        );
        assert!(parse_webhook(b"not json", now(), "62").is_err());
    }

    #[test]
    fn hostile_input_never_panics() {
        for body in [
            &b"{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":1e400}]}}]}]}"[..],
            b"{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[{\"id\":\"1\",\"from\":\"1\",\"type\":\"text\",\"timestamp\":\"99999999999999999999\"}]}}]}]}",
            b"{\"entry\":[{\"changes\":[{\"value\":{\"messages\":[null]}}]}]}",
            b"{\"entry\":[{\"changes\":[null]}]}",
            b"{\"entry\":null}",
            b"{\"object\":null}",
            b"{\"object\":[]}",
        ] {
            let _ = parse_webhook(body, now(), "62");
        }
    }

    #[test]
    fn challenge_handshake() {
        let q = |mode: &str, token: &str, challenge: &str| {
            HashMap::from([
                ("hub.mode".to_owned(), mode.to_owned()),
                ("hub.verify_token".to_owned(), token.to_owned()),
                ("hub.challenge".to_owned(), challenge.to_owned()),
            ])
        };
        assert_eq!(
            verify_challenge(&q("subscribe", "tok", "1158201444"), "tok").as_deref(),
            Some("1158201444")
        );
        assert_eq!(verify_challenge(&q("subscribe", "bad", "1"), "tok"), None);
        assert_eq!(verify_challenge(&q("subscribe", "to", "1"), "tok"), None);
        assert_eq!(verify_challenge(&q("unsubscribe", "tok", "1"), "tok"), None);
        assert_eq!(verify_challenge(&q("subscribe", "", "1"), ""), None);
        assert_eq!(verify_challenge(&q("subscribe", "tok", ""), "tok"), None);
        assert_eq!(
            verify_challenge(&q("subscribe", "tok", "<script>"), "tok"),
            None
        );
        assert_eq!(
            verify_challenge(&q("subscribe", "tok", &"1".repeat(257)), "tok"),
            None
        );
        assert_eq!(verify_challenge(&HashMap::new(), "tok"), None);
    }
}
