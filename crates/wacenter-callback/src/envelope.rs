//! The seed app's response envelope: `{"code":"SUCCESS","message":"…","results":{…}}`, errors
//! `{"code":"<ERROR_CODE>","message":"…"}` with a matching HTTP status. Every error this service
//! answers goes through [`ApiError`], so none is ever a bare 500 or a panic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use wacenter_otomax::OtomaxError;

pub fn success(message: impl Into<String>, results: Value) -> Response {
    (
        StatusCode::OK,
        Json(json!({"code": "SUCCESS", "message": message.into(), "results": results})),
    )
        .into_response()
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub results: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            results: None,
        }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the body is larger than {limit} bytes"),
        )
    }
    pub fn external(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "EXTERNAL_API_ERROR", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
    }
    pub fn with_results(mut self, results: Value) -> Self {
        self.results = Some(results);
        self
    }
}

impl From<OtomaxError> for ApiError {
    fn from(e: OtomaxError) -> Self {
        let hint = match &e {
            OtomaxError::Connect { .. } => " (is OTOMAX_API_URL right and OtomaX running?)",
            OtomaxError::Timeout(_) => " (OtomaX is slow or overloaded; try again)",
            OtomaxError::Decode(_) => " (is OTOMAX_API_URL pointing at the OtomaX Open API?)",
            _ => "",
        };
        ApiError::external(format!("{e}{hint}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(results) = self.results {
            body["results"] = results;
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.code == "UNAUTHORIZED" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"wacenter\""),
            );
        }
        response
    }
}

/// Parses a JSON body leniently about the content type (curl users forget it) and strictly
/// about the content, with the serde message telling what is wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("invalid JSON body: {e}")))
}
