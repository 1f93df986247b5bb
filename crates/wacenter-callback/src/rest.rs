//! The `/otomax/*` admin routes (seed: "WhatsApp Center OtomaX endpoints"). Each wraps one
//! OtomaX call; OtomaX's own answer is passed through in `results` without dropping fields.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use wacenter_otomax::{InsertInboxRequest, OtomaxClient};

use crate::envelope::{json_body, success, ApiError};
use crate::Callback;

fn client(app: &Callback) -> Result<&OtomaxClient, ApiError> {
    app.inner
        .otomax
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("OtomaX is disabled (OTOMAX_ENABLED=false)"))
}

fn reseller_code(code: &str) -> Result<String, ApiError> {
    let code = code.trim();
    if code.is_empty() {
        return Err(ApiError::validation("reseller code is empty"));
    }
    if code.len() > 64 || code.chars().any(|c| c.is_control()) {
        return Err(ApiError::validation(
            "reseller code must be at most 64 printable characters",
        ));
    }
    Ok(code.to_string())
}

#[derive(Deserialize)]
struct InsertInboxBody {
    pesan: String,
    pengirim: String,
    #[serde(default)]
    kode_reseller: Option<String>,
    #[serde(default)]
    kode_terminal: Option<i64>,
}

/// `POST /otomax/insert-inbox`: `{pesan, pengirim, kode_reseller?, kode_terminal?}`.
pub async fn insert_inbox(State(app): State<Callback>, body: Bytes) -> Result<Response, ApiError> {
    let b: InsertInboxBody = json_body(&body)?;
    if b.pesan.trim().is_empty() {
        return Err(ApiError::validation("pesan is empty"));
    }
    let pengirim = wacenter_whatsapp::normalize_phone(&b.pengirim, &app.inner.country_code)
        .ok_or_else(|| {
            ApiError::validation(format!("pengirim {:?} is not a phone number", b.pengirim))
        })?;
    let req = InsertInboxRequest::whatsapp(
        b.pesan,
        b.kode_reseller
            .unwrap_or_else(|| app.inner.default_reseller.clone()),
        pengirim,
        b.kode_terminal.unwrap_or(app.inner.default_kode_terminal),
        Utc::now() + app.inner.exp,
    );
    let r = client(&app)?.insert_inbox(&req).await?;
    Ok(success(
        "InsertInbox sent",
        with_request(r.raw, json!({"request": req})),
    ))
}

#[derive(Deserialize)]
struct SetCallbackBody {
    url: String,
}

/// `POST /otomax/set-callback`: `{url}`, or no body for this service's own URL with the secret.
pub async fn set_callback(State(app): State<Callback>, body: Bytes) -> Result<Response, ApiError> {
    let url = if body.iter().all(u8::is_ascii_whitespace) {
        let public = app.inner.public_url.trim_end_matches('/');
        if public.is_empty() {
            return Err(ApiError::validation(
                "no body and PUBLIC_URL is not set: send {\"url\":\"https://…\"} or set PUBLIC_URL",
            ));
        }
        let mut url = url::Url::parse(&format!("{public}/otomax/callback"))
            .map_err(|e| ApiError::validation(format!("PUBLIC_URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("secret", &app.inner.callback_secret);
        url.to_string()
    } else {
        let b: SetCallbackBody = json_body(&body)?;
        match url::Url::parse(&b.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => b.url,
            _ => {
                return Err(ApiError::validation(format!(
                    "url {:?} is not an http(s) URL",
                    b.url
                )))
            }
        }
    };
    let r = client(&app)?.set_outbox_callback(&url).await?;
    Ok(success(
        "callback URL registered",
        redact(&with_request(r.raw, json!({"url": url}))),
    ))
}

/// `GET /otomax/get-callback` (a POST `{}` upstream).
pub async fn get_callback(State(app): State<Callback>) -> Result<Response, ApiError> {
    let r = client(&app)?.get_outbox_callback().await?;
    Ok(success("callback URL", redact(&r.raw)))
}

#[derive(Deserialize)]
struct TestBody {
    phone: String,
}

/// `POST /otomax/test`: `{phone}`; OtomaX's answer and the round-trip time.
pub async fn test(State(app): State<Callback>, body: Bytes) -> Result<Response, ApiError> {
    let b: TestBody = json_body(&body)?;
    if b.phone.trim().is_empty() {
        return Err(ApiError::validation("phone is empty"));
    }
    let r = client(&app)?.test(b.phone.trim()).await?;
    let rtt = r.elapsed.as_secs_f64() * 1000.0;
    Ok(success(
        format!("OtomaX answered in {rtt:.0} ms"),
        with_request(r.raw, json!({"round_trip_ms": rtt})),
    ))
}

/// `GET /otomax/reseller/{code}`.
pub async fn reseller(
    State(app): State<Callback>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = reseller_code(&code)?;
    let r = client(&app)?.get_rs(&code).await?;
    Ok(success("reseller", r.raw))
}

/// `GET /otomax/balance/{code}` and `GET /otomax/reseller/{code}/balance`.
pub async fn balance(
    State(app): State<Callback>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = reseller_code(&code)?;
    let r = client(&app)?.get_saldo_rs(&code).await?;
    Ok(success("balance", r.raw))
}

/// OtomaX's envelope with wacenter's additions merged in (OtomaX's fields win nothing away).
fn with_request(mut raw: Value, extra: Value) -> Value {
    if let (Value::Object(map), Value::Object(extra)) = (&mut raw, extra) {
        for (k, v) in extra {
            map.entry(k).or_insert(v);
        }
    }
    raw
}

/// Hides `secret=…` (and any password in the authority) in every URL-looking string.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_url(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        other => other.clone(),
    }
}

fn redact_url(s: &str) -> String {
    let Ok(mut url) = url::Url::parse(s) else {
        return s.to_string();
    };
    if !matches!(url.scheme(), "http" | "https") {
        return s.to_string();
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.iter().any(|(k, _)| is_secret_param(k)) {
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs.iter().map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_param(k) {
                        "redacted"
                    } else {
                        v.as_str()
                    },
                )
            }));
    }
    url.to_string()
}

fn is_secret_param(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["secret", "token", "key", "password", "pass", "sig"]
        .iter()
        .any(|w| k.contains(w))
}

/// A Test call for the health check, bounded so probes never hang.
pub async fn probe(client: &OtomaxClient) -> Result<Duration, String> {
    let started = std::time::Instant::now();
    let signed = client
        .sign("Test", br#"{"phone":"health"}"#.to_vec())
        .map_err(|e| e.to_string())?;
    client
        .send_once(&signed, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_redacted() {
        let v = json!({"ok": true, "result": {"url": "https://x.example/otomax/callback?secret=abc123&x=1"}});
        let r = redact(&v).to_string();
        assert!(!r.contains("abc123"), "{r}");
        assert!(r.contains("secret=redacted") && r.contains("x=1"), "{r}");
        assert_eq!(
            redact(&json!("plain text secret=1")),
            json!("plain text secret=1")
        );
        assert!(!redact(&json!("https://u:pw@h/")).to_string().contains("pw"));
    }

    #[test]
    fn reseller_codes() {
        assert!(reseller_code(" ").is_err());
        assert!(reseller_code(&"x".repeat(65)).is_err());
        assert_eq!(reseller_code(" R001 ").unwrap(), "R001");
    }
}
