//! The seed app's response envelope: `{"code":"SUCCESS","message":"…","results":{…}}`, errors
//! `{"code":"<ERROR_CODE>","message":"…"}` with a matching HTTP status. Every error this service
//! answers goes through [`ApiError`], so none is ever a bare 500 or a panic.
//!
//! The envelope types are the ones serialized *and* the ones described in the OpenAPI document,
//! so the document cannot drift from what the handlers send.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use wacenter_otomax::OtomaxError;

/// `code` of every successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SuccessCode {
    Success,
}

/// A successful answer. `results` is route specific: for the routes that wrap an OtomaX call it
/// is OtomaX's `result` object as OtomaX sent it (every field kept, not OtomaX's `{ok, result}`
/// envelope) with wacenter's additions (`request`, `round_trip_ms`, `url`) next to its fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuccessEnvelope {
    pub code: SuccessCode,
    #[schema(example = "balance")]
    pub message: String,
    /// Route-specific, free-form object.
    #[schema(value_type = Object)]
    pub results: Map<String, Value>,
}

/// The `code` of an error answer; each goes with one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: the request is malformed or a value is invalid.
    ValidationError,
    /// 401: credentials (basic auth, callback secret) missing or wrong.
    Unauthorized,
    /// 403: the caller's address is not allowed (`OTOMAX_CALLBACK_ALLOW_IPS`).
    Forbidden,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 413: the body is larger than 1 MiB (or than the bus takes).
    PayloadTooLarge,
    /// 502: OtomaX refused, failed, or answered something that is not its envelope.
    ExternalApiError,
    /// 503: OtomaX disabled, NATS unreachable, or the integration unhealthy.
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::ValidationError => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ExternalApiError => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The wire spelling, also used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationError => "VALIDATION_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::ExternalApiError => "EXTERNAL_API_ERROR",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

/// An error answer. `message` says what went wrong and, where the caller or the operator can do
/// something about it, what to do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub code: ErrorCode,
    #[schema(example = "OtomaX refused the request: Reseller R999 tidak ditemukan")]
    pub message: String,
    /// Extra detail on some errors (e.g. the health report on 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    pub results: Option<Map<String, Value>>,
}

/// 200 with `results`.
pub fn success(message: impl Into<String>, results: Map<String, Value>) -> Response {
    Json(SuccessEnvelope {
        code: SuccessCode::Success,
        message: message.into(),
        results,
    })
    .into_response()
}

/// `value` as the `results` object: objects as they are, anything else (which OtomaX's envelope
/// never is, but the type allows) under `value`.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_string(), other)]),
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub results: Option<Map<String, Value>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            results: None,
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route; see /openapi.json",
        )
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    }
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ExternalApiError, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn with_results(mut self, results: Map<String, Value>) -> Self {
        self.results = Some(results);
        self
    }
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl From<OtomaxError> for ApiError {
    fn from(e: OtomaxError) -> Self {
        let message = match &e {
            // Rebuilt rather than `e.to_string()`: OTOMAX_API_URL may carry a password.
            OtomaxError::Connect { url, reason } => format!(
                "cannot connect to OtomaX at {}: {reason} (is OTOMAX_API_URL right and OtomaX running?)",
                crate::rest::redact_url(url)
            ),
            OtomaxError::Interrupted { url, reason } => format!(
                "the connection to OtomaX at {} broke after the request was sent: {reason} (OtomaX may have acted on it; check before repeating a change)",
                crate::rest::redact_url(url)
            ),
            OtomaxError::Uncertain { last } => {
                format!("OtomaX may or may not have acted on the request ({}); check OtomaX before repeating a change", ApiError::from((**last).clone()).message)
            }
            OtomaxError::Timeout(_) => {
                format!("{e} (OtomaX is slow or overloaded; try again, or raise OTOMAX_TIMEOUT_SECONDS)")
            }
            OtomaxError::Status { status, .. } if *status >= 500 || *status == 429 => {
                format!("{e} (OtomaX is failing or overloaded; try again later)")
            }
            OtomaxError::Status { .. } => {
                format!("{e} (is OTOMAX_API_URL the base URL of the OtomaX Open API?)")
            }
            OtomaxError::Decode(_) => {
                format!("{e} (is OTOMAX_API_URL pointing at the OtomaX Open API?)")
            }
            // The request could not even be built: the caller's input, not OtomaX.
            OtomaxError::InvalidRequest(_) => return ApiError::validation(e.to_string()),
            _ => e.to_string(),
        };
        ApiError::external(message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status(),
            Json(ErrorEnvelope {
                code: self.code,
                message: self.message,
                results: self.results,
            }),
        )
            .into_response()
    }
}

/// Parses a JSON object body leniently about the content type (curl users forget it) and
/// strictly about the content, with the serde message telling what is wrong. Only objects:
/// serde would otherwise fill a struct from an array by position.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => serde_json::from_value(v)
            .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}"))),
        Ok(other) => Err(ApiError::validation(format!(
            "invalid JSON body: expected an object, got {}",
            json_type(&other)
        ))),
        Err(e) => Err(ApiError::validation(format!("invalid JSON body: {e}"))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_spell_as_the_spec_says() {
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ExternalApiError,
            ErrorCode::Unavailable,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert_eq!(
            serde_json::to_value(SuccessCode::Success).unwrap(),
            "SUCCESS"
        );
    }

    #[test]
    fn connect_errors_hide_passwords_in_the_url() {
        let e = ApiError::from(OtomaxError::Connect {
            url: "http://user:hunter2@otomax.local:5000".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(e.code, ErrorCode::ExternalApiError);
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("OTOMAX_API_URL"), "{}", e.message);
    }
}
