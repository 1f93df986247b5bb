//! `wacenter sim otomax`: the OtomaX Open API as the reference describes it.
//!
//! * every call's token is checked (bad → 401 `{"ok":false,"desc":…}`), and `_exp` when present
//!   (expired → `{"ok":false,"desc":…}`); endpoints under `/<Name>` and `/api/<name>`, any case;
//! * InsertInbox answers 41 (unknown sender), 42 (not a command), else 21 with a text; resellers
//!   type `<product>.<destination>.<pin>`, `S.<pin>` (balance) and `TIKET.<amount>.<pin>`;
//! * a purchase posts an outbox row with its result to the registered callback URL after
//!   `result_delay`, retrying until it gets a 2xx, and records the UpdateStatusOutbox it gets back;
//! * fault knobs (latency, error rate, down-for-N-seconds) at start and under `/_sim/faults`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;
use wacenter_otomax::lenient::{value_as_i64, value_as_string};
use wacenter_otomax::Signer;

use crate::inspect::{page, Received, Since};

/// A reseller the simulator knows, by phone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimReseller {
    pub phone: String,
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_saldo")]
    pub saldo: i64,
    /// When set, commands must carry this PIN (else status 49).
    #[serde(default)]
    pub pin: Option<String>,
}

fn default_saldo() -> i64 {
    1_000_000
}

impl SimReseller {
    /// `PHONE=CODE` as given to `--reseller`.
    pub fn parse_arg(arg: &str) -> Result<Self, String> {
        let (phone, code) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected PHONE=CODE, e.g. 628123456789=R001"))?;
        let phone: String = phone.chars().filter(char::is_ascii_digit).collect();
        if phone.is_empty() || code.trim().is_empty() {
            return Err(format!(
                "{arg:?}: expected PHONE=CODE, e.g. 628123456789=R001"
            ));
        }
        Ok(Self {
            phone,
            code: code.trim().to_string(),
            name: String::new(),
            saldo: default_saldo(),
            pin: None,
        })
    }
}

/// Resellers from a TOML file: `[[reseller]]` tables with `phone`, `code`, optional `name`,
/// `saldo`, `pin`.
pub fn load_resellers_file(path: &std::path::Path) -> Result<Vec<SimReseller>, String> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        reseller: Vec<SimReseller>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.reseller)
}

#[derive(Debug, Clone)]
pub struct OtomaxSimConfig {
    pub app_id: String,
    pub app_key: String,
    pub dev_key: String,
    pub resellers: Vec<SimReseller>,
    pub result_delay: Duration,
    pub faults: Faults,
}

/// Fault knobs; all can change at run time through `POST /_sim/faults`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub error_rate: f64,
    /// While down every call gets 503.
    #[serde(skip)]
    pub down_until: Option<Instant>,
}

#[derive(Debug, Deserialize)]
struct FaultsRequest {
    latency_ms: Option<u64>,
    error_rate: Option<f64>,
    down_for_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct OutboxEntry {
    row: Value,
    /// `pending` until the callback URL answered 2xx, then `delivered`.
    state: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_millis")]
    delivered_at: Option<DateTime<Utc>>,
    /// What UpdateStatusOutbox reported (20 delivered, 40 failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    update_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_millis")]
    update_status_at: Option<DateTime<Utc>>,
}

mod opt_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => s.serialize_none(),
        }
    }
}

#[derive(Default)]
struct Inner {
    inbox: Vec<Received>,
    outbox: Vec<OutboxEntry>,
    outbox_index: HashMap<i64, usize>,
    trx: HashMap<i64, Value>,
    callback_url: Option<String>,
    next_kode_inbox: i64,
    next_outbox: i64,
    next_trx: i64,
    requests: u64,
    by_endpoint: HashMap<String, u64>,
    rejected_tokens: u64,
    expired: u64,
    /// Bumped by reset so delivery tasks of forgotten rows stop.
    generation: u64,
    resellers: Vec<SimReseller>,
}

struct Shared {
    signer: Signer,
    result_delay: Duration,
    http: reqwest::Client,
    faults: Mutex<Faults>,
    inner: Mutex<Inner>,
}

/// A running (or routable) OtomaX simulator.
#[derive(Clone)]
pub struct OtomaxSim {
    shared: Arc<Shared>,
}

impl OtomaxSim {
    pub fn new(config: OtomaxSimConfig) -> Self {
        // Ids grow with the clock, like a database sequence that survives restarts: a restarted
        // simulator never reuses an outbox kode that wacenter already delivered.
        let epoch = (Utc::now().timestamp() - 1_700_000_000).max(0);
        let inner = Inner {
            next_kode_inbox: epoch * 100,
            next_outbox: epoch * 100,
            next_trx: epoch * 100,
            resellers: config.resellers,
            ..Default::default()
        };
        Self {
            shared: Arc::new(Shared {
                signer: Signer::new(&config.app_id, &config.app_key, &config.dev_key),
                result_delay: config.result_delay,
                http: wacenter_otomax::client::shared_http_client(),
                faults: Mutex::new(config.faults),
                inner: Mutex::new(inner),
            }),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/_sim/inbox", get(sim_inbox))
            .route("/_sim/outbox", get(sim_outbox).post(sim_push_outbox))
            .route("/_sim/stats", get(sim_stats))
            .route("/_sim/reset", post(sim_reset))
            .route("/_sim/faults", get(sim_get_faults).post(sim_set_faults))
            .route("/api/{name}", post(api))
            .route("/{name}", post(api))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    Json(json!({"ok": false, "desc": "unknown path; endpoints are POST /<Name>"})),
                )
            })
            .layer(DefaultBodyLimit::max(1 << 20))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    /// Binds 127.0.0.1:`port` (0 = any) and serves in the background; returns the address.
    pub async fn spawn(self, port: u16) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(self.serve(listener, std::future::pending()));
        Ok(addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().expect("simulator state lock")
    }

    /// Adds an outbox row for `penerima` and delivers it to the callback URL (spec: OtomaX pushes
    /// transaction results and notices through its outbox).
    fn push_outbox(
        &self,
        penerima: &str,
        pesan: &str,
        kode_inbox: Option<i64>,
        kode_transaksi: Option<i64>,
        kode_reseller: &str,
    ) -> Value {
        let (kode, generation, row) = {
            let mut inner = self.lock();
            inner.next_outbox += 1;
            let kode = inner.next_outbox;
            let row = json!({
                "kode": kode,
                "tgl_entri": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "penerima": penerima,
                "tipe_penerima": "W",
                "pesan": pesan,
                "status": 0,
                "tgl_status": Value::Null,
                "kode_inbox": kode_inbox,
                "kode_transaksi": kode_transaksi,
                "kode_reseller": kode_reseller,
                "pengirim": penerima,
                "kode_terminal": 1,
                "is_perintah": 0,
            });
            let idx = inner.outbox.len();
            inner.outbox.push(OutboxEntry {
                row: row.clone(),
                state: "pending",
                attempts: 0,
                last_error: None,
                delivered_at: None,
                update_status: None,
                update_status_at: None,
            });
            inner.outbox_index.insert(kode, idx);
            (kode, inner.generation, row)
        };
        let sim = self.clone();
        let body = row.clone();
        tokio::spawn(async move { sim.deliver(kode, generation, body).await });
        row
    }

    /// Posts one outbox row to the callback URL until it gets a 2xx.
    async fn deliver(self, kode: i64, generation: u64, row: Value) {
        tokio::time::sleep(self.shared.result_delay).await;
        let mut backoff = Duration::from_millis(100);
        loop {
            let url = {
                let inner = self.lock();
                if inner.generation != generation {
                    return;
                }
                inner.callback_url.clone()
            };
            let outcome = match &url {
                None => Err("no callback URL registered (SetOutboxCallback)".to_string()),
                Some(url) => match self
                    .shared
                    .http
                    .post(url)
                    .json(&row)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(e.without_url().to_string()),
                },
            };
            {
                let mut inner = self.lock();
                if inner.generation != generation {
                    return;
                }
                let Some(&idx) = inner.outbox_index.get(&kode) else {
                    return;
                };
                let entry = &mut inner.outbox[idx];
                if url.is_some() {
                    entry.attempts += 1;
                }
                match outcome {
                    Ok(()) => {
                        entry.state = "delivered";
                        entry.delivered_at = Some(Utc::now());
                        entry.last_error = None;
                        return;
                    }
                    Err(e) => entry.last_error = Some(e),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(status: StatusCode, desc: impl Into<String>) -> Response {
    (status, Json(json!({"ok": false, "desc": desc.into()}))).into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn api(
    State(sim): State<OtomaxSim>,
    Path(name): Path<String>,
    Query(q): Query<TokenQuery>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let faults = *sim.shared.faults.lock().expect("faults lock");
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.down_until.is_some_and(|t| Instant::now() < t) {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "OtomaX is down (simulated)",
        );
    }
    if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (simulated)",
        );
    }
    let endpoint = name.to_ascii_lowercase();
    {
        let mut inner = sim.lock();
        inner.requests += 1;
        *inner.by_endpoint.entry(endpoint.clone()).or_default() += 1;
    }
    match q.token.as_deref() {
        Some(token) if sim.shared.signer.verify(&body, token) => {}
        presented => {
            sim.lock().rejected_tokens += 1;
            let why = if presented.is_none() {
                "missing token"
            } else {
                "invalid token"
            };
            return fail(StatusCode::UNAUTHORIZED, why);
        }
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return fail(StatusCode::BAD_REQUEST, "body must be a JSON object"),
        Err(e) => return fail(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")),
    };
    if let Some(exp) = req.get("_exp") {
        let parsed = exp
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        match parsed {
            None => return fail(StatusCode::OK, "_exp tidak valid (RFC3339 UTC expected)"),
            Some(t) if t.with_timezone(&Utc) < Utc::now() => {
                sim.lock().expired += 1;
                return fail(StatusCode::OK, "payload expired (_exp)");
            }
            Some(_) => {}
        }
    }
    let field = |k: &str| req.get(k).map(value_as_string).unwrap_or_default();
    match endpoint.as_str() {
        "test" => ok(
            json!({"pesan": "OK", "phone": field("phone"), "server_time": Utc::now().to_rfc3339()}),
        ),
        "insertinbox" => {
            // Recorded so tests can see the trace context crossed the whole pipeline.
            let traceparent = headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            insert_inbox(&sim, &req, body, traceparent)
        }
        "getrs" => {
            let kode = field("kode");
            match sim
                .lock()
                .resellers
                .iter()
                .find(|r| r.code.eq_ignore_ascii_case(&kode))
            {
                Some(r) => ok(
                    json!({"kode": r.code, "nama": display_name(r), "saldo": r.saldo, "saldo_minimal": 0, "aktif": 1, "hp": r.phone}),
                ),
                None => fail(StatusCode::OK, format!("Reseller {kode} tidak ditemukan")),
            }
        }
        "getsaldors" => {
            let kode = field("kode");
            match sim
                .lock()
                .resellers
                .iter()
                .find(|r| r.code.eq_ignore_ascii_case(&kode))
            {
                Some(r) => ok(json!({"kode": r.code, "saldo": r.saldo, "saldo_minimal": 0})),
                None => fail(StatusCode::OK, format!("Reseller {kode} tidak ditemukan")),
            }
        }
        "gettrx" => {
            let Some(id) = req.get("trxid").and_then(value_as_i64) else {
                return fail(StatusCode::OK, "trxid wajib diisi (angka)");
            };
            match sim.lock().trx.get(&id) {
                Some(t) => ok(t.clone()),
                None => fail(StatusCode::OK, format!("Transaksi {id} tidak ditemukan")),
            }
        }
        "setoutboxcallback" => {
            let url = field("url");
            if reqwest::Url::parse(&url).is_err() {
                return fail(StatusCode::OK, "url tidak valid");
            }
            sim.lock().callback_url = Some(url.clone());
            ok(json!({"url": url}))
        }
        "getoutboxcallback" => {
            ok(json!({"url": sim.lock().callback_url.clone().unwrap_or_default()}))
        }
        "updatestatusoutbox" => {
            let (Some(kode), Some(status)) = (
                req.get("kode").and_then(value_as_i64),
                req.get("status").and_then(value_as_i64),
            ) else {
                return fail(StatusCode::OK, "kode dan status wajib diisi (angka)");
            };
            let mut inner = sim.lock();
            let Some(&idx) = inner.outbox_index.get(&kode) else {
                return fail(StatusCode::OK, format!("Outbox {kode} tidak ditemukan"));
            };
            let entry = &mut inner.outbox[idx];
            entry.update_status = Some(status);
            entry.update_status_at = Some(Utc::now());
            ok(json!({"kode": kode, "status": status}))
        }
        other => fail(StatusCode::NOT_FOUND, format!("unknown endpoint {other}")),
    }
}

fn display_name(r: &SimReseller) -> String {
    if r.name.is_empty() {
        format!("Reseller {}", r.code)
    } else {
        r.name.clone()
    }
}

fn rupiah(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// What a reseller's text means.
#[derive(Debug, PartialEq)]
enum Command {
    Purchase {
        product: String,
        destination: String,
        pin: String,
    },
    Balance {
        pin: String,
    },
    Ticket {
        amount: i64,
        pin: String,
    },
}

fn parse_command(text: &str) -> Option<Command> {
    let parts: Vec<&str> = text.trim().split('.').map(str::trim).collect();
    let is_pin = |p: &str| (4..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit());
    match parts.as_slice() {
        [s, pin] if s.eq_ignore_ascii_case("S") && is_pin(pin) => Some(Command::Balance {
            pin: pin.to_string(),
        }),
        [t, amount, pin] if t.eq_ignore_ascii_case("TIKET") && is_pin(pin) => {
            let amount = amount
                .parse::<i64>()
                .ok()
                .filter(|a| (10_000..=100_000_000).contains(a))?;
            Some(Command::Ticket {
                amount,
                pin: pin.to_string(),
            })
        }
        [product, dest, pin]
            if is_pin(pin)
                && product.len() <= 12
                && product
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && product.chars().all(|c| c.is_ascii_alphanumeric())
                && (6..=20).contains(&dest.len())
                && dest.chars().all(|c| c.is_ascii_digit()) =>
        {
            Some(Command::Purchase {
                product: product.to_ascii_uppercase(),
                destination: dest.to_string(),
                pin: pin.to_string(),
            })
        }
        _ => None,
    }
}

/// Price of a product code: the number in it, in thousands, plus a 150 margin (`S5` → 5,150).
fn price(product: &str) -> i64 {
    let n: i64 = product
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(1);
    n.saturating_mul(1000).saturating_add(150)
}

fn insert_inbox(sim: &OtomaxSim, req: &Value, raw: Bytes, traceparent: Option<String>) -> Response {
    for key in [
        "pesan",
        "pengirim",
        "tipe_pengirim",
        "kode_terminal",
        "_exp",
    ] {
        if req.get(key).is_none() {
            return fail(StatusCode::OK, format!("field {key} wajib diisi"));
        }
    }
    let field = |k: &str| req.get(k).map(value_as_string).unwrap_or_default();
    let pesan = field("pesan");
    let pengirim: String = field("pengirim");
    let kode_reseller = field("kode_reseller");
    let received_at = Utc::now();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);

    let mut inner = sim.lock();
    inner.next_kode_inbox += 1;
    let kode_inbox = inner.next_kode_inbox;
    let reseller_idx = inner.resellers.iter().position(|r| r.phone == pengirim);
    let (status, pesan_out, outbox): (i64, String, Option<(String, String, i64)>) =
        match reseller_idx {
            None => (41, String::new(), None),
            Some(idx) => match parse_command(&pesan) {
                None => (42, String::new(), None),
                Some(cmd) => {
                    let r = &mut inner.resellers[idx];
                    let pin_ok = |pin: &str| r.pin.as_deref().is_none_or(|p| p == pin);
                    match cmd {
                        Command::Balance { pin } if pin_ok(&pin) => (
                            21,
                            format!("Saldo {} Rp {}", display_name(r), rupiah(r.saldo)),
                            None,
                        ),
                        Command::Ticket { amount, pin } if pin_ok(&pin) => {
                            let unique = amount + (kode_inbox % 900) + 100;
                            (21, format!("Tiket deposit Rp {} berhasil. Transfer tepat Rp {} sebelum 3 jam.", rupiah(amount), rupiah(unique)), None)
                        }
                        Command::Purchase {
                            product,
                            destination,
                            pin,
                        } if pin_ok(&pin) => {
                            let harga = price(&product);
                            if r.saldo < harga {
                                (43, String::new(), None)
                            } else {
                                r.saldo -= harga;
                                let saldo = r.saldo;
                                let code = r.code.clone();
                                let phone = r.phone.clone();
                                inner.next_trx += 1;
                                let trxid = inner.next_trx;
                                let sn =
                                    format!("{:020}", trxid.wrapping_mul(7_919) % 10_i64.pow(18));
                                inner.trx.insert(
                                trxid,
                                json!({"kode": trxid, "kode_produk": product, "tujuan": destination, "kode_reseller": code,
                                       "harga": harga, "harga_beli": harga - 150, "status": 20, "sn": sn, "kode_inbox": kode_inbox}),
                            );
                                let reply = format!("{product}.{destination} sedang diproses. Harga Rp {}. Saldo Rp {}. Trx #{trxid}", rupiah(harga), rupiah(saldo));
                                let result = format!("SUKSES {product}.{destination} SN:{sn}. Harga Rp {}. Saldo Rp {}. Trx #{trxid}", rupiah(harga), rupiah(saldo));
                                (21, reply, Some((phone, result, trxid)))
                            }
                        }
                        _ => (49, String::new(), None),
                    }
                }
            },
        };
    let status_desc = wacenter_otomax::inbox_status_desc(status)
        .unwrap_or("Gagal")
        .to_string();
    let code_for_outbox = reseller_idx
        .map(|i| inner.resellers[i].code.clone())
        .unwrap_or(kode_reseller);
    let mut extra = serde_json::Map::new();
    extra.insert("kode_inbox".into(), json!(kode_inbox));
    extra.insert("status".into(), json!(status));
    if let Some(tp) = traceparent {
        extra.insert("traceparent".into(), json!(tp));
    }
    inner.inbox.push(Received {
        received_at,
        body,
        extra,
    });
    drop(inner);
    if let Some((phone, result, trxid)) = outbox {
        sim.push_outbox(
            &phone,
            &result,
            Some(kode_inbox),
            Some(trxid),
            &code_for_outbox,
        );
    }
    ok(
        json!({"kode_inbox": kode_inbox, "status": status, "statusDesc": status_desc, "pesan": pesan_out}),
    )
}

async fn sim_inbox(State(sim): State<OtomaxSim>, Query(q): Query<Since>) -> Json<Vec<Received>> {
    Json(page(&sim.lock().inbox, q.since))
}

async fn sim_outbox(
    State(sim): State<OtomaxSim>,
    Query(q): Query<Since>,
) -> Json<Vec<OutboxEntry>> {
    Json(page(&sim.lock().outbox, q.since))
}

#[derive(Deserialize)]
struct PushOutbox {
    penerima: String,
    pesan: String,
}

/// Test/demo helper: make OtomaX push an arbitrary outbox row.
async fn sim_push_outbox(State(sim): State<OtomaxSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<PushOutbox>(&body) {
        Ok(p) => Json(sim.push_outbox(&p.penerima, &p.pesan, None, None, "")).into_response(),
        Err(e) => fail(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"penerima\",\"pesan\"}}: {e}"),
        ),
    }
}

async fn sim_stats(State(sim): State<OtomaxSim>) -> Json<Value> {
    let inner = sim.lock();
    let delivered = inner
        .outbox
        .iter()
        .filter(|e| e.state == "delivered")
        .count();
    let acked = inner
        .outbox
        .iter()
        .filter(|e| e.update_status.is_some())
        .count();
    Json(json!({
        "received": inner.inbox.len(),
        "requests": inner.requests,
        "by_endpoint": inner.by_endpoint,
        "rejected_tokens": inner.rejected_tokens,
        "expired": inner.expired,
        "outbox_rows": inner.outbox.len(),
        "outbox_delivered": delivered,
        "outbox_status_updates": acked,
        "callback_url": inner.callback_url,
    }))
}

async fn sim_reset(State(sim): State<OtomaxSim>) -> Json<Value> {
    let mut inner = sim.lock();
    inner.inbox.clear();
    inner.outbox.clear();
    inner.outbox_index.clear();
    inner.trx.clear();
    inner.requests = 0;
    inner.by_endpoint.clear();
    inner.rejected_tokens = 0;
    inner.expired = 0;
    inner.generation += 1;
    Json(json!({"ok": true}))
}

fn faults_json(f: &Faults) -> Value {
    let down_for = f
        .down_until
        .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
        .unwrap_or(0.0);
    json!({"latency_ms": f.latency_ms, "error_rate": f.error_rate, "down_for_seconds": down_for})
}

async fn sim_get_faults(State(sim): State<OtomaxSim>) -> Json<Value> {
    Json(faults_json(&sim.shared.faults.lock().expect("faults lock")))
}

async fn sim_set_faults(State(sim): State<OtomaxSim>, body: Bytes) -> Response {
    let req: FaultsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!("expected {{latency_ms?, error_rate?, down_for_seconds?}}: {e}"),
            )
        }
    };
    if req.error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        return fail(
            StatusCode::BAD_REQUEST,
            "error_rate must be between 0 and 1",
        );
    }
    if req
        .down_for_seconds
        .is_some_and(|d| !(0.0..=86_400.0).contains(&d))
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "down_for_seconds must be between 0 and 86400",
        );
    }
    let mut f = sim.shared.faults.lock().expect("faults lock");
    if let Some(l) = req.latency_ms {
        f.latency_ms = l.min(600_000);
    }
    if let Some(r) = req.error_rate {
        f.error_rate = r;
    }
    if let Some(d) = req.down_for_seconds {
        f.down_until = (d > 0.0).then(|| Instant::now() + Duration::from_secs_f64(d));
    }
    Json(faults_json(&f)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_as_resellers_type_them() {
        assert_eq!(
            parse_command("S5.08123456789.1234"),
            Some(Command::Purchase {
                product: "S5".into(),
                destination: "08123456789".into(),
                pin: "1234".into()
            })
        );
        assert_eq!(
            parse_command("s.1234"),
            Some(Command::Balance { pin: "1234".into() })
        );
        assert_eq!(
            parse_command("tiket.100000.1234"),
            Some(Command::Ticket {
                amount: 100_000,
                pin: "1234".into()
            })
        );
        assert_eq!(parse_command("halo kak"), None);
        assert_eq!(parse_command("S5.0812.1234"), None, "destination too short");
        assert_eq!(parse_command("S5.08123456789"), None, "no pin");
        assert_eq!(parse_command(""), None);
    }

    #[test]
    fn money_formatting() {
        assert_eq!(rupiah(1_000_000), "1.000.000");
        assert_eq!(rupiah(5150), "5.150");
        assert_eq!(rupiah(150), "150");
        assert_eq!(price("S5"), 5150);
        assert_eq!(price("TSEL100"), 100_150);
    }

    #[test]
    fn reseller_args() {
        let r = SimReseller::parse_arg("+62 812-3456-789=R001").unwrap();
        assert_eq!(
            (r.phone.as_str(), r.code.as_str()),
            ("628123456789", "R001")
        );
        assert!(SimReseller::parse_arg("628123").is_err());
        assert!(SimReseller::parse_arg("=R1").is_err());
    }
}
