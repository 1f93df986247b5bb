//! Basic auth on the admin routes (`APP_BASIC_AUTH`), and the routes that must stay open.

use base64::Engine;
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

/// Every admin route with a request that would succeed with the right credentials.
fn admin_requests(h: &Harness) -> Vec<(String, reqwest::RequestBuilder)> {
    otomax_routes()
        .into_iter()
        .map(|(method, path, body)| {
            let mut req = h.http.request(method.clone(), h.url(path));
            if let Some(body) = body {
                req = req.json(&body);
            }
            (format!("{method} {path}"), req)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn not_configured_locks_admin_routes_and_says_how_to_open_them() {
    let h = Harness::start_with(|s| s.app_basic_auth = Default::default()).await;
    for (label, req) in admin_requests(&h) {
        // Even "right-looking" credentials: there are none to match.
        let a = answer(req.basic_auth(ADMIN_USER, Some(ADMIN_PASS))).await;
        a.expect(401, "UNAUTHORIZED");
        assert!(
            a.message().contains("APP_BASIC_AUTH=user:password"),
            "{label}: {}",
            a.message()
        );
    }
    assert_eq!(
        h.sim_stats().await["requests"],
        json!(0),
        "nothing reached OtomaX"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_wrong_credentials_are_401_with_a_challenge() {
    let h = Harness::start().await;
    let wrong: [(&str, Option<&str>); 4] = [
        (ADMIN_USER, Some("wrong")),
        ("someone", Some(ADMIN_PASS)),
        (ADMIN_USER, None),
        ("", Some("")),
    ];
    for (label, req) in admin_requests(&h) {
        let a = answer(req).await;
        a.expect(401, "UNAUTHORIZED")
            .mentions(&["credentials required"]);
        let challenge = a.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Basic realm="),
            "{label}: {challenge}"
        );
    }
    for (user, pass) in wrong {
        let a = answer(
            h.http
                .get(h.url("/otomax/balance/R001"))
                .basic_auth(user, pass),
        )
        .await;
        a.expect(401, "UNAUTHORIZED")
            .mentions(&["wrong user or password"]);
        assert!(a.headers.contains_key("www-authenticate"));
    }
    // Not basic auth at all, or not base64.
    for header in ["Bearer abc", "Basic !!!", "Basic"] {
        answer(
            h.http
                .get(h.url("/otomax/balance/R001"))
                .header("authorization", header),
        )
        .await
        .expect(401, "UNAUTHORIZED");
    }
    assert_eq!(
        h.sim_stats().await["requests"],
        json!(0),
        "nothing reached OtomaX"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn right_credentials_open_every_admin_route() {
    let h = Harness::start().await;
    for (label, req) in admin_requests(&h) {
        let a = answer(req.basic_auth(ADMIN_USER, Some(ADMIN_PASS))).await;
        assert_eq!(a.status, 200, "{label}: {}", a.body);
    }
    // The scheme name is case-insensitive.
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN_USER}:{ADMIN_PASS}"));
    answer(
        h.http
            .get(h.url("/otomax/balance/R001"))
            .header("authorization", format!("BASIC {token}")),
    )
    .await
    .expect(200, "SUCCESS");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_users_each_with_their_own_password() {
    let h =
        Harness::start_with(|s| s.app_basic_auth = wacenter_config::Secret::new("a:1,b:2")).await;
    let get = |user: &'static str, pass: &'static str| {
        answer(
            h.http
                .get(h.url("/otomax/balance/R001"))
                .basic_auth(user, Some(pass)),
        )
    };
    assert_eq!(get("a", "1").await.status, 200);
    assert_eq!(get("b", "2").await.status, 200);
    assert_eq!(get("a", "2").await.status, 401, "b's password is not a's");
    assert_eq!(get("b", "1").await.status, 401);
    assert_eq!(get("c", "3").await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_callback_ops_and_openapi_need_no_basic_auth() {
    let h = Harness::start().await;
    for path in [
        "/otomax/health",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        let r = h.get_anonymous(path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    }
    // The callback takes its own secret instead of basic auth, and no basic-auth challenge.
    let row = json!({"kode": 1, "penerima": RESELLER_PHONE, "pesan": "hi"});
    let a = answer(
        h.http
            .post(h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}")))
            .json(&row),
    )
    .await;
    a.expect(200, "SUCCESS");
    let a = answer(h.http.post(h.url("/otomax/callback")).json(&row)).await;
    a.expect(401, "UNAUTHORIZED").mentions(&["callback secret"]);
    assert!(!a.headers.contains_key("www-authenticate"));
    // Admin credentials are no callback secret.
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
            .json(&row),
    )
    .await
    .expect(401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_is_checked_before_the_body_is_read() {
    let h = Harness::start().await;
    // A malformed body without credentials is refused for the credentials, not the body.
    answer(
        h.http
            .request(Method::POST, h.url("/otomax/insert-inbox"))
            .body("{not json"),
    )
    .await
    .expect(401, "UNAUTHORIZED");
}
