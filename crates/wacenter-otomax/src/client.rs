//! The OtomaX HTTP client: signs, sends, decodes, retries.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, warn};
use url::Url;
use wacenter_config::{OtomaxConfig, Secret};

use crate::error::{desc_means_auth_failure, excerpt};
use crate::retry::{RetryDecision, RetryPolicy};
use crate::token::Signer;
use crate::types::*;
use crate::{FailureClass, OtomaxError};

/// Installs ring as the process-wide rustls provider (reqwest is built without one so that the
/// slow-to-build aws-lc never enters the tree). Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The one pooled HTTP client of this process (HTTPS through rustls). Everything that talks HTTP
/// to a peer (OtomaX, GOWA, Meta) shares it so connections are reused.
pub fn shared_http_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_tls_provider();
            reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .user_agent(concat!("wacenter/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("the HTTP client configuration is static and valid")
        })
        .clone()
}

/// Everything the client needs; built from a service's [`OtomaxConfig`].
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's name in the routing table: the `otomax` label of this client's metrics.
    pub server: String,
    pub base_url: Url,
    pub app_id: String,
    pub app_key: Secret,
    pub dev_key: Secret,
    pub policy: RetryPolicy,
    /// Requests per second this process may send (0 = unlimited).
    pub rate_limit: u32,
}

impl ClientConfig {
    /// Credentials, retries (`OTOMAX_MAX_RETRIES`, `OTOMAX_TIMEOUT_SECONDS`,
    /// `OTOMAX_RETRY_AMBIGUOUS`) and `OTOMAX_RATE_LIMIT` of one OtomaX server.
    pub fn new(otomax: &OtomaxConfig) -> Self {
        Self::for_server(wacenter_config::DEFAULT_SERVER, otomax)
    }

    /// [`ClientConfig::new`] for the server `name` of the routing table.
    pub fn for_server(name: &str, otomax: &OtomaxConfig) -> Self {
        Self {
            server: name.to_string(),
            base_url: otomax.api_url.clone(),
            app_id: otomax.app_id.clone(),
            app_key: otomax.app_key.clone(),
            dev_key: otomax.dev_key.clone(),
            policy: RetryPolicy {
                max_retries: otomax.max_retries,
                attempt_timeout: otomax.attempt_timeout,
                retry_ambiguous: otomax.retry_ambiguous,
                ..RetryPolicy::default()
            },
            rate_limit: otomax.rate_limit,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("app_id", &self.app_id)
            .field("policy", &self.policy)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// A request ready to go: the exact bytes and the URL carrying their token.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub endpoint: String,
    pub url: Url,
    pub token: String,
    pub body: Bytes,
}

/// A successful answer: the decoded `result` and the whole envelope as OtomaX sent it.
#[derive(Debug, Clone)]
pub struct Response<T> {
    pub result: T,
    pub raw: Value,
    pub elapsed: Duration,
    pub attempts: u32,
}

/// When the last call succeeded / failed; read by `/otomax/health`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallHistory {
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

#[derive(Clone)]
pub struct OtomaxClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The `otomax` label of the metrics.
    server: String,
    http: reqwest::Client,
    base: String,
    /// `base` with any password hidden: the only form that goes into errors and logs.
    base_shown: String,
    signer: Signer,
    policy: RetryPolicy,
    limiter: Option<RateLimiter>,
    history: Mutex<CallHistory>,
}

impl std::fmt::Debug for OtomaxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtomaxClient")
            .field("base", &self.inner.base_shown)
            .finish_non_exhaustive()
    }
}

impl OtomaxClient {
    pub fn new(config: ClientConfig) -> Self {
        Self::with_http(config, shared_http_client())
    }

    pub fn with_http(config: ClientConfig, http: reqwest::Client) -> Self {
        let base = config.base_url.as_str().trim_end_matches('/').to_string();
        let mut shown = config.base_url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("redacted"));
        }
        let base_shown = shown.as_str().trim_end_matches('/').to_string();
        Self {
            inner: Arc::new(Inner {
                server: config.server.clone(),
                http,
                base,
                base_shown,
                signer: Signer::new(
                    &config.app_id,
                    config.app_key.expose(),
                    config.dev_key.expose(),
                ),
                policy: config.policy,
                limiter: (config.rate_limit > 0).then(|| RateLimiter::new(config.rate_limit)),
                history: Mutex::new(CallHistory::default()),
            }),
        }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.inner.policy
    }

    pub fn history(&self) -> CallHistory {
        self.inner.history.lock().expect("history lock").clone()
    }

    /// `<base>/<Endpoint>` with exactly one `/` between them.
    pub fn endpoint_url(&self, endpoint: &str) -> Result<Url, OtomaxError> {
        let endpoint = endpoint.trim_matches('/');
        if endpoint.is_empty()
            || !endpoint
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(OtomaxError::InvalidRequest(format!(
                "endpoint name {endpoint:?} must be letters and digits, e.g. InsertInbox"
            )));
        }
        Url::parse(&format!("{}/{}", self.inner.base, endpoint))
            .map_err(|e| OtomaxError::InvalidRequest(format!("bad URL for {endpoint}: {e}")))
    }

    /// Signs exactly `body` for `endpoint`. The body must be JSON; it is sent as is, byte for byte.
    pub fn sign(
        &self,
        endpoint: &str,
        body: impl Into<Bytes>,
    ) -> Result<SignedRequest, OtomaxError> {
        let body = body.into();
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| OtomaxError::InvalidRequest(format!("the body is not JSON: {e}")))?;
        let token = self.inner.signer.token(&body);
        let mut url = self.endpoint_url(endpoint)?;
        url.query_pairs_mut().append_pair("token", &token);
        Ok(SignedRequest {
            endpoint: endpoint.to_string(),
            url,
            token,
            body,
        })
    }

    /// One attempt, no retry, after waiting for the rate limiter. `Ok` carries the whole
    /// envelope (`{"ok":true,…}`).
    pub async fn send_once(
        &self,
        req: &SignedRequest,
        timeout: Duration,
    ) -> Result<Value, OtomaxError> {
        if let Some(limiter) = &self.inner.limiter {
            limiter.acquire_before(None).await;
        }
        self.attempt(req, timeout).await
    }

    /// One attempt, the rate limiter already passed; counted and remembered for health.
    async fn attempt(&self, req: &SignedRequest, timeout: Duration) -> Result<Value, OtomaxError> {
        let started = Instant::now();
        let outcome = self.send_inner(req, timeout).await;
        let elapsed = started.elapsed();
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        let server = self.inner.server.clone();
        metrics::counter!("wacenter_otomax_requests_total", "endpoint" => req.endpoint.clone(), "outcome" => label, "otomax" => server.clone())
            .increment(1);
        metrics::histogram!("wacenter_otomax_request_duration_seconds", "endpoint" => req.endpoint.clone(), "otomax" => server)
            .record(elapsed.as_secs_f64());
        let mut history = self.inner.history.lock().expect("history lock");
        match &outcome {
            Ok(_) => history.last_success_at = Some(Utc::now()),
            // OtomaX answering "no" is a healthy OtomaX; only transport/protocol trouble counts.
            Err(OtomaxError::Rejected { .. }) => history.last_success_at = Some(Utc::now()),
            Err(e) => {
                history.last_error_at = Some(Utc::now());
                history.last_error = Some(e.to_string());
            }
        }
        outcome
    }

    async fn send_inner(
        &self,
        req: &SignedRequest,
        timeout: Duration,
    ) -> Result<Value, OtomaxError> {
        let mut request = self
            .inner
            .http
            .post(req.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .body(req.body.clone());
        if let Some(tp) = wacenter_trace::current_traceparent() {
            request = request.header(wacenter_trace::TRACEPARENT, tp);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(e, timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, timeout))?;
        decode_envelope(status.as_u16(), &body)
    }

    /// Tells apart a failure before the request was written (nothing reached OtomaX) from one
    /// after it (OtomaX may have acted on it). hyper already re-sends by itself only a request
    /// that a pooled connection closed before any of it was written.
    fn transport_error(&self, e: reqwest::Error, timeout: Duration) -> OtomaxError {
        if e.is_connect() {
            OtomaxError::Connect {
                url: self.inner.base_shown.clone(),
                reason: error_chain(e),
            }
        } else if e.is_timeout() {
            OtomaxError::Timeout(timeout)
        } else {
            OtomaxError::Interrupted {
                url: self.inner.base_shown.clone(),
                reason: error_chain(e),
            }
        }
    }

    /// Signs and sends `body` to `endpoint` under the retry policy. With a `deadline` (`_exp`),
    /// no attempt is ever sent after it, not even one that waited for the rate limiter, and
    /// each attempt's timeout ends at it. Once any attempt may have reached OtomaX, a failure
    /// is [`OtomaxError::Uncertain`], never a plain "expired" or "failed": the caller must not
    /// treat the request as not having happened.
    pub async fn call_raw(
        &self,
        endpoint: &str,
        body: impl Into<Bytes>,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Response<Value>, OtomaxError> {
        let req = self.sign(endpoint, body)?;
        let policy = self.inner.policy;
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut last: Option<OtomaxError> = None;
        let mut ambiguous = false;
        let failed = |err: OtomaxError, ambiguous: bool| {
            if ambiguous && !matches!(err, OtomaxError::Uncertain { .. }) {
                OtomaxError::Uncertain {
                    last: Box::new(err),
                }
            } else {
                err
            }
        };
        loop {
            if let Some(limiter) = &self.inner.limiter {
                if !limiter.acquire_before(deadline).await {
                    debug!(
                        endpoint,
                        "the rate limiter has no slot before _exp; not sent"
                    );
                    let expired = OtomaxError::Expired {
                        last: last.map(Box::new),
                    };
                    return Err(failed(expired, ambiguous));
                }
            }
            // After the rate limiter's wait: the time left is what it is now.
            let Some(timeout) = policy.attempt_timeout(Utc::now(), deadline) else {
                let expired = OtomaxError::Expired {
                    last: last.map(Box::new),
                };
                return Err(failed(expired, ambiguous));
            };
            debug!(endpoint, attempt, ?timeout, "calling OtomaX");
            match self.attempt(&req, timeout).await {
                Ok(raw) => {
                    let result = raw.get("result").cloned().unwrap_or(Value::Null);
                    return Ok(Response {
                        result,
                        raw,
                        elapsed: started.elapsed(),
                        attempts: attempt + 1,
                    });
                }
                Err(err) => {
                    let class = err.class();
                    ambiguous |= class == FailureClass::Ambiguous;
                    match policy.after_failure(attempt, class, Utc::now(), deadline) {
                        RetryDecision::RetryAfter(wait) => {
                            warn!(endpoint, attempt, error = %err, ?wait, "OtomaX call failed; retrying");
                            last = Some(err);
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        RetryDecision::GiveUp => return Err(failed(err, ambiguous)),
                        RetryDecision::Expired => {
                            let expired = OtomaxError::Expired {
                                last: Some(Box::new(err)),
                            };
                            return Err(failed(expired, ambiguous));
                        }
                    }
                }
            }
        }
    }

    /// Typed call: serializes `request`, decodes `result` as `T`.
    pub async fn call<Req: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        request: &Req,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Response<T>, OtomaxError> {
        let body =
            serde_json::to_vec(request).map_err(|e| OtomaxError::InvalidRequest(e.to_string()))?;
        let r = self.call_raw(endpoint, body, deadline).await?;
        let result = serde_json::from_value(normalize_result(&r.result))
            .map_err(|e| OtomaxError::Decode(format!("{endpoint} result: {e}")))?;
        Ok(Response {
            result,
            raw: r.raw,
            elapsed: r.elapsed,
            attempts: r.attempts,
        })
    }

    pub async fn test(&self, phone: &str) -> Result<Response<Value>, OtomaxError> {
        self.call(
            "Test",
            &TestRequest {
                phone: phone.into(),
            },
            None,
        )
        .await
    }

    /// InsertInbox; never sent after the request's own `_exp`.
    pub async fn insert_inbox(
        &self,
        req: &InsertInboxRequest,
    ) -> Result<Response<InsertInboxResult>, OtomaxError> {
        let deadline = DateTime::parse_from_rfc3339(&req.exp)
            .map_err(|e| {
                OtomaxError::InvalidRequest(format!("_exp {:?} is not RFC3339: {e}", req.exp))
            })?
            .with_timezone(&Utc);
        self.call("InsertInbox", req, Some(deadline)).await
    }

    pub async fn get_rs(&self, kode: &str) -> Result<Response<Reseller>, OtomaxError> {
        self.call("GetRs", &ResellerRequest { kode: kode.into() }, None)
            .await
    }

    pub async fn get_saldo_rs(&self, kode: &str) -> Result<Response<Balance>, OtomaxError> {
        self.call("GetSaldoRs", &ResellerRequest { kode: kode.into() }, None)
            .await
    }

    pub async fn get_trx(&self, trxid: i64) -> Result<Response<Transaction>, OtomaxError> {
        self.call("GetTrx", &TrxRequest { trxid }, None).await
    }

    pub async fn set_outbox_callback(&self, url: &str) -> Result<Response<Value>, OtomaxError> {
        self.call("SetOutboxCallback", &CallbackUrl { url: url.into() }, None)
            .await
    }

    /// GetOutboxCallback is a POST with `{}` on the real server.
    pub async fn get_outbox_callback(&self) -> Result<Response<Value>, OtomaxError> {
        self.call("GetOutboxCallback", &serde_json::json!({}), None)
            .await
    }

    pub async fn update_status_outbox(
        &self,
        kode: i64,
        status: i64,
    ) -> Result<Response<Value>, OtomaxError> {
        self.call(
            "UpdateStatusOutbox",
            &UpdateStatusOutboxRequest { kode, status },
            None,
        )
        .await
    }
}

/// Decodes OtomaX's envelope, telling apart each way it can fail.
pub fn decode_envelope(status: u16, body: &[u8]) -> Result<Value, OtomaxError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let desc = parsed
        .as_ref()
        .and_then(|v| v.get("desc").or_else(|| v.get("message")))
        .map(crate::lenient::value_as_string)
        .filter(|d| !d.is_empty());
    if status == 401 || status == 403 {
        return Err(OtomaxError::Auth {
            desc: desc.unwrap_or_else(|| format!("HTTP {status}")),
        });
    }
    if !(200..300).contains(&status) {
        return Err(OtomaxError::Status {
            status,
            body: excerpt(body, 200),
        });
    }
    let Some(value) = parsed else {
        return Err(OtomaxError::Decode(format!(
            "body is not JSON: {:?}",
            excerpt(body, 120)
        )));
    };
    match value.get("ok") {
        Some(Value::Bool(true)) => Ok(value),
        Some(Value::Bool(false)) => {
            let desc = desc.unwrap_or_else(|| "no reason given".into());
            if desc_means_auth_failure(&desc) {
                Err(OtomaxError::Auth { desc })
            } else {
                Err(OtomaxError::Rejected { desc })
            }
        }
        _ => Err(OtomaxError::Decode(format!(
            "no boolean \"ok\" in {:?}",
            excerpt(body, 120)
        ))),
    }
}

/// `result` may be absent or null on calls that return nothing; decode that as an empty object.
fn normalize_result(v: &Value) -> Value {
    match v {
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

/// A reqwest error with its causes, without the URL (it carries the token).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    reason
}

/// Spaces requests evenly at `rate` per second (OTOMAX_RATE_LIMIT).
struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(rate: u32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.max(1),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this request's slot. With a `deadline`, a slot at or after it is not taken
    /// (so a backlog of expiring messages does not hold up the live ones) and `false` says the
    /// request cannot leave in time.
    async fn acquire_before(&self, deadline: Option<DateTime<Utc>>) -> bool {
        let slot = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            if let Some(deadline) = deadline {
                let left = (deadline - Utc::now()).to_std().unwrap_or_default();
                if slot >= now + left {
                    return false;
                }
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(base: &str) -> OtomaxClient {
        OtomaxClient::new(ClientConfig {
            server: "default".into(),
            base_url: Url::parse(base).unwrap(),
            app_id: "OtomaX.Addon".into(),
            app_key: "demoKey".into(),
            dev_key: "YAR.OtomaX.OpenApi.App".into(),
            policy: RetryPolicy::default(),
            rate_limit: 0,
        })
    }

    #[test]
    fn url_join_has_exactly_one_slash() {
        for base in ["http://h:5000", "http://h:5000/", "http://h:5000//"] {
            assert_eq!(
                client(base).endpoint_url("GetRs").unwrap().as_str(),
                "http://h:5000/GetRs"
            );
        }
        assert_eq!(
            client("http://h/api/")
                .endpoint_url("InsertInbox")
                .unwrap()
                .as_str(),
            "http://h/api/InsertInbox"
        );
        assert!(client("http://h/").endpoint_url("../x").is_err());
    }

    #[test]
    fn signed_url_carries_the_token_of_the_exact_bytes() {
        let r = client("http://127.0.0.1:5000/")
            .sign("GetRs", r#"{"kode":"yusuf"}"#)
            .unwrap();
        assert_eq!(
            r.url.as_str(),
            "http://127.0.0.1:5000/GetRs?token=eyJpZCI6Ik90b21hWC5BZGRvbiJ9.aC2oX9iN94WqXGEbxdd_ilAPiqqXZlzElLqQBIH8QGI"
        );
        assert!(client("http://h/").sign("GetRs", "not json").is_err());
    }

    #[test]
    fn envelope_decoding_tells_failures_apart() {
        assert!(decode_envelope(200, br#"{"ok":true,"result":{}}"#).is_ok());
        assert!(
            matches!(decode_envelope(200, br#"{"ok":false,"desc":"Reseller tidak ada"}"#), Err(OtomaxError::Rejected { desc }) if desc == "Reseller tidak ada")
        );
        assert!(matches!(
            decode_envelope(200, br#"{"ok":false,"desc":"Invalid token"}"#),
            Err(OtomaxError::Auth { .. })
        ));
        assert!(matches!(
            decode_envelope(401, b"nope"),
            Err(OtomaxError::Auth { .. })
        ));
        assert!(matches!(
            decode_envelope(503, b"busy"),
            Err(OtomaxError::Status { status: 503, .. })
        ));
        assert!(matches!(
            decode_envelope(200, b"<html>"),
            Err(OtomaxError::Decode(_))
        ));
        assert!(matches!(
            decode_envelope(200, br#"{"result":1}"#),
            Err(OtomaxError::Decode(_))
        ));
        let _ = json!({});
    }
}
