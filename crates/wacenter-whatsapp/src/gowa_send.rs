//! Sending text through GOWA: `POST <GOWA>/send/message` with
//! `{"phone","message","reply_message_id"?}`, Basic auth when GOWA runs with `APP_BASIC_AUTH`,
//! and `X-Device-Id` to pick the linked device that received the original (v8+).

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;
use wacenter_proto::Provider;

use crate::send::{
    body_excerpt, check_text, read_body, retry_after, scrub, transport_error, SendError,
    SentMessage, DEFAULT_SEND_TIMEOUT,
};

/// Header GOWA v8+ reads to choose among several linked devices.
pub const DEVICE_ID_HEADER: &str = "X-Device-Id";

/// Sends through one GOWA instance. Cheap to clone (the HTTP client is a handle to a pool).
/// A GOWA device's connection, as `GET /app/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceStatus {
    pub connected: bool,
    pub logged_in: bool,
    /// The WhatsApp account logged in on it ("" before login).
    pub jid: String,
}

#[derive(Clone)]
pub struct GowaSender {
    base_url: Url,
    basic_auth: Option<(String, String)>,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for GowaSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GowaSender")
            .field("base_url", &self.base_url.as_str())
            .field(
                "basic_auth_user",
                &self.basic_auth.as_ref().map(|(user, _)| user),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GowaSender {
    /// `base_url` is GOWA's address (`http://127.0.0.1:3000`, or with a path prefix behind a
    /// proxy). Credentials written into the URL (`http://user:pass@host`) are taken out of it
    /// and used as Basic auth unless `basic_auth` is given, so they never show up in logs.
    /// `http` should be the process's shared client (`wacenter_otomax::client::shared_http_client()`).
    pub fn new(
        mut base_url: Url,
        basic_auth: Option<(String, String)>,
        http: reqwest::Client,
    ) -> Self {
        let from_url = (!base_url.username().is_empty()).then(|| {
            (
                url_decode(base_url.username()),
                url_decode(base_url.password().unwrap_or_default()),
            )
        });
        // Both setters only fail for URLs that cannot have credentials at all.
        let _ = base_url.set_username("");
        let _ = base_url.set_password(None);
        Self {
            base_url,
            basic_auth: basic_auth.or(from_url),
            http,
            timeout: DEFAULT_SEND_TIMEOUT,
        }
    }

    /// How long one send may take in total (default [`DEFAULT_SEND_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// GOWA's address, without credentials.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Sends `text` to `to`: international digits (`628…`), or a full JID (a group,
    /// `…@g.us`). `device_id` picks the device (`X-Device-Id`; `None`/"" = GOWA's default);
    /// `reply_to` quotes a message by its id.
    pub async fn send_text(
        &self,
        to: &str,
        text: &str,
        device_id: Option<&str>,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, SendError> {
        let to = to.trim();
        check_recipient(to)?;
        check_text(text)?;
        let url = self.endpoint()?;

        let mut body = json!({"phone": to, "message": text});
        if let Some(id) = reply_to.map(str::trim).filter(|id| !id.is_empty()) {
            body["reply_message_id"] = Value::String(id.to_owned());
        }
        let mut request = self.http.post(url).timeout(self.timeout).json(&body);
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(device) = device_id.map(str::trim).filter(|d| !d.is_empty()) {
            let value = reqwest::header::HeaderValue::from_str(device).map_err(|_| {
                SendError::Invalid("the device id is not a valid header value".into())
            })?;
            request = request.header(DEVICE_ID_HEADER, value);
        }
        if let Some(tp) = wacenter_trace::current_traceparent() {
            request = request.header(wacenter_trace::TRACEPARENT, tp);
        }

        let secrets = self.secrets();
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(Provider::Gowa, e, self.timeout, &secrets))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let body = read_body(response).await;

        if (200..300).contains(&status) {
            let body = body.map_err(|e| SendError::BadResponse {
                provider: Provider::Gowa,
                status,
                detail: scrub(&crate::send::error_chain(&e.without_url()), &secrets),
            })?;
            let parsed: Value =
                serde_json::from_slice(&body).map_err(|_| SendError::BadResponse {
                    provider: Provider::Gowa,
                    status,
                    detail: format!("not JSON: {}", body_excerpt(&body, &secrets)),
                })?;
            let id = parsed
                .get("results")
                .and_then(|r| r.get("message_id"))
                .and_then(scalar_text)
                .unwrap_or_default();
            if id.is_empty() {
                tracing::warn!(status, "GOWA accepted a message without returning its id");
            }
            return Ok(SentMessage {
                provider_message_id: id,
            });
        }

        // An error: GOWA explains with {"code","message"}; proxies and the auth layer may not.
        let (code, message) = match &body {
            Ok(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(obj)) => (
                    obj.get("code")
                        .and_then(scalar_text)
                        .map(|c| scrub(&c, &secrets)),
                    obj.get("message")
                        .and_then(scalar_text)
                        .map(|m| scrub(&m, &secrets))
                        .unwrap_or_else(|| body_excerpt(bytes, &secrets)),
                ),
                _ => (None, body_excerpt(bytes, &secrets)),
            },
            Err(_) => (None, "(the error body could not be read)".to_owned()),
        };
        Err(SendError::Rejected {
            provider: Provider::Gowa,
            status,
            code: code.filter(|c| !c.is_empty()),
            message,
            retry_after: wait,
        })
    }

    /// Whether GOWA's device `device_id` (`X-Device-Id`; "" = GOWA's only device) is connected
    /// to WhatsApp and logged in (`GET /app/status`). For the operator's console: a number
    /// whose phone unlinked it receives and sends nothing until someone scans its QR again.
    pub async fn device_status(&self, device_id: &str) -> Result<DeviceStatus, SendError> {
        let mut url = self.endpoint()?;
        url.path_segments_mut()
            .map_err(|_| SendError::Invalid("the GOWA URL cannot have a path".into()))?
            .pop()
            .pop()
            .extend(["app", "status"]);
        let mut request = self.http.get(url).timeout(Duration::from_secs(5));
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        if !device_id.trim().is_empty() {
            let value = reqwest::header::HeaderValue::from_str(device_id.trim()).map_err(|_| {
                SendError::Invalid("the device id is not a valid header value".into())
            })?;
            request = request.header(DEVICE_ID_HEADER, value);
        }
        let secrets = self.secrets();
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(Provider::Gowa, e, Duration::from_secs(5), &secrets))?;
        let status = response.status().as_u16();
        let body = read_body(response).await.unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            return Err(SendError::Rejected {
                provider: Provider::Gowa,
                status,
                code: parsed
                    .get("code")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                message: body_excerpt(&body, &secrets),
                retry_after: None,
            });
        }
        let results = parsed.get("results").cloned().unwrap_or(Value::Null);
        let flag = |k: &str| results.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(DeviceStatus {
            connected: flag("is_connected"),
            logged_in: flag("is_logged_in"),
            jid: results
                .get("jid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    fn endpoint(&self) -> Result<Url, SendError> {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|_| SendError::Invalid("the GOWA URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["send", "message"]);
        Ok(url)
    }

    fn secrets(&self) -> Vec<&str> {
        self.basic_auth
            .as_ref()
            .map(|(_, password)| vec![password.as_str()])
            .unwrap_or_default()
    }
}

/// Reads a `GOWA_BASIC_AUTH`-style setting: `user:password`, or GOWA's own `APP_BASIC_AUTH` list
/// `user1:pass1,user2:pass2` (the first pair is used). `None` for an empty or malformed value.
pub fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    let first = value.split(',').next()?.trim();
    let (user, password) = first.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

/// Digits, or a JID of digits and the few symbols JIDs use. Anything else is refused before it
/// reaches GOWA (which would otherwise guess).
fn check_recipient(to: &str) -> Result<(), SendError> {
    let ok = !to.is_empty()
        && to.len() <= 128
        && to
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b':' | b'-' | b'_'));
    let digits_only = to.bytes().all(|b| b.is_ascii_digit());
    if !ok || (!digits_only && !to.contains('@')) {
        return Err(SendError::Invalid(
            "the recipient must be international digits or a WhatsApp JID".into(),
        ));
    }
    Ok(())
}

/// A string, or a number written out (GOWA's error `code` is either).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Percent-decoding for the user and password `Url` hands back still encoded.
fn url_decode(text: &str) -> String {
    fn hex_digit(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_settings() {
        assert_eq!(
            parse_basic_auth("admin:s3cret"),
            Some(("admin".into(), "s3cret".into()))
        );
        assert_eq!(parse_basic_auth("a:b,c:d"), Some(("a".into(), "b".into())));
        assert_eq!(parse_basic_auth("a:b:c"), Some(("a".into(), "b:c".into())));
        assert_eq!(parse_basic_auth(""), None);
        assert_eq!(parse_basic_auth("nopassword"), None);
        assert_eq!(parse_basic_auth(":x"), None);
    }

    #[test]
    fn recipients() {
        for ok in [
            "628123456789",
            "120363025246125486@g.us",
            "628123@s.whatsapp.net",
        ] {
            assert!(check_recipient(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+628123",
            "0812 345",
            "abc",
            "628123\n",
            "a/b@g.us",
            &"1".repeat(200),
        ] {
            assert!(check_recipient(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_in_the_url_move_to_basic_auth() {
        let http = crate::test_http_client();
        let sender = GowaSender::new(
            Url::parse("http://ad%40min:p%3Ass@gowa:3000/x/").unwrap(),
            None,
            http,
        );
        assert_eq!(sender.base_url().as_str(), "http://gowa:3000/x/");
        assert_eq!(sender.basic_auth, Some(("ad@min".into(), "p:ss".into())));
        assert_eq!(
            sender.endpoint().unwrap().as_str(),
            "http://gowa:3000/x/send/message"
        );
        let debug = format!("{sender:?}");
        assert!(
            !debug.contains("p:ss") && !debug.contains("p%3Ass"),
            "{debug}"
        );
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("a%20b"), "a b");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("%4"), "%4");
        assert_eq!(url_decode("%é%"), "%é%");
        assert_eq!(url_decode("%C3%A9"), "é");
    }
}
