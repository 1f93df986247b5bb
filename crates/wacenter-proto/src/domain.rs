//! Values that can only be built valid: a phone number, the ids messages are known by, the `_exp`
//! window. Each serializes exactly as the plain string or number it replaces, so the wire format
//! (and `proto/schemas/`) does not change; reading a payload checks them once, at the edge.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Provider;

/// A person's phone number in international form, digits only (`628123456789`): what OtomaX
/// knows resellers by. 6 to 15 digits (E.164 allows 15; fewer than 6 is a short code), never
/// starting with `0` (that would be a national number without its country code).
///
/// Built from what people and providers write by `wacenter_whatsapp::normalize_phone`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Shortest and longest number accepted.
pub const PHONE_MIN_DIGITS: usize = 6;
pub const PHONE_MAX_DIGITS: usize = 15;

impl PhoneNumber {
    /// Digits in international form, or why they are not a phone number.
    pub fn from_digits(digits: impl Into<String>) -> Result<Self, String> {
        let digits = digits.into();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{digits:?} is not a phone number (digits only, e.g. 628123456789)"
            ));
        }
        if digits.starts_with('0') {
            return Err(format!(
                "{digits:?} starts with 0: give the number in international form (628…)"
            ));
        }
        if !(PHONE_MIN_DIGITS..=PHONE_MAX_DIGITS).contains(&digits.len()) {
            return Err(format!(
                "{digits:?} has {} digits; a phone number has {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS}",
                digits.len()
            ));
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read access as text (`&phone` where a `&str` is wanted); it cannot be changed in place.
impl std::ops::Deref for PhoneNumber {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> String {
        phone.0
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for PhoneNumber {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PhoneNumber {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_digits(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `Option<PhoneNumber>` on the wire as a string that is empty when the number is unknown (a
/// provider that shows only a privacy id): `#[serde(with = "phone_or_empty")]`.
pub mod phone_or_empty {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<PhoneNumber>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref().map_or("", PhoneNumber::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PhoneNumber>, D::Error> {
        let raw = String::deserialize(d)?;
        if raw.is_empty() {
            return Ok(None);
        }
        PhoneNumber::from_digits(raw)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// An inbound message's id across providers and accounts: `<provider>:<account>:<message id>`.
/// `Nats-Msg-Id` of its publish and the key of its claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboundId(String);

impl InboundId {
    pub fn new(provider: Provider, account: &str, message_id: &str) -> Self {
        Self(format!("{provider}:{account}:{message_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InboundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An outbound message's id: `Nats-Msg-Id` of its publish and the key of its claim, so each
/// message is queued and sent once however often it is produced. Built only by the constructors
/// below, one per reason a message goes out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboundId(String);

impl OutboundId {
    /// OtomaX's immediate answer to an inbound message: `autoreply:<inbound id>`.
    pub fn auto_reply(to: &InboundId) -> Self {
        Self(format!("autoreply:{to}"))
    }

    /// The notice that an inbound message expired unprocessed: `expired:<inbound id>`.
    pub fn expired_notice(to: &InboundId) -> Self {
        Self(format!("expired:{to}"))
    }

    /// The notice that OtomaX never processed an inbound message for the reason `class`
    /// (`auth_failed`, `rejected`): `<class>:<inbound id>`. A message ends once, so it gets at
    /// most one notice.
    pub fn failure_notice(class: &str, to: &InboundId) -> Self {
        Self(format!("{class}:{to}"))
    }

    /// An OtomaX outbox row with its `kode`: `outbox:<kode>` (OtomaX posting it again sends once).
    pub fn outbox(kode: i64) -> Self {
        Self(format!("outbox:{kode}"))
    }

    /// An outbox row of the OtomaX server `server` (routing table name): `outbox:<kode>` for
    /// `default`, `outbox:<server>:<kode>` for another (each server numbers its rows itself).
    pub fn outbox_of(server: &str, kode: i64) -> Self {
        match server {
            "default" => Self::outbox(kode),
            server => Self(format!("outbox:{server}:{kode}")),
        }
    }

    /// An outbox row without a `kode`: `outbox:sha256:<content hash>:<unix ms>`. Only the content
    /// tells a repeated callback apart (the callback service makes its `Nats-Msg-Id` of the hash
    /// alone), and content repeats for real, so the id carries the time it was received.
    pub fn outbox_without_kode(content_hash: &str, received_at: DateTime<Utc>) -> Self {
        Self(format!(
            "outbox:sha256:{content_hash}:{}",
            received_at.timestamp_millis()
        ))
    }

    /// The id of part `next` (2, 3, …) of a long text whose first part has this id (or, for
    /// `next` > 2, whose part `next - 1` has this id): `<first part's id>#<next>`.
    pub fn part(&self, next: u32) -> Self {
        let first = match self.0.rsplit_once('#') {
            Some((first, n)) if n.parse::<u32>().is_ok_and(|n| n + 1 == next) => first,
            _ => &self.0,
        };
        Self(format!("{first}#{next}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutboundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for OutboundId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for OutboundId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// How long OtomaX may still act on a WhatsApp message: `_exp` = the message's time + this.
/// Between 1 s and [`crate::names::MAX_EXP`] (inbound claims are kept an hour; a command older
/// than that should not be carried out anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpWindow(Duration);

impl ExpWindow {
    pub fn from_secs(seconds: u64) -> Result<Self, String> {
        let max = crate::names::MAX_EXP.as_secs();
        match seconds {
            0 => Err("must be at least 1".into()),
            s if s > max => Err(format!(
                "must be {max} or less: inbound claims are kept an hour, and a command older than that should not be carried out anyway"
            )),
            s => Ok(Self(Duration::from_secs(s))),
        }
    }

    /// The `_exp` of a message WhatsApp says was sent at `sent_at`.
    pub fn deadline(self, sent_at: DateTime<Utc>) -> DateTime<Utc> {
        sent_at + chrono::Duration::seconds(self.0.as_secs() as i64)
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl Default for ExpWindow {
    /// The contract's default, 30 seconds.
    fn default() -> Self {
        Self(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_international_digits_of_a_sane_length() {
        assert_eq!(
            PhoneNumber::from_digits("628123456789").unwrap(),
            "628123456789"
        );
        for bad in [
            "",
            "0812345678",
            "+628123",
            "62 812",
            "12345",
            "1234567890123456",
        ] {
            assert!(PhoneNumber::from_digits(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phone_or_empty_keeps_the_wire_format() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct M {
            #[serde(with = "phone_or_empty")]
            sender: Option<PhoneNumber>,
        }
        let none = M { sender: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"sender":""}"#);
        let some: M = serde_json::from_str(r#"{"sender":"628123456789"}"#).unwrap();
        assert_eq!(some.sender.unwrap(), "628123456789");
        assert_eq!(serde_json::from_str::<M>(r#"{"sender":""}"#).unwrap(), none);
        assert!(serde_json::from_str::<M>(r#"{"sender":"0812"}"#).is_err());
    }

    #[test]
    fn ids_are_spelled_as_before() {
        let inbound = InboundId::new(Provider::Gowa, "628111@s.whatsapp.net", "ABC");
        assert_eq!(inbound.as_str(), "gowa:628111@s.whatsapp.net:ABC");
        assert_eq!(
            OutboundId::auto_reply(&inbound),
            "autoreply:gowa:628111@s.whatsapp.net:ABC"
        );
        assert_eq!(
            OutboundId::expired_notice(&inbound),
            "expired:gowa:628111@s.whatsapp.net:ABC"
        );
        assert_eq!(OutboundId::outbox(42), "outbox:42");
        assert_eq!(
            serde_json::to_string(&OutboundId::outbox(42)).unwrap(),
            "\"outbox:42\""
        );
    }

    #[test]
    fn the_exp_window_is_bounded() {
        assert!(ExpWindow::from_secs(0).is_err());
        assert!(ExpWindow::from_secs(crate::names::MAX_EXP.as_secs() + 1).is_err());
        let w = ExpWindow::from_secs(30).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(w.deadline(t).to_rfc3339(), "2026-01-01T00:00:30+00:00");
        assert_eq!(ExpWindow::default(), w);
    }
}
