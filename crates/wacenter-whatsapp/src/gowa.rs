//! GOWA (go-whatsapp-web-multidevice) webhooks: turns a verified body into [`InboundMessage`]s.
//!
//! Two shapes exist in the wild and both are accepted:
//! - v8 and later: `{"event":"message","device_id":"<our JID>","payload":{…}}`; every other
//!   event (`message.ack`, `message.reaction`, `message.revoked`, `group.participants`, …) is not
//!   a chat message and is ignored.
//! - v6/v7 (what the seed's fork sends): one flat object without `event`/`payload`, with
//!   `from` = `"<sender JID>"` or `"<sender JID> in <chat JID>"`, `message: {text, id, …}`,
//!   `pushname`, media objects `{media_path, mime_type, caption}`, `reaction` and `action`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use wacenter_proto::{InboundMessage, PhoneNumber, Provider, PAYLOAD_VERSION};

use crate::phone::{
    is_group_jid, is_lid_jid, is_person_jid, jid_server, jid_user, normalize_phone, PERSON_SERVER,
};
use crate::webhook::{
    excerpt, opt_bool, opt_nonempty, opt_object, opt_string, opt_timestamp, parse_object,
    req_string, wrong_type, Object, ParseError, Parsed,
};

/// Media fields, in the order their type is reported when a message somehow carries several.
const MEDIA_FIELDS: &[&str] = &[
    "image",
    "video",
    "video_note",
    "audio",
    "document",
    "sticker",
];

/// Parses a GOWA webhook body (v6/v7 flat or v8+ event form).
///
/// `received_at` is used as the message time when the payload has none; `default_cc` turns a
/// national `0…` number into international form (see [`normalize_phone`]).
pub fn parse_webhook(
    raw_body: &[u8],
    received_at: DateTime<Utc>,
    default_cc: &str,
) -> Result<Parsed, ParseError> {
    let root = parse_object(raw_body)?;
    let has_event = root.get("event").is_some_and(|v| !v.is_null());
    let has_payload = root.get("payload").is_some_and(|v| !v.is_null());
    if !has_event && !has_payload {
        return parse_v7(&root, received_at, default_cc);
    }

    let event = match root.get("event") {
        Some(Value::String(event)) if !event.is_empty() => event,
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(ParseError::Missing("event".to_owned()))
        }
        Some(other) => return Err(wrong_type("event", "a string", other)),
    };
    if event != "message" {
        return Ok(Parsed::Ignored(format!(
            "event {} is not a chat message",
            excerpt(event)
        )));
    }
    let account = opt_string(&root, "", "device_id")?.unwrap_or_default();
    let payload = opt_object(&root, "", "payload")?
        .ok_or_else(|| ParseError::Missing("payload".to_owned()))?;
    parse_v8_payload(payload, account, received_at, default_cc)
}

fn parse_v8_payload(
    p: &Object,
    account: String,
    received_at: DateTime<Utc>,
    default_cc: &str,
) -> Result<Parsed, ParseError> {
    const P: &str = "payload";
    // Current GOWA sends these as events of their own; older v8 builds put them in `message`.
    if let Some(reason) = not_a_chat_message(p, P)? {
        return Ok(Parsed::Ignored(reason));
    }

    let message_id = req_string(p, P, "id")?;
    let from_me = opt_bool(p, P, "is_from_me")?.unwrap_or(false);
    // `from` is a plain JID in v8; split a v7-style "X in Y" anyway rather than misread it.
    let from = opt_nonempty(p, P, "from")?.map(|f| split_source(&f).0.to_owned());
    let chat = match opt_nonempty(p, P, "chat_id")? {
        Some(chat) => chat,
        None => from
            .clone()
            .ok_or_else(|| ParseError::Missing("payload.chat_id".to_owned()))?,
    };
    if let Some(reason) = not_a_chat(&chat) {
        return Ok(Parsed::Ignored(reason));
    }
    let sender = sender_phone(from.as_deref(), &chat, from_me, default_cc);
    let sender_name = first_nonempty([
        opt_nonempty(p, P, "from_name")?,
        opt_nonempty(p, P, "sender_display_name")?,
        opt_nonempty(p, P, "pushname")?,
    ]);
    let media = media(p, P)?;
    let body = opt_string(p, P, "body")?.unwrap_or_default();
    let text = text_or_caption(body, media.as_ref());
    if text.is_empty() && media.is_none() {
        return Ok(Parsed::Ignored(no_content_reason(p)));
    }

    Ok(Parsed::Messages(vec![InboundMessage {
        version: PAYLOAD_VERSION,
        provider: Provider::Gowa,
        account,
        message_id,
        is_group: is_group_jid(&chat),
        chat,
        sender,
        sender_name,
        timestamp: opt_timestamp(p, P, "timestamp")?.unwrap_or(received_at),
        text,
        from_me,
        has_media: media.is_some(),
        media_type: media.map(|m| m.kind.to_owned()),
        received_at,
    }]))
}

fn parse_v7(
    root: &Object,
    received_at: DateTime<Utc>,
    default_cc: &str,
) -> Result<Parsed, ParseError> {
    if let Some(reason) = not_a_chat_message(root, "")? {
        return Ok(Parsed::Ignored(reason));
    }
    if let Some(reaction) = opt_object(root, "", "reaction")? {
        if opt_nonempty(reaction, "reaction", "message")?.is_some() {
            return Ok(Parsed::Ignored(
                "a reaction is not a chat message".to_owned(),
            ));
        }
    }

    let message = opt_object(root, "", "message")?;
    let message_id = match message {
        Some(m) => req_string(m, "message", "id")?,
        None => return Err(ParseError::Missing("message.id".to_owned())),
    };
    let body = match message {
        Some(m) => opt_string(m, "message", "text")?.unwrap_or_default(),
        None => String::new(),
    };

    // `from` is whatsmeow's SourceString(): the chat JID alone when the sender is the chat (a
    // person writing from their phone), otherwise "<sender> in <chat>": a group, a person's
    // linked device (`628…:5@… in 628…@…`), or a message we sent ourselves.
    let source = opt_nonempty(root, "", "from")?;
    let (from, source_chat) = match source.as_deref().map(split_source) {
        Some((sender, chat)) => (
            Some(sender.to_owned()),
            Some(chat.unwrap_or(sender).to_owned()),
        ),
        None => (None, None),
    };
    // `chat_id` is only the user part; the server comes from `from` (v8 sends the same chat_id
    // with its server, so both versions name the chat alike).
    let chat = match (opt_nonempty(root, "", "chat_id")?, source_chat.as_deref()) {
        (Some(id), _) if id.contains('@') => id,
        (Some(id), Some(jid)) => format!("{id}@{}", jid_server(jid).unwrap_or(PERSON_SERVER)),
        (Some(id), None) => format!("{id}@{PERSON_SERVER}"),
        (None, Some(jid)) => jid.to_owned(),
        (None, None) => return Err(ParseError::Missing("chat_id".to_owned())),
    };
    if let Some(reason) = not_a_chat(&chat) {
        return Ok(Parsed::Ignored(reason));
    }
    let is_group = is_group_jid(&chat);
    // v7 has no from-me flag: outside groups, "<X> in <Y>" with two different numbers can only be
    // our own message. An explicit flag, which some forks add, wins.
    let from_me = match opt_bool(root, "", "is_from_me")? {
        Some(flag) => flag,
        None => !is_group && source.as_deref().is_some_and(is_own_source),
    };
    let sender = match from.as_deref() {
        Some(jid) => sender_phone(Some(jid), &chat, from_me, default_cc),
        // `sender_id` is the sender's user part; without `from` we cannot tell a LID from a phone,
        // so only a person chat's own number is trusted.
        None if !from_me && is_person_jid(&chat) => normalize_phone(&chat, default_cc),
        None => None,
    };
    let sender_name = opt_nonempty(root, "", "pushname")?.unwrap_or_default();
    let media = media(root, "")?;
    let text = text_or_caption(body, media.as_ref());
    if text.is_empty() && media.is_none() {
        return Ok(Parsed::Ignored(no_content_reason(root)));
    }

    Ok(Parsed::Messages(vec![InboundMessage {
        version: PAYLOAD_VERSION,
        provider: Provider::Gowa,
        // v7 does not say which of our numbers received it.
        account: String::new(),
        message_id,
        chat,
        sender,
        sender_name,
        timestamp: opt_timestamp(root, "", "timestamp")?.unwrap_or(received_at),
        text,
        is_group,
        from_me,
        has_media: media.is_some(),
        media_type: media.map(|m| m.kind.to_owned()),
        received_at,
    }]))
}

/// Revokes, edits and reactions carried inside a message payload (v7 `action`, older v8).
fn not_a_chat_message(obj: &Object, path: &str) -> Result<Option<String>, ParseError> {
    if let Some(action) = opt_nonempty(obj, path, "action")? {
        return Ok(Some(format!(
            "action {} is not a chat message",
            excerpt(&action)
        )));
    }
    if obj.contains_key("revoked_message_id") {
        return Ok(Some("a revoked message is not a chat message".to_owned()));
    }
    if matches!(obj.get("reaction"), Some(Value::String(s)) if !s.is_empty())
        || obj.contains_key("reacted_message_id")
    {
        return Ok(Some("a reaction is not a chat message".to_owned()));
    }
    Ok(None)
}

/// Status updates (`status@broadcast`), broadcast lists and channels arrive as messages too, but
/// nobody there is talking to us: forwarding them would make OtomaX answer a status post.
fn not_a_chat(chat: &str) -> Option<String> {
    match jid_server(chat) {
        Some("broadcast") => Some("a status update or broadcast is not a chat message".to_owned()),
        Some("newsletter") => Some("a channel post is not a chat message".to_owned()),
        _ => None,
    }
}

/// `"<sender> in <chat>"` between two different phone numbers outside a group: only we can be
/// the sender of a message in someone else's one-to-one chat.
fn is_own_source(source: &str) -> bool {
    match split_source(source) {
        (sender, Some(chat)) => {
            is_person_jid(sender) && is_person_jid(chat) && jid_user(sender) != jid_user(chat)
        }
        _ => false,
    }
}

/// Splits whatsmeow's SourceString `"<sender> in <chat>"` into its parts.
fn split_source(source: &str) -> (&str, Option<&str>) {
    match source.split_once(" in ") {
        Some((sender, chat)) => (sender.trim(), Some(chat.trim())),
        None => (source.trim(), None),
    }
}

/// The sender's phone number, or `None` when WhatsApp hid it behind a LID. In a one-to-one chat
/// someone else started, the chat JID is the sender's own, so it stands in for a LID `from`.
fn sender_phone(
    from: Option<&str>,
    chat: &str,
    from_me: bool,
    default_cc: &str,
) -> Option<PhoneNumber> {
    let candidate = match from {
        Some(jid) if !is_lid_jid(jid) => Some(jid),
        _ if !from_me && is_person_jid(chat) => Some(chat),
        _ => None,
    };
    candidate.and_then(|jid| normalize_phone(jid, default_cc))
}

struct Media {
    kind: &'static str,
    caption: Option<String>,
}

/// The first media field present. Each is a path string (auto-download on) or an object with
/// `path`/`url`/`media_path`/`caption`; the type is known from the key either way.
fn media(obj: &Object, path: &str) -> Result<Option<Media>, ParseError> {
    for &kind in MEDIA_FIELDS {
        match obj.get(kind) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(_)) => {
                return Ok(Some(Media {
                    kind,
                    caption: None,
                }))
            }
            Some(Value::Object(inner)) => {
                let field = crate::webhook::join(path, kind);
                let caption = opt_nonempty(inner, &field, "caption")?;
                return Ok(Some(Media { kind, caption }));
            }
            Some(other) => {
                return Err(wrong_type(
                    &crate::webhook::join(path, kind),
                    "a path or an object",
                    other,
                ))
            }
        }
    }
    Ok(None)
}

fn text_or_caption(body: String, media: Option<&Media>) -> String {
    if !body.trim().is_empty() {
        return body;
    }
    media.and_then(|m| m.caption.clone()).unwrap_or_default()
}

fn first_nonempty<const N: usize>(candidates: [Option<String>; N]) -> String {
    candidates.into_iter().flatten().next().unwrap_or_default()
}

/// Locations, contacts, polls, … carry neither text nor media OtomaX could use.
fn no_content_reason(obj: &Object) -> String {
    const OTHER: &[&str] = &[
        "location",
        "live_location",
        "contact",
        "contacts_array",
        "list",
        "order",
        "poll",
    ];
    match OTHER
        .iter()
        .find(|k| obj.get(**k).is_some_and(|v| !v.is_null()))
    {
        Some(kind) => format!("a {kind} message has no text"),
        None => "the message has neither text nor media".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V8_TEXT: &[u8] = include_bytes!("../tests/fixtures/gowa-v8-text.json");
    const V8_GROUP: &[u8] = include_bytes!("../tests/fixtures/gowa-v8-group.json");
    const V8_ACK: &[u8] = include_bytes!("../tests/fixtures/gowa-v8-ack.json");
    const V7_TEXT: &[u8] = include_bytes!("../tests/fixtures/gowa-v7-text.json");

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2023-10-15T10:30:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn one(body: &[u8]) -> InboundMessage {
        match parse_webhook(body, now(), "62") {
            Ok(Parsed::Messages(mut messages)) if messages.len() == 1 => messages.remove(0),
            other => panic!("expected one message, got {other:?}"),
        }
    }

    fn one_json(value: Value) -> InboundMessage {
        one(value.to_string().as_bytes())
    }

    fn ignored(value: Value) -> String {
        match parse_webhook(value.to_string().as_bytes(), now(), "62") {
            Ok(Parsed::Ignored(reason)) => reason,
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    fn error(value: Value) -> String {
        match parse_webhook(value.to_string().as_bytes(), now(), "62") {
            Err(err) => err.to_string(),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn v8(payload: Value) -> Value {
        json!({"event": "message", "device_id": "628987654321@s.whatsapp.net", "payload": payload})
    }

    #[test]
    fn v8_text_fixture() {
        let m = one(V8_TEXT);
        assert_eq!(
            m,
            InboundMessage {
                version: PAYLOAD_VERSION,
                provider: Provider::Gowa,
                account: "628987654321@s.whatsapp.net".into(),
                message_id: "3EB0C127D7BACC83D6A1".into(),
                chat: "628987654321@s.whatsapp.net".into(),
                sender: PhoneNumber::from_digits("628123456789").ok(),
                sender_name: "John Doe".into(),
                timestamp: at("2023-10-15T10:30:00Z"),
                text: "Hello, how are you?".into(),
                is_group: false,
                from_me: false,
                has_media: false,
                media_type: None,
                received_at: now(),
            }
        );
        assert_eq!(
            m.dedupe_id().as_str(),
            "gowa:628987654321@s.whatsapp.net:3EB0C127D7BACC83D6A1"
        );
    }

    #[test]
    fn v8_group_fixture() {
        let m = one(V8_GROUP);
        assert!(m.is_group);
        assert_eq!(m.chat, "120363025246125486@g.us");
        assert_eq!(m.sender.as_deref(), Some("628123456789"));
        assert_eq!(m.text, "pagi semua");
        assert_eq!(m.message_id, "3EB0D1A2B3C4D5E6F701");
        assert_eq!(m.timestamp, at("2023-10-15T10:31:00Z"));
    }

    #[test]
    fn v8_ack_fixture_is_ignored() {
        assert_eq!(
            parse_webhook(V8_ACK, now(), "62").unwrap(),
            Parsed::Ignored("event message.ack is not a chat message".into())
        );
    }

    #[test]
    fn v7_text_fixture() {
        let m = one(V7_TEXT);
        assert_eq!(
            m,
            InboundMessage {
                version: PAYLOAD_VERSION,
                provider: Provider::Gowa,
                account: String::new(),
                message_id: "3EB0C127D7BACC83D6A1".into(),
                // chat_id's user part with the server of `from`: the same chat v8 names.
                chat: "628987654321@s.whatsapp.net".into(),
                sender: PhoneNumber::from_digits("628123456789").ok(),
                sender_name: "John Doe".into(),
                timestamp: at("2023-10-15T10:30:00Z"),
                text: "Hello, how are you?".into(),
                is_group: false,
                from_me: false,
                has_media: false,
                media_type: None,
                received_at: now(),
            }
        );
    }

    #[test]
    fn other_v8_events_are_ignored() {
        for event in [
            "message.reaction",
            "message.revoked",
            "message.edited",
            "message.deleted",
            "group.participants",
            "call.offer",
            "chat_presence",
        ] {
            let reason = ignored(json!({"event": event, "device_id": "x", "payload": {"id": "1"}}));
            assert_eq!(reason, format!("event {event} is not a chat message"));
        }
        // No payload needed to ignore an event.
        ignored(json!({"event": "call.offer"}));
    }

    #[test]
    fn v8_media_as_path_or_object() {
        let m = one_json(v8(json!({
            "id": "A1", "chat_id": "628123456789@s.whatsapp.net", "from": "628123456789@s.whatsapp.net",
            "timestamp": "2023-10-15T10:30:00Z", "image": "statics/media/1.jpg"
        })));
        assert!(m.has_media);
        assert_eq!(m.media_type.as_deref(), Some("image"));
        assert_eq!(m.text, "");

        let m = one_json(v8(json!({
            "id": "A2", "chat_id": "628123456789@s.whatsapp.net", "from": "628123456789@s.whatsapp.net",
            "video": {"url": "https://mmg.whatsapp.net/x", "caption": "lihat ini"}
        })));
        assert_eq!(m.media_type.as_deref(), Some("video"));
        assert_eq!(m.text, "lihat ini");
        // No timestamp: the time we received it.
        assert_eq!(m.timestamp, now());

        // GOWA also copies the caption into `body`; body wins when both are there.
        let m = one_json(v8(json!({
            "id": "A3", "chat_id": "628123456789@s.whatsapp.net", "from": "628123456789@s.whatsapp.net",
            "body": "the body", "document": {"path": "a.pdf", "caption": "the caption"}
        })));
        assert_eq!(m.text, "the body");
        assert_eq!(m.media_type.as_deref(), Some("document"));

        for kind in ["audio", "sticker", "video_note"] {
            let m = one_json(v8(json!({
                "id": "A4", "chat_id": "628123456789@s.whatsapp.net", kind: {"url": "u"}
            })));
            assert_eq!(m.media_type.as_deref(), Some(kind));
        }
    }

    #[test]
    fn v8_lid_sender_falls_back_to_a_person_chat() {
        let m = one_json(v8(json!({
            "id": "L1", "chat_id": "628123456789@s.whatsapp.net", "from": "12345678901234@lid",
            "from_lid": "12345678901234@lid", "body": "hi"
        })));
        assert_eq!(m.sender.as_deref(), Some("628123456789"));

        // In a group the chat is no help.
        let m = one_json(v8(json!({
            "id": "L2", "chat_id": "120363025246125486@g.us", "from": "12345678901234@lid", "body": "hi"
        })));
        assert_eq!(m.sender, None);
        assert!(m.is_group);

        // Nor when both are LIDs.
        let m = one_json(v8(json!({
            "id": "L3", "chat_id": "999@lid", "from": "12345678901234@lid", "body": "hi"
        })));
        assert_eq!(m.sender, None);
        assert_eq!(m.chat, "999@lid");
        assert!(!m.is_group);
    }

    #[test]
    fn v8_names_flags_and_lenient_types() {
        let m = one_json(v8(json!({
            "id": 12345, "chat_id": "628123456789@s.whatsapp.net", "from": "628987654321@s.whatsapp.net",
            "sender_display_name": "Toko Pulsa", "is_from_me": "true", "body": "ok",
            "timestamp": 1697365800
        })));
        assert_eq!(m.message_id, "12345");
        assert_eq!(m.sender_name, "Toko Pulsa");
        assert!(m.from_me);
        assert_eq!(m.sender.as_deref(), Some("628987654321"));
        assert_eq!(m.timestamp, at("2023-10-15T10:30:00Z"));

        // from_name (the push name) is preferred over the display name.
        let m = one_json(v8(json!({
            "id": "N", "chat_id": "628123456789@s.whatsapp.net", "from_name": "Budi",
            "sender_display_name": "Pak Budi", "body": "x"
        })));
        assert_eq!(m.sender_name, "Budi");
        // No `from`: the person chat names the sender.
        assert_eq!(m.sender.as_deref(), Some("628123456789"));

        // No chat_id: the sender's JID is the chat.
        let m = one_json(v8(
            json!({"id": "C", "from": "628123456789@s.whatsapp.net", "body": "x"}),
        ));
        assert_eq!(m.chat, "628123456789@s.whatsapp.net");

        // No device_id: the account is unknown.
        let m = one_json(
            json!({"event": "message", "payload": {"id": "D", "chat_id": "1234567@s.whatsapp.net", "body": "x"}}),
        );
        assert_eq!(m.account, "");
    }

    #[test]
    fn v8_reactions_revokes_and_empty_messages_are_ignored() {
        assert!(ignored(v8(
            json!({"id": "R", "reaction": "👍", "reacted_message_id": "X"})
        ))
        .contains("reaction"));
        assert!(ignored(v8(json!({"id": "R", "revoked_message_id": "X"}))).contains("revoked"));
        assert_eq!(
            ignored(v8(
                json!({"id": "E", "chat_id": "628123456789@s.whatsapp.net", "location": {"degreesLatitude": 1}})
            )),
            "a location message has no text"
        );
        assert_eq!(
            ignored(v8(
                json!({"id": "E", "chat_id": "628123456789@s.whatsapp.net", "body": "  "})
            )),
            "the message has neither text nor media"
        );
    }

    #[test]
    fn status_updates_and_channels_are_ignored() {
        assert_eq!(
            ignored(v8(
                json!({"id": "S", "chat_id": "status@broadcast", "from": "628123456789@s.whatsapp.net", "body": "my status"})
            )),
            "a status update or broadcast is not a chat message"
        );
        assert_eq!(
            ignored(v8(
                json!({"id": "N", "chat_id": "1203630@newsletter", "body": "news"})
            )),
            "a channel post is not a chat message"
        );
        assert_eq!(
            ignored(json!({
                "chat_id": "status", "from": "628123456789@s.whatsapp.net in status@broadcast",
                "message": {"text": "my status", "id": "S7"}
            })),
            "a status update or broadcast is not a chat message"
        );
    }

    #[test]
    fn v8_errors_name_the_field() {
        assert_eq!(
            error(v8(json!({"chat_id": "x@g.us", "body": "hi"}))),
            "missing field `payload.id`"
        );
        assert_eq!(
            error(v8(json!({"id": "", "body": "hi"}))),
            "missing field `payload.id`"
        );
        assert_eq!(
            error(json!({"event": "message"})),
            "missing field `payload`"
        );
        assert_eq!(
            error(json!({"payload": {"id": "1"}})),
            "missing field `event`"
        );
        assert_eq!(
            error(json!({"event": 5, "payload": {}})),
            "field `event` must be a string, found a number"
        );
        assert_eq!(
            error(json!({"event": "message", "payload": []})),
            "field `payload` must be an object, found an array"
        );
        assert_eq!(
            error(v8(
                json!({"id": "1", "chat_id": "x@s.whatsapp.net", "body": ["x"]})
            )),
            "field `payload.body` must be a string, found an array"
        );
        assert_eq!(
            error(v8(
                json!({"id": "1", "chat_id": "x@s.whatsapp.net", "body": "x", "is_from_me": "perhaps"})
            )),
            "field `payload.is_from_me` must be a boolean, found a string"
        );
        assert_eq!(
            error(v8(
                json!({"id": "1", "chat_id": "x@s.whatsapp.net", "image": 7})
            )),
            "field `payload.image` must be a path or an object, found a number"
        );
        assert_eq!(
            error(v8(
                json!({"id": "1", "chat_id": "x@s.whatsapp.net", "body": "x", "timestamp": "soon"})
            )),
            "field `payload.timestamp` is not a valid timestamp: expected RFC 3339 or Unix seconds"
        );
        assert_eq!(
            error(v8(json!({"id": "1", "body": "x"}))),
            "missing field `payload.chat_id`"
        );
        assert!(error(json!([1, 2])).contains("must be a JSON object"));
    }

    #[test]
    fn v7_group_and_own_messages() {
        let group = one_json(json!({
            "chat_id": "120363025246125486", "sender_id": "628123456789",
            "from": "628123456789@s.whatsapp.net in 120363025246125486@g.us",
            "message": {"text": "pagi", "id": "G1", "replied_id": "", "quoted_message": ""},
            "pushname": "John", "timestamp": "2023-10-15T10:31:00Z"
        }));
        assert!(group.is_group);
        assert!(!group.from_me);
        assert_eq!(group.chat, "120363025246125486@g.us");
        assert_eq!(group.sender.as_deref(), Some("628123456789"));

        let own = one_json(json!({
            "chat_id": "628123456789", "sender_id": "628987654321",
            "from": "628987654321:12@s.whatsapp.net in 628123456789@s.whatsapp.net",
            "message": {"text": "sudah masuk", "id": "O1"}, "timestamp": "2023-10-15T10:31:00Z"
        }));
        assert!(own.from_me);
        assert!(!own.is_group);
        assert_eq!(own.chat, "628123456789@s.whatsapp.net");
        assert_eq!(own.sender.as_deref(), Some("628987654321"));

        // A person writing from a linked device is not us.
        let linked = one_json(json!({
            "chat_id": "628123456789", "from": "628123456789:5@s.whatsapp.net in 628123456789@s.whatsapp.net",
            "message": {"text": "x", "id": "D"}
        }));
        assert!(!linked.from_me);
        assert_eq!(linked.sender.as_deref(), Some("628123456789"));

        // A LID sender: no phone number to give.
        let lid = one_json(json!({
            "chat_id": "555", "sender_id": "555", "from": "555@lid", "message": {"text": "x", "id": "L"}
        }));
        assert_eq!(lid.chat, "555@lid");
        assert_eq!(lid.sender, None);
        assert!(!lid.from_me);

        // An explicit flag wins over the guess.
        let flagged = one_json(json!({
            "chat_id": "628123456789", "from": "628123456789@s.whatsapp.net", "is_from_me": true,
            "message": {"text": "x", "id": "F"}
        }));
        assert!(flagged.from_me);
    }

    #[test]
    fn v7_media_reactions_and_actions() {
        let m = one_json(json!({
            "chat_id": "628123456789", "from": "628123456789@s.whatsapp.net",
            "message": {"text": "", "id": "M1"},
            "image": {"media_path": "statics/media/x.jpg", "mime_type": "image/jpeg", "caption": "bukti tf"}
        }));
        assert!(m.has_media);
        assert_eq!(m.media_type.as_deref(), Some("image"));
        assert_eq!(m.text, "bukti tf");

        // v6 sent the media path as a plain string.
        let m = one_json(json!({
            "from": "628123456789@s.whatsapp.net", "message": {"text": "", "id": "M2"},
            "audio": "statics/media/x.ogg"
        }));
        assert_eq!(m.media_type.as_deref(), Some("audio"));

        assert_eq!(
            ignored(json!({
                "from": "628123456789@s.whatsapp.net", "message": {"text": "", "id": "R1"},
                "reaction": {"message": "👍", "id": "M1"}
            })),
            "a reaction is not a chat message"
        );
        for action in ["message_revoked", "message_edited"] {
            assert_eq!(
                ignored(json!({
                    "from": "628123456789@s.whatsapp.net", "message": {"text": "", "id": "X"},
                    "action": action, "revoked_message_id": "M1"
                })),
                format!("action {action} is not a chat message")
            );
        }
        // An empty reaction object (v7 always sent one) does not make a message a reaction.
        let m = one_json(json!({
            "from": "628123456789@s.whatsapp.net", "message": {"text": "hi", "id": "M3"},
            "reaction": {"message": "", "id": ""}
        }));
        assert_eq!(m.text, "hi");
    }

    #[test]
    fn v7_errors() {
        assert_eq!(error(json!({})), "missing field `message.id`");
        assert_eq!(
            error(json!({"message": {"text": "x"}})),
            "missing field `message.id`"
        );
        assert_eq!(
            error(json!({"message": "hello"})),
            "field `message` must be an object, found a string"
        );
        assert_eq!(
            error(json!({"message": {"id": "1", "text": "x"}})),
            "missing field `chat_id`"
        );
        // chat_id alone is enough.
        let m = one_json(
            json!({"chat_id": "628123456789", "sender_id": "628123456789", "message": {"id": "1", "text": "x"}}),
        );
        assert_eq!(m.chat, "628123456789@s.whatsapp.net");
        assert_eq!(m.sender.as_deref(), Some("628123456789"));
    }

    #[test]
    fn hostile_input_never_panics() {
        let bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"{".to_vec(),
            b"\x00\x01".to_vec(),
            b"123".to_vec(),
            b"\"message\"".to_vec(),
            br#"{"event":null,"payload":null}"#.to_vec(),
            br#"{"event":"message","payload":{"id":1e999}}"#.to_vec(),
            br#"{"event":"message","payload":{"id":"x","chat_id":"@","from":" in ","body":"x","timestamp":-1}}"#.to_vec(),
            br#"{"event":"message","payload":{"id":"x","chat_id":"a@g.us","body":"x","timestamp":99999999999999999999999}}"#.to_vec(),
            br#"{"from":" in ","message":{"id":"x","text":"y"}}"#.to_vec(),
            br#"{"from":"a in b in c","message":{"id":"x","text":"y"},"timestamp":1.5e300}"#.to_vec(),
            br#"{"message":{"id":{"a":1}}}"#.to_vec(),
            br#"{"message":{"id":"1","text":"x"},"from":"628123456789@s.whatsapp.net","image":[1]}"#.to_vec(),
            format!(r#"{{"message":{{"id":"1","text":"x"}},"from":"{}"}}"#, "9".repeat(100_000)).into_bytes(),
            "[".repeat(10_000).into_bytes(),
        ];
        for body in bodies {
            let _ = parse_webhook(&body, now(), "62");
        }
    }
}
