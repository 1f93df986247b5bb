//! What both simulators share: the inspection list (what arrived, oldest first, with its time),
//! serving their routers, and [`SimClient`] for their inspection API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{"received_at": "<RFC3339 ms>", "body": <JSON as received>, …extra}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    #[serde(with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    pub body: Value,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `?since=<n>`: items from index n on.
#[derive(Debug, Default, Deserialize)]
pub struct Since {
    #[serde(default)]
    pub since: usize,
}

pub fn page<T: Clone>(items: &[T], since: usize) -> Vec<T> {
    items
        .get(since.min(items.len())..)
        .unwrap_or_default()
        .to_vec()
}

pub mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Serves a simulator's `router` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Serves `router` on loopback `port` (0: any free one) in the background; its address.
pub(crate) async fn spawn(
    router: axum::Router,
    port: u16,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(router, listener, std::future::pending()));
    Ok(addr)
}

/// A client of a simulator's inspection API (`/_sim/…`), for tests, the demo and the bench.
#[derive(Clone)]
pub struct SimClient {
    /// The simulator's base URL, without a trailing `/`.
    base: String,
    http: reqwest::Client,
}

/// Why a call to the inspection API failed: the URL and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {problem}")]
pub struct SimClientError {
    pub url: String,
    pub problem: String,
}

impl SimClient {
    /// `base` as given to the services (`http://127.0.0.1:5000/` or without the `/`).
    pub fn new(base: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// `GET /_sim/inbox` (OtomaX) or `/_sim/outbox` (either): every item, oldest first.
    pub async fn list(&self, which: &str) -> Result<Vec<Value>, SimClientError> {
        match self.call("GET", &format!("_sim/{which}"), None).await? {
            Value::Array(items) => Ok(items),
            other => Err(self.error(which, format!("not a list: {other}"))),
        }
    }

    /// `GET /_sim/stats`.
    pub async fn stats(&self) -> Result<Value, SimClientError> {
        self.call("GET", "_sim/stats", None).await
    }

    /// `POST /_sim/faults` with `faults` (the simulator's knobs); the knobs now in force.
    pub async fn faults(&self, faults: &Value) -> Result<Value, SimClientError> {
        self.call("POST", "_sim/faults", Some(faults)).await
    }

    /// `POST /_sim/reset`: forget everything received.
    pub async fn reset(&self) -> Result<(), SimClientError> {
        self.call("POST", "_sim/reset", None).await.map(drop)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SimClientError> {
        let url = format!("{}/{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        };
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        let fail = |problem: String| SimClientError {
            url: url.clone(),
            problem,
        };
        let response = request
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| fail(format!("not JSON ({e}): {text}")))
    }

    fn error(&self, path: &str, problem: String) -> SimClientError {
        SimClientError {
            url: format!("{}/_sim/{path}", self.base),
            problem,
        }
    }
}
