//! Basic auth for the admin routes (`APP_BASIC_AUTH`, several users allowed), compared in
//! constant time.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::envelope::ApiError;
use crate::Callback;

pub async fn require_basic_auth(
    State(app): State<Callback>,
    request: Request,
    next: Next,
) -> Response {
    let users = &app.inner.config.basic_auth;
    if users.is_empty() {
        // No challenge header: there are no credentials a browser could usefully prompt for.
        return ApiError::unauthorized(
            "admin routes are locked: set APP_BASIC_AUTH=user:password[,user:password…] on the callback service to use them",
        )
        .into_response();
    }
    let Some(presented) = credentials(&request) else {
        return challenge(ApiError::unauthorized(
            "credentials required (HTTP Basic auth, a user of APP_BASIC_AUTH)",
        ));
    };
    // Compare digests, against every user without stopping early, so neither the length nor
    // the position of a match shows in the timing.
    let presented = Sha256::digest(presented.as_bytes());
    let mut ok = subtle::Choice::from(0u8);
    for user in users {
        let expected = Sha256::digest(format!("{}:{}", user.user, user.password.expose()));
        ok |= expected.as_slice().ct_eq(presented.as_slice());
    }
    if bool::from(ok) {
        next.run(request).await
    } else {
        challenge(ApiError::unauthorized("wrong user or password"))
    }
}

/// `user:password` from an `Authorization: Basic …` header (the scheme name is
/// case-insensitive, RFC 9110 §11.1).
fn credentials(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

fn challenge(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wacenter\", charset=\"UTF-8\""),
    );
    response
}
