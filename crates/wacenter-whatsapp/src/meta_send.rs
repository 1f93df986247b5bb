//! Sending text through the Meta WhatsApp Business Cloud API:
//! `POST <graph>/<phone-number-id>/messages` with a Bearer token.
//!
//! Texts longer than [`META_MAX_TEXT_CHARS`] are refused before sending (a permanent error)
//! rather than split here, so that one call is always one WhatsApp message with one id; a caller
//! that prefers splitting uses [`crate::split_text`] and sends each part.

use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

use crate::send::{
    body_excerpt, check_text, error_chain, read_body, retry_after, scrub, transport_error,
    SendError, SentMessage, DEFAULT_SEND_TIMEOUT,
};
use wacenter_proto::Provider;

/// The Cloud API's limit on a text message body, in characters.
pub const META_MAX_TEXT_CHARS: usize = 4096;

/// Sends through the Graph API. Cheap to clone.
#[derive(Clone)]
pub struct MetaSender {
    graph_url: Url,
    access_token: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for MetaSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaSender")
            .field("graph_url", &self.graph_url.as_str())
            .field("access_token", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MetaSender {
    /// `graph_url` includes the API version (`https://graph.facebook.com/v21.0`). `http` should
    /// be the process's shared client (`wacenter_otomax::client::shared_http_client()`).
    pub fn new(graph_url: Url, access_token: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            graph_url,
            access_token: access_token.into(),
            http,
            timeout: DEFAULT_SEND_TIMEOUT,
        }
    }

    /// How long one send may take in total (default [`DEFAULT_SEND_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn graph_url(&self) -> &Url {
        &self.graph_url
    }

    /// Sends `text` from our number `phone_number_id` to `to` (international digits);
    /// `reply_to` quotes a message by its `wamid`.
    pub async fn send_text(
        &self,
        phone_number_id: &str,
        to: &str,
        text: &str,
        reply_to: Option<&str>,
    ) -> Result<SentMessage, SendError> {
        let phone_number_id = phone_number_id.trim();
        let to = to.trim();
        // Meta's ids are numeric; checking it also keeps the path free of anything surprising.
        if phone_number_id.is_empty() || !phone_number_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SendError::Invalid(
                "the Meta phone_number_id must be digits".into(),
            ));
        }
        if to.is_empty() || to.len() > 20 || !to.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SendError::Invalid(
                "the recipient must be international digits".into(),
            ));
        }
        check_text(text)?;
        let chars = text.chars().count();
        if chars > META_MAX_TEXT_CHARS {
            return Err(SendError::Invalid(format!(
                "the text has {chars} characters; Meta allows {META_MAX_TEXT_CHARS}"
            )));
        }
        let url = self.endpoint(phone_number_id)?;

        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"body": text},
        });
        if let Some(id) = reply_to.map(str::trim).filter(|id| !id.is_empty()) {
            body["context"] = json!({"message_id": id});
        }

        let secrets = [self.access_token.as_str()];
        let mut request = self
            .http
            .post(url)
            .timeout(self.timeout)
            .bearer_auth(&self.access_token)
            .json(&body);
        if let Some(tp) = wacenter_trace::current_traceparent() {
            request = request.header(wacenter_trace::TRACEPARENT, tp);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(Provider::Meta, e, self.timeout, &secrets))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let body = read_body(response).await;

        if (200..300).contains(&status) {
            let body = body.map_err(|e| SendError::BadResponse {
                provider: Provider::Meta,
                status,
                detail: scrub(&error_chain(&e.without_url()), &secrets),
            })?;
            let parsed: Value =
                serde_json::from_slice(&body).map_err(|_| SendError::BadResponse {
                    provider: Provider::Meta,
                    status,
                    detail: format!("not JSON: {}", body_excerpt(&body, &secrets)),
                })?;
            let id = parsed
                .pointer("/messages/0/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if id.is_empty() {
                tracing::warn!(status, "Meta accepted a message without returning its id");
            }
            return Ok(SentMessage {
                provider_message_id: id,
            });
        }

        let bytes = match body {
            Ok(bytes) => bytes,
            Err(_) => {
                return Err(SendError::Rejected {
                    provider: Provider::Meta,
                    status,
                    code: None,
                    message: "(the error body could not be read)".into(),
                    retry_after: wait,
                })
            }
        };
        let error = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let Some(error) = error.filter(Value::is_object) else {
            return Err(SendError::Rejected {
                provider: Provider::Meta,
                status,
                code: None,
                message: body_excerpt(&bytes, &secrets),
                retry_after: wait,
            });
        };
        let code = error.get("code").and_then(as_i64).unwrap_or(0);
        let mut message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_owned();
        if let Some(details) = error.pointer("/error_data/details").and_then(Value::as_str) {
            if !details.is_empty() && !message.contains(details) {
                message = format!("{message} ({details})");
            }
        }
        Err(SendError::Meta {
            status,
            code,
            subcode: error.get("error_subcode").and_then(as_i64),
            message: scrub(&message, &secrets),
            is_transient: error.get("is_transient").and_then(Value::as_bool),
            fbtrace_id: error
                .get("fbtrace_id")
                .and_then(Value::as_str)
                .map(|t| scrub(t, &secrets)),
            retry_after: wait,
        })
    }

    fn endpoint(&self, phone_number_id: &str) -> Result<Url, SendError> {
        let mut url = self.graph_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|_| SendError::Invalid("the Graph URL cannot have a path".into()))?
            .pop_if_empty()
            .extend([phone_number_id, "messages"]);
        Ok(url)
    }
}

/// Meta's codes are numbers, but tolerate them as digit strings.
fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_the_version_path() {
        let http = crate::test_http_client();
        for base in [
            "https://graph.facebook.com/v21.0",
            "https://graph.facebook.com/v21.0/",
        ] {
            let sender = MetaSender::new(Url::parse(base).unwrap(), "EAAtoken", http.clone());
            assert_eq!(
                sender.endpoint("106540352242922").unwrap().as_str(),
                "https://graph.facebook.com/v21.0/106540352242922/messages"
            );
            assert!(!format!("{sender:?}").contains("EAAtoken"));
        }
    }

    #[tokio::test]
    async fn invalid_input_is_refused_before_sending() {
        // Nothing listens on this address (bound, then let go): a request that went out would
        // fail as Connect, not Invalid.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = MetaSender::new(
            Url::parse(&format!("http://127.0.0.1:{port}/v21.0")).unwrap(),
            "token",
            crate::test_http_client(),
        );
        for (id, to, text) in [
            ("", "628123", "hi"),
            ("12/34", "628123", "hi"),
            ("123", "+628123", "hi"),
            ("123", "", "hi"),
            ("123", "628123", "   "),
        ] {
            let err = sender.send_text(id, to, text, None).await.unwrap_err();
            assert!(matches!(err, SendError::Invalid(_)), "{err}");
        }
        let long = "a".repeat(META_MAX_TEXT_CHARS + 1);
        let err = sender
            .send_text("123", "628123", &long, None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not sent: the text has 4097 characters; Meta allows 4096"
        );
        assert_eq!(err.class(), crate::SendErrorClass::Permanent);
        // Exactly at the limit, counted in characters, not bytes: it goes out (and fails to connect).
        let at_limit = "é".repeat(META_MAX_TEXT_CHARS);
        let err = sender
            .send_text("123", "628123", &at_limit, None)
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Connect { .. }), "{err}");
    }
}
