//! One callback service per test, wired as in production: its own nats-server, the OtomaX
//! simulator, a real `Bus`, and the router served over TCP on a loopback port.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wacenter_bus::{Bus, Topology};
use wacenter_callback::Callback;
use wacenter_config::Settings;
use wacenter_sim::otomax::{OtomaxSim, OtomaxSimConfig, SimReseller};
use wacenter_test_support::NatsServer;

pub const RESELLER_PHONE: &str = "628123456789";
pub const RESELLER_CODE: &str = "R001";
pub const RESELLER_SALDO: i64 = 750_000;
pub use wacenter_sim::demo::{ADMIN_PASSWORD as ADMIN_PASS, ADMIN_USER, CALLBACK_SECRET};
pub const PUBLIC_URL: &str = "https://wacenter.example.com";

pub struct Harness {
    pub nats: NatsServer,
    pub bus: Bus,
    /// Base URL of the OtomaX simulator (`http://127.0.0.1:port`), running even when the
    /// service is pointed elsewhere.
    pub sim: String,
    /// Base URL of the callback service under test.
    pub base: String,
    pub http: reqwest::Client,
}

/// A JSON answer: status, headers and body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and the envelope `code`, and that `message` is a non-empty string.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.body);
        assert_eq!(self.code(), code, "code of {}", self.body);
        assert!(!self.message().is_empty(), "no message in {}", self.body);
        self
    }

    /// Asserts that `message` contains every one of `parts`.
    #[track_caller]
    pub fn mentions(&self, parts: &[&str]) -> &Self {
        for part in parts {
            assert!(
                self.message().contains(part),
                "message {:?} does not mention {part:?}",
                self.message()
            );
        }
        self
    }
}

pub fn sim_config() -> OtomaxSimConfig {
    let reseller = SimReseller {
        phone: RESELLER_PHONE.into(),
        code: RESELLER_CODE.into(),
        name: "Toko Satu".into(),
        saldo: RESELLER_SALDO,
        pin: None,
    };
    wacenter_sim::demo::otomax(vec![reseller], Duration::from_secs(60))
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts everything; `customize` may change the settings the service is built with (they
    /// already point at the private NATS and the simulator).
    pub async fn start_with(customize: impl FnOnce(&mut Settings)) -> Self {
        let nats = NatsServer::start();
        let sim_addr = OtomaxSim::new(sim_config()).spawn(0).await.unwrap();
        let sim = format!("http://{sim_addr}");
        let mut settings = Settings {
            otomax_api_url: format!("{sim}/"),
            public_url: PUBLIC_URL.into(),
            otomax_timeout_seconds: 5,
            ..wacenter_sim::demo::settings(&nats.url())
        };
        customize(&mut settings);
        let bus = Bus::connect(&settings.nats_url, "callback-test", Topology::default())
            .await
            .unwrap();
        bus.ensure_topology().await.unwrap();
        let config = wacenter_config::CallbackConfig::from_settings(&settings).unwrap();
        let callback = Callback::new(&config, bus.clone());
        let addr: SocketAddr = wacenter_test_support::serve(callback.router()).await;
        Self {
            nats,
            bus,
            sim,
            base: format!("http://{addr}"),
            http: wacenter_otomax::client::shared_http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with the admin's credentials; `body` is sent as JSON.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        let mut req = self
            .http
            .request(method, self.url(path))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS));
        if let Some(body) = body {
            req = req.json(body);
        }
        answer(req).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.admin(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.admin(Method::POST, path, Some(body)).await
    }

    /// Posts raw bytes (as `application/json`) with the admin's credentials.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        answer(
            self.http
                .post(self.url(path))
                .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// `GET` without any credentials.
    pub async fn get_anonymous(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    pub async fn sim_stats(&self) -> Value {
        wacenter_sim::inspect::SimClient::new(&self.sim, self.http.clone())
            .stats()
            .await
            .unwrap()
    }

    pub async fn sim_inbox(&self) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/inbox", self.sim))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Calls made to one OtomaX endpoint (lowercase name, e.g. `test`).
    pub async fn sim_calls(&self, endpoint: &str) -> u64 {
        self.sim_stats().await["by_endpoint"][endpoint]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn sim_faults(&self, faults: Value) {
        let r = self
            .http
            .post(format!("{}/_sim/faults", self.sim))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    /// Makes the simulator answer every call with 503 for a minute.
    pub async fn otomax_down(&self) {
        self.sim_faults(json!({"down_for_seconds": 60})).await;
    }
}

/// Sends `req` and decodes the JSON answer, asserting it is JSON.
pub async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{status} with content type {content_type:?}: {text}"
    );
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// Every route that makes one OtomaX call, with a valid request for it.
pub fn otomax_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/otomax/insert-inbox",
            Some(json!({"pesan": "S.1234", "pengirim": "08123456789"})),
        ),
        (
            Method::POST,
            "/otomax/set-callback",
            Some(json!({"url": "https://elsewhere.example.com/cb"})),
        ),
        (Method::GET, "/otomax/get-callback", None),
        (
            Method::POST,
            "/otomax/test",
            Some(json!({"phone": "628123"})),
        ),
        (Method::GET, "/otomax/reseller/R001", None),
        (Method::GET, "/otomax/balance/R001", None),
        (Method::GET, "/otomax/reseller/R001/balance", None),
    ]
}

/// Calls every OtomaX route at once (some wait out a retry) and returns the answers in order.
pub async fn call_every_otomax_route(h: &Harness) -> Vec<(String, Answer)> {
    let mut tasks = Vec::new();
    for (method, path, body) in otomax_routes() {
        let req = {
            let mut req = h
                .http
                .request(method.clone(), h.url(path))
                .basic_auth(ADMIN_USER, Some(ADMIN_PASS));
            if let Some(body) = &body {
                req = req.json(body);
            }
            req
        };
        tasks.push((
            format!("{method} {path}"),
            tokio::spawn(async move { answer(req).await }),
        ));
    }
    let mut answers = Vec::new();
    for (label, task) in tasks {
        answers.push((label, task.await.unwrap()));
    }
    answers
}
