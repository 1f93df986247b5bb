//! The HTTP API: OtomaX's endpoints under `/<Name>` and `/api/<name>`, and the inspection API
//! under `/_sim/`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use wacenter_otomax::lenient::{value_as_i64, value_as_string};

use super::commands::*;
use super::state::*;
use super::OtomaxSim;
use crate::inspect::{page, Received, Since};

pub(crate) fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

pub(crate) fn fail(status: StatusCode, desc: impl Into<String>) -> Response {
    (status, Json(json!({"ok": false, "desc": desc.into()}))).into_response()
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

pub(crate) async fn api(
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
            if faults.reject_inbox {
                return fail(
                    StatusCode::OK,
                    "Pesan ditolak: terminal tidak aktif (simulated)",
                );
            }
            insert_inbox(&sim, &req, body, traceparent)
        }
        "getrs" => {
            let kode = field("kode");
            match sim.reseller(&kode) {
                Some(r) => ok(
                    json!({"kode": r.code, "nama": display_name(&r), "saldo": r.saldo, "saldo_minimal": 0, "aktif": 1, "hp": r.phone}),
                ),
                None => fail(StatusCode::OK, format!("Reseller {kode} tidak ditemukan")),
            }
        }
        "getsaldors" => {
            let kode = field("kode");
            match sim.reseller(&kode) {
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
        other => super::addon::answer(&sim, other, &req)
            .unwrap_or_else(|| fail(StatusCode::NOT_FOUND, format!("unknown endpoint {other}"))),
    }
}

pub(crate) fn insert_inbox(
    sim: &OtomaxSim,
    req: &Value,
    raw: Bytes,
    traceparent: Option<String>,
) -> Response {
    // OtomaX's own add-on sends neither `kode_terminal` (OtomaX's default terminal) nor `_exp`
    // (checked above when present).
    for key in ["pesan", "pengirim", "tipe_pengirim"] {
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
            // The result goes out through the terminal the command came in on.
            req.get("kode_terminal")
                .and_then(value_as_i64)
                .unwrap_or(DEFAULT_TERMINAL),
        );
    }
    ok(
        json!({"kode_inbox": kode_inbox, "status": status, "statusDesc": status_desc, "pesan": pesan_out}),
    )
}

pub(crate) async fn sim_inbox(
    State(sim): State<OtomaxSim>,
    Query(q): Query<Since>,
) -> Json<Vec<Received>> {
    Json(page(&sim.lock().inbox, q.since))
}

pub(crate) async fn sim_outbox(
    State(sim): State<OtomaxSim>,
    Query(q): Query<Since>,
) -> Json<Vec<OutboxEntry>> {
    Json(page(&sim.lock().outbox, q.since))
}

#[derive(Deserialize)]
pub(crate) struct PushOutbox {
    penerima: String,
    pesan: String,
    #[serde(default = "first_terminal")]
    kode_terminal: i64,
}

/// OtomaX's default terminal: what an InsertInbox without `kode_terminal` comes in on.
const DEFAULT_TERMINAL: i64 = 1;

fn first_terminal() -> i64 {
    DEFAULT_TERMINAL
}

/// Test/demo helper: make OtomaX push an arbitrary outbox row.
pub(crate) async fn sim_push_outbox(State(sim): State<OtomaxSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<PushOutbox>(&body) {
        Ok(p) => Json(sim.push_outbox(&p.penerima, &p.pesan, None, None, "", p.kode_terminal))
            .into_response(),
        Err(e) => fail(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"penerima\",\"pesan\"}}: {e}"),
        ),
    }
}

pub(crate) async fn sim_stats(State(sim): State<OtomaxSim>) -> Json<Value> {
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

pub(crate) async fn sim_reset(State(sim): State<OtomaxSim>) -> Json<Value> {
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

pub(crate) fn faults_json(f: &Faults) -> Value {
    let down_for = f
        .down_until
        .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64())
        .unwrap_or(0.0);
    json!({"latency_ms": f.latency_ms, "error_rate": f.error_rate, "down_for_seconds": down_for, "reject_inbox": f.reject_inbox})
}

pub(crate) async fn sim_get_faults(State(sim): State<OtomaxSim>) -> Json<Value> {
    Json(faults_json(&sim.shared.faults.lock().expect("faults lock")))
}

pub(crate) async fn sim_set_faults(State(sim): State<OtomaxSim>, body: Bytes) -> Response {
    let req: FaultsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{latency_ms?, error_rate?, down_for_seconds?, reject_inbox?}}: {e}"
                ),
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
    if let Some(r) = req.reject_inbox {
        f.reject_inbox = r;
    }
    Json(faults_json(&f)).into_response()
}
