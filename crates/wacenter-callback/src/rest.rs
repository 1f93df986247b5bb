//! The `/otomax/*` admin routes (seed: "WhatsApp Center OtomaX endpoints"). Each wraps one
//! OtomaX call; OtomaX's own answer is passed through in `results` without dropping fields.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use wacenter_otomax::InsertInboxRequest;

use crate::envelope::{json_body, object, success, ApiError, ErrorEnvelope, SuccessEnvelope};
use crate::openapi::{AdminAuth, BadBody, OtomaxFailure};
use crate::{Callback, RestOtomax};

/// Longest reseller code accepted, in characters (the path parameter's `maxLength`).
pub const MAX_RESELLER_CODE: usize = 64;

/// `?otomax=<name>`: which OtomaX server of the routing table an admin route talks to.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServerQuery {
    /// The server's name in the routing table; absent: `default` (else the table's first).
    #[param(pattern = "^[a-z0-9-]{1,32}$")]
    pub otomax: Option<String>,
}

/// The server `query` names, with its client.
fn otomax<'a>(app: &'a Callback, query: &ServerQuery) -> Result<&'a RestOtomax, ApiError> {
    let servers = &app.inner.rest;
    if servers.is_empty() {
        return Err(ApiError::unavailable(
            "OtomaX is disabled on this service (OTOMAX_ENABLED=false); enable it to use /otomax/* routes",
        ));
    }
    let found = match query.otomax.as_deref() {
        None => servers
            .iter()
            .find(|s| s.server.name.as_str() == wacenter_config::DEFAULT_SERVER)
            .or_else(|| servers.first()),
        Some(name) => servers.iter().find(|s| s.server.name.as_str() == name),
    };
    found.ok_or_else(|| {
        let names: Vec<&str> = servers.iter().map(|s| s.server.name.as_str()).collect();
        let asked: String = query
            .otomax
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        ApiError::not_found(format!(
            "no OtomaX server {asked:?} here; servers: {}",
            names.join(", ")
        ))
    })
}

/// The `{code}` path segment, trimmed; counted in characters as JSON Schema's `maxLength` is.
fn reseller_code(code: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(code) =
        code.map_err(|e| ApiError::validation(format!("reseller code: {}", e.body_text())))?;
    let code = code.trim();
    if code.is_empty() {
        return Err(ApiError::validation("reseller code is empty"));
    }
    if code.chars().count() > MAX_RESELLER_CODE || code.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "reseller code must be at most {MAX_RESELLER_CODE} printable characters"
        )));
    }
    Ok(code.to_string())
}

/// A manual InsertInbox, as if `pengirim` had sent `pesan` on WhatsApp.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"pesan": "S.1234", "pengirim": "628123456789"}))]
pub struct InsertInboxBody {
    /// The message text, as a reseller would type it. Must not be blank.
    #[schema(min_length = 1, pattern = r"\S")]
    pub pesan: String,
    /// The sender's phone number, sent to OtomaX as 6 to 15 digits in international form. The
    /// pattern is that canonical form; national numbers (`08…`, given
    /// `WA_DEFAULT_COUNTRY_CODE`), spaces, dashes, dots, parentheses and WhatsApp JIDs
    /// (`628…@s.whatsapp.net`) are accepted too and normalized.
    #[schema(pattern = r"^\+?[1-9][0-9]{5,14}$", example = "628123456789")]
    pub pengirim: String,
    /// Reseller code; absent, null or blank means `OTOMAX_DEFAULT_RESELLER`.
    #[serde(default)]
    pub kode_reseller: Option<String>,
    /// Terminal code; absent or null means `OTOMAX_DEFAULT_KODE_TERMINAL`.
    #[serde(default, deserialize_with = "integer")]
    pub kode_terminal: Option<i64>,
}

/// An optional JSON Schema integer: `7` and also `7.0`, which JSON Schema counts as the same
/// integer (serde alone would refuse it).
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    // 2^63: every f64 in [-2^63, 2^63) with no fraction is an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => {
                // Exact: integral and in range (checked above).
                Ok(Some(f as i64))
            }
            _ => Err(D::Error::custom(format!(
                "invalid value: {n}, expected an integer between -2^63 and 2^63-1"
            ))),
        },
    }
}

/// `POST /otomax/insert-inbox`: `{pesan, pengirim, kode_reseller?, kode_terminal?}`.
#[utoipa::path(
    post,
    path = "/otomax/insert-inbox",
    tag = "otomax",
    operation_id = "insertInbox",
    summary = "Manual InsertInbox",
    description = "Sends InsertInbox to OtomaX (`tipe_pengirim` W, `_exp` now + OTOMAX_EXP_SECONDS) \
        and returns OtomaX's answer. `results` is OtomaX's `result` object (`kode_inbox`, \
        `status`, `statusDesc`, `pesan` and whatever else OtomaX sent) plus `request`, the exact \
        InsertInbox body that was signed and sent.",
    request_body = InsertInboxBody,
    params(ServerQuery),
    responses(
        (status = 200, description = "OtomaX accepted the message; its answer is in `results`", body = SuccessEnvelope),
        BadBody, AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn insert_inbox(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: InsertInboxBody = json_body(&body)?;
    if b.pesan.trim().is_empty() {
        return Err(ApiError::validation("pesan is empty"));
    }
    let pengirim = wacenter_whatsapp::normalize_phone(&b.pengirim, &app.inner.config.country_code)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "pengirim {:?} is not a phone number (e.g. 08123456789 or 628123456789)",
                b.pengirim
            ))
        })?;
    let otomax = otomax(&app, &server)?;
    let kode_reseller = b
        .kode_reseller
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(|| otomax.server.otomax.default_reseller.clone());
    let req = InsertInboxRequest::whatsapp(
        b.pesan,
        kode_reseller,
        pengirim,
        b.kode_terminal
            .unwrap_or(otomax.server.otomax.default_kode_terminal),
        otomax.server.otomax.exp.deadline(Utc::now()),
    );
    let r = otomax.client.insert_inbox(&req).await?;
    Ok(success(
        "InsertInbox sent",
        with_additions(r.raw, [("request", json!(req))]),
    ))
}

/// Where OtomaX should post its outbox rows.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"url": "https://wacenter.example.com/otomax/callback?secret=s3cret"}))]
pub struct SetCallbackBody {
    /// An http(s) URL. Absent or null (or no body at all) registers this service's own
    /// `PUBLIC_URL` + `/otomax/callback?secret=<OTOMAX_CALLBACK_SECRET>`.
    #[serde(default)]
    #[schema(format = "uri")]
    pub url: Option<String>,
}

/// `POST /otomax/set-callback`: `{url}`, or no body for this service's own URL with the secret.
#[utoipa::path(
    post,
    path = "/otomax/set-callback",
    tag = "otomax",
    operation_id = "setCallback",
    summary = "SetOutboxCallback",
    description = "Tells OtomaX where to post its outbox rows. With no body (or no `url`) it \
        registers this service's own callback URL: `PUBLIC_URL` + `/otomax/callback?secret=…`. \
        `results` is OtomaX's `result` plus `url`, the URL registered; secrets in URLs are \
        shown redacted.",
    request_body(content = Option<SetCallbackBody>, description = "Optional; no body means this service's own URL"),
    params(ServerQuery),
    responses(
        (status = 200, description = "OtomaX registered the URL", body = SuccessEnvelope),
        BadBody, AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn set_callback(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // No body and a JSON `null` body both mean "no body" (generated clients send `null`).
    let b: SetCallbackBody = if body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_null())
    {
        SetCallbackBody::default()
    } else {
        json_body(&body)?
    };
    let url = match b.url {
        None => own_callback_url(&app, &server)?,
        Some(url) => match url::Url::parse(url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                url.trim().to_string()
            }
            _ => {
                return Err(ApiError::validation(format!(
                    "url {:?} is not an http(s) URL",
                    redact_url(&url)
                )))
            }
        },
    };
    let r = otomax(&app, &server)?
        .client
        .set_outbox_callback(&url)
        .await?;
    Ok(success(
        "callback URL registered",
        object(redact(&Value::Object(with_additions(
            r.raw,
            [("url", json!(url))],
        )))),
    ))
}

/// `PUBLIC_URL` + `/otomax/callback?secret=…` for the server `default`, or
/// `/otomax/callback/<name>?secret=…` for another.
fn own_callback_url(app: &Callback, query: &ServerQuery) -> Result<String, ApiError> {
    let server = &otomax(app, query)?.server;
    let Some(public) = &app.inner.config.public_url else {
        return Err(ApiError::validation(
            "no url given and PUBLIC_URL is not set: send {\"url\":\"https://…\"} or set PUBLIC_URL on the callback service",
        ));
    };
    let mut url = public.clone();
    let base = url.path().trim_end_matches('/').to_string();
    let path = match server.name.as_str() {
        wacenter_config::DEFAULT_SERVER => format!("{base}/otomax/callback"),
        name => format!("{base}/otomax/callback/{name}"),
    };
    url.set_path(&path);
    url.query_pairs_mut()
        .append_pair("secret", server.callback_secret.expose());
    Ok(url.to_string())
}

/// `GET /otomax/get-callback` (a POST `{}` upstream).
#[utoipa::path(
    get,
    path = "/otomax/get-callback",
    tag = "otomax",
    operation_id = "getCallback",
    summary = "GetOutboxCallback",
    description = "The callback URL OtomaX has registered. `results` is OtomaX's `result` \
        (`url`, …); secrets in URLs (`secret=`, `token=`, passwords) are shown redacted.",
    params(ServerQuery),
    responses(
        (status = 200, description = "OtomaX's answer", body = SuccessEnvelope),
        AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn get_callback(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
) -> Result<Response, ApiError> {
    let r = otomax(&app, &server)?.client.get_outbox_callback().await?;
    Ok(success(
        "callback URL",
        object(redact(&Value::Object(result_of(r.raw)))),
    ))
}

/// A Test call.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"phone": "6285219898489"}))]
pub struct TestBody {
    /// Any phone number; OtomaX echoes it. Must not be blank.
    #[schema(min_length = 1, pattern = r"\S")]
    pub phone: String,
}

/// `POST /otomax/test`: `{phone}`; OtomaX's answer and the round-trip time.
#[utoipa::path(
    post,
    path = "/otomax/test",
    tag = "otomax",
    operation_id = "test",
    summary = "Test the connection to OtomaX",
    description = "Sends OtomaX's Test call. `results` is OtomaX's `result` plus \
        `round_trip_ms`, the time the call took in milliseconds.",
    request_body = TestBody,
    params(ServerQuery),
    responses(
        (status = 200, description = "OtomaX answered", body = SuccessEnvelope),
        BadBody, AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn test(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b: TestBody = json_body(&body)?;
    if b.phone.trim().is_empty() {
        return Err(ApiError::validation("phone is empty"));
    }
    let r = otomax(&app, &server)?.client.test(b.phone.trim()).await?;
    let rtt = r.elapsed.as_secs_f64() * 1000.0;
    Ok(success(
        format!("OtomaX answered in {rtt:.0} ms"),
        with_additions(r.raw, [("round_trip_ms", json!(rtt))]),
    ))
}

/// `GET /otomax/reseller/{code}`.
#[utoipa::path(
    get,
    path = "/otomax/reseller/{code}",
    tag = "otomax",
    operation_id = "getReseller",
    summary = "GetRs: a reseller",
    description = "`results` is OtomaX's `result`: the reseller (`kode`, `nama`, … \
        as OtomaX sends them). An unknown reseller is OtomaX refusing: 502 with its reason.",
    params(("code" = String, Path, description = "Reseller code (kode_reseller)", min_length = 1, max_length = 64, example = "R001"), ServerQuery),
    responses(
        (status = 200, description = "The reseller, as OtomaX describes it", body = SuccessEnvelope),
        (status = 400, description = "The code is blank, too long or has control characters", body = ErrorEnvelope),
        AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn reseller(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let code = reseller_code(code)?;
    let r = otomax(&app, &server)?.client.get_rs(&code).await?;
    Ok(success("reseller", result_of(r.raw)))
}

/// `GET /otomax/balance/{code}` and `GET /otomax/reseller/{code}/balance`.
#[utoipa::path(
    get,
    path = "/otomax/balance/{code}",
    tag = "otomax",
    operation_id = "getBalance",
    summary = "GetSaldoRs: a reseller's balance",
    description = "`results` is OtomaX's `result`: `saldo` and whatever else \
        OtomaX sends. Same as `GET /otomax/reseller/{code}/balance`.",
    params(("code" = String, Path, description = "Reseller code (kode_reseller)", min_length = 1, max_length = 64, example = "R001"), ServerQuery),
    responses(
        (status = 200, description = "The balance, as OtomaX reports it", body = SuccessEnvelope),
        (status = 400, description = "The code is blank, too long or has control characters", body = ErrorEnvelope),
        AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn balance(
    State(app): State<Callback>,
    Query(server): Query<ServerQuery>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let code = reseller_code(code)?;
    let r = otomax(&app, &server)?.client.get_saldo_rs(&code).await?;
    Ok(success("balance", result_of(r.raw)))
}

/// `GET /otomax/reseller/{code}/balance`: the same handler as [`balance`], documented under its
/// own path (one `#[utoipa::path]` describes one path).
#[utoipa::path(
    get,
    path = "/otomax/reseller/{code}/balance",
    tag = "otomax",
    operation_id = "getResellerBalance",
    summary = "GetSaldoRs: a reseller's balance",
    description = "Same as `GET /otomax/balance/{code}`.",
    params(("code" = String, Path, description = "Reseller code (kode_reseller)", min_length = 1, max_length = 64, example = "R001"), ServerQuery),
    responses(
        (status = 200, description = "The balance, as OtomaX reports it", body = SuccessEnvelope),
        (status = 400, description = "The code is blank, too long or has control characters", body = ErrorEnvelope),
        AdminAuth, OtomaxFailure,
    ),
    security(("basic_auth" = []))
)]
pub async fn reseller_balance(
    state: State<Callback>,
    server: Query<ServerQuery>,
    code: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    balance(state, server, code).await
}

/// `results` of a route that wraps an OtomaX call: OtomaX's `result` object as OtomaX sent it
/// (every field kept), not its `{ok, result}` envelope. Anything else OtomaX put in its envelope
/// beside `ok` and `result` is kept next to it, and wacenter's additions (`request`,
/// `round_trip_ms`, `url`) after that. Nothing OtomaX sent is ever overwritten: a field whose name
/// is already taken is left out. A `result` that is not an object is kept under `result`.
fn with_additions<const N: usize>(raw: Value, extra: [(&str, Value); N]) -> Map<String, Value> {
    let mut envelope = object(raw);
    envelope.remove("ok");
    let mut map = match envelope.remove("result") {
        Some(Value::Object(result)) => result,
        Some(other) => Map::from_iter([("result".to_string(), other)]),
        None => Map::new(),
    };
    for (k, v) in envelope {
        map.entry(k).or_insert(v);
    }
    for (k, v) in extra {
        map.entry(k).or_insert(v);
    }
    map
}

/// [`with_additions`] with nothing added.
fn result_of(raw: Value) -> Map<String, Value> {
    with_additions(raw, [])
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

pub fn redact_url(s: &str) -> String {
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
        let code = |s: &str| reseller_code(Ok(Path(s.to_string())));
        assert!(code(" ").is_err());
        assert!(code(&"x".repeat(65)).is_err());
        assert!(code("R\u{7}1").is_err());
        assert_eq!(code(" R001 ").unwrap(), "R001");
        // 64 characters is fine even when they take more bytes (JSON Schema counts characters).
        assert_eq!(code(&"é".repeat(64)).unwrap().chars().count(), 64);
    }

    #[test]
    fn kode_terminal_takes_integers_as_json_schema_defines_them() {
        let k = |body: &str| json_body::<InsertInboxBody>(body.as_bytes()).map(|b| b.kode_terminal);
        let with = |v: &str| {
            k(&format!(
                r#"{{"pesan":"x","pengirim":"1","kode_terminal":{v}}}"#
            ))
        };
        assert_eq!(with("7").unwrap(), Some(7));
        assert_eq!(with("7.0").unwrap(), Some(7));
        assert_eq!(with("-2.0e3").unwrap(), Some(-2000));
        assert_eq!(with("-9.223372036854775808e18").unwrap(), Some(i64::MIN));
        assert_eq!(with("null").unwrap(), None);
        assert_eq!(k(r#"{"pesan":"x","pengirim":"1"}"#).unwrap(), None);
        for bad in [
            "7.5",
            "9.223372036854775808e18",
            "9223372036854775808",
            "\"7\"",
            "[]",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn results_are_otomax_result_and_additions_never_replace_its_fields() {
        let m = with_additions(
            json!({"ok": true, "result": {"url": "otomax's", "kode": 1}, "node": 2}),
            [("url", json!("ours")), ("round_trip_ms", json!(1.5))],
        );
        assert_eq!(
            Value::Object(m),
            json!({"url": "otomax's", "kode": 1, "node": 2, "round_trip_ms": 1.5})
        );
        assert_eq!(
            Value::Object(result_of(json!({"ok": true, "result": true}))),
            json!({"result": true})
        );
    }
}
