//! Everything that can go wrong talking to OtomaX, told apart so callers can decide what to do
//! (retry, dead-letter, answer 502) and operators can read what happened.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OtomaxError {
    /// The TCP/TLS connection could not be made: nothing reached OtomaX.
    #[error("cannot connect to OtomaX at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The request was written but no complete answer came within the attempt's time limit:
    /// OtomaX may have acted on it.
    #[error("OtomaX did not answer within {0:?}; it may have received the request")]
    Timeout(Duration),
    /// The connection broke after the request was written, or the answer could not be read:
    /// OtomaX may have acted on it.
    #[error("the connection to OtomaX at {url} broke after the request was sent; it may have received it: {reason}")]
    Interrupted { url: String, reason: String },
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
    /// An attempt may have reached OtomaX (timeout, lost connection, HTTP 500/504, an answer
    /// that is not OtomaX's), and it was not sent again: whether OtomaX has it is unknown.
    /// `last` is the last attempt's own failure, which may be a harmless one.
    #[error("OtomaX may or may not have received the request (not sent again; check OtomaX before repeating it): {last}")]
    Uncertain { last: Box<OtomaxError> },
}

/// What a failed attempt says about whether OtomaX acted on the request (spec §3, step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Provably not taken effect: connection refused or failed before the request was written,
    /// DNS, TLS, HTTP 429, 502, 503. Safe to send again.
    NotSent,
    /// OtomaX may have acted on it: sending again could insert the same purchase twice.
    Ambiguous,
    /// OtomaX answered and will answer the same again (auth, `ok:false`, other 4xx), or the
    /// request was never built: retrying cannot help.
    Final,
}

impl OtomaxError {
    /// Whether OtomaX may have acted on the failed attempt; see [`FailureClass`].
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Connect { .. } => FailureClass::NotSent,
            Self::Status {
                status: 429 | 502 | 503,
                ..
            } => FailureClass::NotSent,
            Self::Status { status, .. } if *status >= 500 => FailureClass::Ambiguous,
            Self::Timeout(_)
            | Self::Interrupted { .. }
            | Self::Decode(_)
            | Self::Uncertain { .. } => FailureClass::Ambiguous,
            Self::Expired { last } => match last {
                Some(last) if last.class() == FailureClass::Ambiguous => FailureClass::Ambiguous,
                _ => FailureClass::NotSent,
            },
            Self::Status { .. }
            | Self::Auth { .. }
            | Self::Rejected { .. }
            | Self::InvalidRequest(_) => FailureClass::Final,
        }
    }

    /// Failures worth another attempt if the policy allows: the not-sent ones always, the
    /// ambiguous ones only with `OTOMAX_RETRY_AMBIGUOUS`.
    pub fn is_transient(&self) -> bool {
        self.class() != FailureClass::Final
    }

    /// A short stable label for metrics and dead-letter reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout(_) => "timeout",
            Self::Interrupted { .. } => "interrupted",
            Self::Status { .. } => "http_status",
            Self::Auth { .. } => "auth",
            Self::Rejected { .. } => "rejected",
            Self::Decode(_) => "decode",
            Self::Expired { .. } => "expired",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Uncertain { .. } => "uncertain",
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
    fn failures_are_not_sent_ambiguous_or_final() {
        use FailureClass::*;
        let status = |s| OtomaxError::Status {
            status: s,
            body: String::new(),
        };
        for s in [429, 502, 503] {
            assert_eq!(status(s).class(), NotSent, "HTTP {s}");
        }
        for s in [500, 504, 501, 599] {
            assert_eq!(status(s).class(), Ambiguous, "HTTP {s}");
        }
        for s in [400, 404, 409, 422] {
            assert_eq!(status(s).class(), Final, "HTTP {s}");
        }
        let connect = OtomaxError::Connect {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(connect.class(), NotSent);
        assert_eq!(
            OtomaxError::Timeout(Duration::from_secs(1)).class(),
            Ambiguous
        );
        let interrupted = OtomaxError::Interrupted {
            url: "u".into(),
            reason: "reset".into(),
        };
        assert_eq!(interrupted.class(), Ambiguous);
        assert_eq!(OtomaxError::Decode("<html>".into()).class(), Ambiguous);
        assert_eq!(OtomaxError::Auth { desc: "x".into() }.class(), Final);
        assert_eq!(OtomaxError::Rejected { desc: "x".into() }.class(), Final);
        // Expired is as ambiguous as the attempt before it.
        assert_eq!(OtomaxError::Expired { last: None }.class(), NotSent);
        let after = |last: OtomaxError| OtomaxError::Expired {
            last: Some(Box::new(last)),
        };
        assert_eq!(after(connect).class(), NotSent);
        assert_eq!(
            after(OtomaxError::Timeout(Duration::from_secs(1))).class(),
            Ambiguous
        );
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
