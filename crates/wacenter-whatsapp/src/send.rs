//! Sending text: what a send returns, how its failures are classified, and the pieces both
//! providers' senders ([`crate::GowaSender`], [`crate::MetaSender`]) share.
//!
//! The classification is what the reply service acts on: retry a transient failure, wait out a
//! rate limit, dead-letter a permanent one, and never blindly retry an ambiguous one (the
//! message may already be on the recipient's phone; sending again would say it twice).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use wacenter_proto::Provider;

use crate::{GowaSender, MetaSender};

/// Default time a whole send (connect, request, response) may take.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest `Retry-After` honoured: a provider asking for more is treated as asking for this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Longest error text kept from a provider's answer.
const MAX_DETAIL_CHARS: usize = 300;

/// Most bytes read from a provider's answer: both answer with small JSON documents.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// A message the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The provider's id for it (GOWA's message id, Meta's `wamid…`); "" in the unusual case of a
    /// success answer without one. Record it so the echo of our own message is not forwarded.
    pub provider_message_id: String,
}

/// What to do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorClass {
    /// The provider asked us to slow down: wait `retry_after` (or back off) and retry.
    /// `per_recipient`: only this recipient is limited; other messages may go on.
    RateLimited {
        retry_after: Option<Duration>,
        per_recipient: bool,
    },
    /// Nothing was sent, or the provider failed on its side: retrying is safe.
    Transient,
    /// Retrying the same message cannot succeed (bad recipient, bad credentials, policy).
    Permanent,
    /// The request went out but no answer came back: the message may or may not have been sent.
    Ambiguous,
}

/// A failed send. Messages never contain access tokens or passwords: provider texts are
/// scrubbed of them, and URLs (which could carry credentials) are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Refused before anything was sent: empty text, bad recipient, text too long, …
    #[error("not sent: {0}")]
    Invalid(String),
    /// No connection could be made (refused, DNS, TLS, connect timeout): nothing was sent.
    #[error("could not reach {provider}: {detail}")]
    Connect { provider: Provider, detail: String },
    /// The request was sent but no answer came in time.
    #[error("{provider} did not answer within {timeout:?}; the message may have been sent")]
    Timeout {
        provider: Provider,
        timeout: Duration,
    },
    /// The connection broke after the request was sent.
    #[error("the connection to {provider} broke during the request; the message may have been sent: {detail}")]
    Interrupted { provider: Provider, detail: String },
    /// The provider answered success but the answer could not be read.
    #[error("{provider} answered HTTP {status} with an unreadable body; the message may have been sent: {detail}")]
    BadResponse {
        provider: Provider,
        status: u16,
        detail: String,
    },
    /// The provider refused the message (GOWA, or a Meta answer without an error object).
    #[error("{provider} answered HTTP {status}{}: {message}", fmt_code(.code))]
    Rejected {
        provider: Provider,
        status: u16,
        /// GOWA's error code (`INVALID_JID`, …), when it gave one.
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The Graph API refused the message with an error object.
    #[error("Meta answered HTTP {status} with error {code}{}: {message}", fmt_subcode(.subcode))]
    Meta {
        status: u16,
        code: i64,
        subcode: Option<i64>,
        /// `error.message`, with `error_data.details` appended when it adds something.
        message: String,
        /// `error.is_transient`, when Meta says.
        is_transient: Option<bool>,
        fbtrace_id: Option<String>,
        retry_after: Option<Duration>,
    },
}

fn fmt_code(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn fmt_subcode(subcode: &Option<i64>) -> String {
    subcode.map(|s| format!("/{s}")).unwrap_or_default()
}

/// The one-to-one pacing Meta asks for after error 131056 (about one message per 6 s).
pub const META_PAIR_RATE_WAIT: Duration = Duration::from_secs(6);

impl SendError {
    /// What to do about it; see [`SendErrorClass`].
    pub fn class(&self) -> SendErrorClass {
        match self {
            Self::Invalid(_) => SendErrorClass::Permanent,
            Self::Connect { .. } => SendErrorClass::Transient,
            Self::Timeout { .. } | Self::Interrupted { .. } | Self::BadResponse { .. } => {
                SendErrorClass::Ambiguous
            }
            Self::Rejected {
                status,
                code,
                retry_after,
                ..
            } => match code.as_deref() {
                // WhatsApp refuses to let this account start new chats for a while; other
                // recipients with an open conversation still work.
                Some("WA_REACHOUT_TIMELOCK") => SendErrorClass::RateLimited {
                    retry_after: *retry_after,
                    per_recipient: true,
                },
                // GOWA's own deadline fired while it was working on the send.
                Some("CONTEXT_ERROR") => SendErrorClass::Ambiguous,
                // GOWA's session is not connected or logged in (yet): nothing was sent, and the
                // device reconnects by itself (a wrong basic auth is GOWA's plain 401).
                // `INVALID_WA_CLI` (500): the device's client is not set up yet.
                Some("AUTHENTICATION_ERROR" | "INVALID_WA_CLI") => SendErrorClass::Transient,
                _ => class_by_status(*status, *retry_after),
            },
            Self::Meta {
                status,
                code,
                is_transient,
                retry_after,
                ..
            } => meta_class(*code, *status, *is_transient, *retry_after),
        }
    }

    /// The HTTP status the provider answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::BadResponse { status, .. }
            | Self::Rejected { status, .. }
            | Self::Meta { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn class_by_status(status: u16, retry_after: Option<Duration>) -> SendErrorClass {
    match status {
        429 => SendErrorClass::RateLimited {
            retry_after,
            per_recipient: false,
        },
        // 408: the server gave up waiting for our request, so it did not act on it; 502 and
        // 503: a proxy or the service turned it away before acting on it.
        408 | 502 | 503 => SendErrorClass::Transient,
        // 500, 504 and the rest may come after the message left (GOWA answers 500 when
        // whatsmeow's send fails, 504 when it timed out waiting for WhatsApp's answer).
        500..=599 => SendErrorClass::Ambiguous,
        _ => SendErrorClass::Permanent,
    }
}

/// Graph API error codes, from Meta's Cloud API error reference.
fn meta_class(
    code: i64,
    status: u16,
    is_transient: Option<bool>,
    retry_after: Option<Duration>,
) -> SendErrorClass {
    match code {
        // Throughput limit, API call limits, WABA rate limit, spam rate limit.
        130429 | 4 | 80007 | 131048 => SendErrorClass::RateLimited {
            retry_after,
            per_recipient: false,
        },
        // Too many messages to this one recipient.
        131056 => SendErrorClass::RateLimited {
            retry_after: Some(retry_after.unwrap_or(META_PAIR_RATE_WAIT)),
            per_recipient: true,
        },
        // Unknown / temporary errors, service unavailable, something went wrong on their side.
        1 | 2 | 131000 | 131016 | 133004 => SendErrorClass::Transient,
        // Outside the 24-hour window, bad token, bad parameter, permissions, capability,
        // undeliverable, unsupported type, recipient equals sender, account problems, policy.
        131047
        | 190
        | 100
        | 3
        | 10
        | 200..=299
        | 131008
        | 131009
        | 131021
        | 131026
        | 131031
        | 131042
        | 131045
        | 131049
        | 131051
        | 133010
        | 368
        | 470 => SendErrorClass::Permanent,
        _ if is_transient == Some(true) => SendErrorClass::Transient,
        _ => class_by_status(status, retry_after),
    }
}

/// Any configured sender, for services that pick the provider at start-up.
#[derive(Debug, Clone)]
pub enum Sender {
    Gowa(GowaSender),
    Meta(MetaSender),
}

impl Sender {
    pub fn provider(&self) -> Provider {
        match self {
            Self::Gowa(_) => Provider::Gowa,
            Self::Meta(_) => Provider::Meta,
        }
    }

    /// The longest text one message may carry through this provider, in characters: longer
    /// ones are sent as parts ([`crate::split_text`]).
    pub fn max_text_chars(&self) -> usize {
        match self {
            Self::Gowa(_) => crate::WHATSAPP_MAX_TEXT_CHARS,
            Self::Meta(_) => crate::META_MAX_TEXT_CHARS,
        }
    }

    /// Sends `text` to `to` through `account`: for GOWA the device id (`X-Device-Id`; "" lets
    /// GOWA pick its default device), for Meta the `phone_number_id` (required).
    pub async fn send_text(
        &self,
        account: &str,
        to: &str,
        text: &str,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, SendError> {
        match self {
            Self::Gowa(gowa) => gowa.send_text(to, text, Some(account), reply_to).await,
            Self::Meta(meta) => meta.send_text(account, to, text, reply_to).await,
        }
    }
}

/// Reads `Retry-After`: delay-seconds (integer or decimal) or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = value.parse::<f64>() {
        Duration::try_from_secs_f64(secs).ok()?
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
        Duration::from_secs(u64::try_from(secs).ok()?)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Turns a transport failure into a [`SendError`], by whether the request could have left.
pub(crate) fn transport_error(
    provider: Provider,
    err: reqwest::Error,
    timeout: Duration,
    secrets: &[&str],
) -> SendError {
    // The URL may carry credentials (`http://user:pass@gowa`): keep it out of the text.
    let err = err.without_url();
    let detail = scrub(&error_chain(&err), secrets);
    if err.is_builder() {
        SendError::Invalid(format!("could not build the request: {detail}"))
    } else if err.is_connect() {
        SendError::Connect { provider, detail }
    } else if err.is_timeout() {
        SendError::Timeout { provider, timeout }
    } else {
        SendError::Interrupted { provider, detail }
    }
}

pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of the answer.
pub(crate) async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(body)
}

/// Provider text made safe for logs: secrets replaced, control characters dropped, shortened.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        // Very short secrets would match ordinary words; they are not worth protecting this way.
        if secret.len() >= 4 {
            text = text.replace(secret, "[redacted]");
        }
    }
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_CHARS)
        .collect();
    if text.chars().nth(MAX_DETAIL_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A short, safe description of a non-JSON answer body.
pub(crate) fn body_excerpt(body: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        scrub(text, secrets)
    }
}

/// Checks the text every provider needs: not blank.
pub(crate) fn check_text(text: &str) -> Result<(), SendError> {
    if text.trim().is_empty() {
        return Err(SendError::Invalid("the text is empty".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn rejected(status: u16, code: Option<&str>) -> SendError {
        SendError::Rejected {
            provider: Provider::Gowa,
            status,
            code: code.map(str::to_owned),
            message: "m".into(),
            retry_after: None,
        }
    }

    fn meta(code: i64, status: u16) -> SendError {
        SendError::Meta {
            status,
            code,
            subcode: None,
            message: "m".into(),
            is_transient: None,
            fbtrace_id: None,
            retry_after: None,
        }
    }

    #[test]
    fn classes() {
        use SendErrorClass::*;
        assert_eq!(SendError::Invalid("x".into()).class(), Permanent);
        assert_eq!(
            SendError::Connect {
                provider: Provider::Gowa,
                detail: "refused".into()
            }
            .class(),
            Transient
        );
        assert_eq!(
            SendError::Timeout {
                provider: Provider::Meta,
                timeout: Duration::from_secs(1)
            }
            .class(),
            Ambiguous
        );
        // A 500 or 504 may come after the message left (GOWA answers 500 when whatsmeow's
        // send fails, 504 when it timed out waiting for WhatsApp): not sent again blindly.
        assert_eq!(rejected(500, None).class(), Ambiguous);
        assert_eq!(
            rejected(500, Some("INTERNAL_SERVER_ERROR")).class(),
            Ambiguous
        );
        assert_eq!(rejected(504, Some("GATEWAY_TIMEOUT")).class(), Ambiguous);
        assert_eq!(rejected(599, None).class(), Ambiguous);
        // 502 and 503: a proxy or the service refused before acting on it.
        assert_eq!(rejected(502, None).class(), Transient);
        assert_eq!(
            rejected(503, Some("INTERNAL_SERVER_ERROR")).class(),
            Transient
        );
        // GOWA's session is not connected (yet): it sent nothing, and will reconnect.
        assert_eq!(
            rejected(401, Some("AUTHENTICATION_ERROR")).class(),
            Transient
        );
        assert_eq!(rejected(400, Some("INVALID_JID")).class(), Permanent);
        assert_eq!(rejected(401, None).class(), Permanent);
        assert_eq!(rejected(408, None).class(), Transient);
        assert_eq!(rejected(408, Some("CONTEXT_ERROR")).class(), Ambiguous);
        assert_eq!(
            rejected(429, None).class(),
            RateLimited {
                retry_after: None,
                per_recipient: false
            }
        );
        assert_eq!(
            rejected(429, Some("WA_REACHOUT_TIMELOCK")).class(),
            RateLimited {
                retry_after: None,
                per_recipient: true
            }
        );

        assert_eq!(
            meta(130429, 400).class(),
            RateLimited {
                retry_after: None,
                per_recipient: false
            }
        );
        assert_eq!(
            meta(131056, 400).class(),
            RateLimited {
                retry_after: Some(Duration::from_secs(6)),
                per_recipient: true
            }
        );
        for code in [131047, 190, 100, 131026, 10, 200] {
            assert_eq!(meta(code, 400).class(), Permanent, "{code}");
        }
        for code in [131000, 131016, 2, 1] {
            assert_eq!(meta(code, 500).class(), Transient, "{code}");
        }
        // Unknown codes: Meta's own hint, then the HTTP status.
        assert_eq!(meta(999_999, 400).class(), Permanent);
        assert_eq!(meta(999_999, 503).class(), Transient);
        assert_eq!(
            meta(999_999, 429).class(),
            RateLimited {
                retry_after: None,
                per_recipient: false
            }
        );
        let hinted = SendError::Meta {
            status: 400,
            code: 999_999,
            subcode: None,
            message: "m".into(),
            is_transient: Some(true),
            fbtrace_id: None,
            retry_after: None,
        };
        assert_eq!(hinted.class(), Transient);
    }

    #[test]
    fn messages_read_well() {
        assert_eq!(
            rejected(400, Some("INVALID_JID")).to_string(),
            "gowa answered HTTP 400 INVALID_JID: m"
        );
        assert_eq!(rejected(502, None).to_string(), "gowa answered HTTP 502: m");
        assert_eq!(
            meta(131047, 400).to_string(),
            "Meta answered HTTP 400 with error 131047: m"
        );
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        for (value, want) in [
            ("7", Some(Duration::from_secs(7))),
            (" 2 ", Some(Duration::from_secs(2))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("99999999999", Some(MAX_RETRY_AFTER)),
            ("-1", None),
            ("NaN", None),
            ("soon", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO)),
        ] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            assert_eq!(retry_after(&headers), want, "{value}");
        }
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    #[test]
    fn scrubbing() {
        assert_eq!(
            scrub(
                "Invalid OAuth access token - EAAB1234secret",
                &["EAAB1234secret"]
            ),
            "Invalid OAuth access token - [redacted]"
        );
        assert_eq!(scrub("a\nb\u{0}c", &[]), "a b c");
        assert_eq!(scrub("short pw", &["pw"]), "short pw");
        let long = scrub(&"x".repeat(1000), &[]);
        assert_eq!(long.chars().count(), MAX_DETAIL_CHARS + 1);
        assert_eq!(body_excerpt(b"  ", &[]), "(empty body)");
        assert_eq!(
            body_excerpt(b"\xff Unauthorized", &[]),
            "\u{fffd} Unauthorized"
        );
    }
}
