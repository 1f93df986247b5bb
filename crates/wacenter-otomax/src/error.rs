//! Everything that can go wrong talking to OtomaX, told apart so callers can decide what to do
//! (retry, dead-letter, answer 502) and operators can read what happened.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OtomaxError {
    /// The TCP/TLS connection could not be made: nothing reached OtomaX.
    #[error("cannot connect to OtomaX at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// No complete answer within the attempt's time limit.
    #[error("OtomaX did not answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP status other than 2xx (and not an authentication rejection).
    #[error("OtomaX answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// The token was refused: wrong App ID / App Key / Dev Key (or the clock is off).
    #[error("OtomaX rejected the credentials ({desc}); check OTOMAX_APP_ID, OTOMAX_APP_KEY and OTOMAX_DEV_KEY")]
    Auth { desc: String },
    /// `{"ok":false,"desc":…}`: OtomaX understood the request and said no.
    #[error("OtomaX refused the request: {desc}")]
    Rejected { desc: String },
    /// The answer was not the JSON envelope OtomaX uses.
    #[error("OtomaX answered something that is not its JSON envelope: {0}")]
    Decode(String),
    /// `_exp` passed before the request could be (re)sent; it was not sent after that.
    #[error("the message expired before it could be delivered to OtomaX{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Expired { last: Option<Box<OtomaxError>> },
    /// The request could not be built (bad body, bad URL).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl OtomaxError {
    /// Transient failures that the retry policy may retry: connection errors, timeouts, HTTP 429
    /// and 5xx. Authentication failures, `ok:false` and other 4xx are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// A short stable label for metrics and dead-letter reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "http_status",
            Self::Auth { .. } => "auth",
            Self::Rejected { .. } => "rejected",
            Self::Decode(_) => "decode",
            Self::Expired { .. } => "expired",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// Heuristic for `ok:false` answers that mean "your token is wrong": the real server answers
/// those with HTTP 200 and a text, so the text is all there is to go on.
pub(crate) fn desc_means_auth_failure(desc: &str) -> bool {
    let d = desc.to_ascii_lowercase();
    [
        "token",
        "auth",
        "signature",
        "unauthori",
        "credential",
        "app id",
        "appid",
        "app key",
    ]
    .iter()
    .any(|w| d.contains(w))
}

/// At most `max` characters of a body, on a char boundary, for error messages.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let status = |s| OtomaxError::Status {
            status: s,
            body: String::new(),
        };
        assert!(status(429).is_transient());
        assert!(status(500).is_transient());
        assert!(status(503).is_transient());
        assert!(!status(400).is_transient());
        assert!(!status(404).is_transient());
        assert!(OtomaxError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(OtomaxError::Connect {
            url: "u".into(),
            reason: "r".into()
        }
        .is_transient());
        assert!(!OtomaxError::Auth { desc: "x".into() }.is_transient());
        assert!(!OtomaxError::Rejected { desc: "x".into() }.is_transient());
        assert!(!OtomaxError::Expired { last: None }.is_transient());
    }

    #[test]
    fn auth_heuristic_and_excerpt() {
        assert!(desc_means_auth_failure("Invalid token"));
        assert!(desc_means_auth_failure("Unauthorized"));
        assert!(!desc_means_auth_failure("Reseller tidak ditemukan"));
        assert_eq!(excerpt("ééééé".as_bytes(), 3), "ééé…");
        assert_eq!(excerpt(b"  short ", 10), "short");
    }

    #[test]
    fn expired_mentions_last_error() {
        let e = OtomaxError::Expired {
            last: Some(Box::new(OtomaxError::Timeout(Duration::from_secs(2)))),
        };
        assert!(e.to_string().contains("did not answer"), "{e}");
    }
}
