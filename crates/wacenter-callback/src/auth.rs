//! Basic auth for the admin routes (`APP_BASIC_AUTH`, several users allowed), compared in
//! constant time.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::envelope::ApiError;
use crate::Callback;

pub async fn require_basic_auth(
    State(app): State<Callback>,
    request: Request,
    next: Next,
) -> Response {
    let users = &app.inner.basic_auth;
    if users.is_empty() {
        return ApiError::unauthorized("admin routes are locked: set APP_BASIC_AUTH=user:password[,user:password…] to use them").into_response();
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(presented) = presented else {
        return ApiError::unauthorized("credentials required (HTTP Basic auth)").into_response();
    };
    // Compare against every user without stopping early, so timing says nothing.
    let mut ok = subtle::Choice::from(0u8);
    for (user, pass) in users {
        let expected = format!("{user}:{pass}");
        ok |= expected.as_bytes().ct_eq(presented.as_bytes());
    }
    if bool::from(ok) {
        next.run(request).await
    } else {
        ApiError::unauthorized("wrong user or password").into_response()
    }
}
