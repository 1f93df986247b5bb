//! Bad input gets an envelope with a status that tells what is wrong: 400 for malformed JSON,
//! wrong types, missing fields and invalid values; 413 for oversized bodies; 404 and 405 for
//! unknown routes and methods. Nothing reaches OtomaX.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

/// The POST routes that read a JSON body.
const JSON_ROUTES: [&str; 3] = [
    "/otomax/insert-inbox",
    "/otomax/test",
    "/otomax/set-callback",
];

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_is_400() {
    let h = Harness::start().await;
    for path in JSON_ROUTES {
        for body in ["{", "{\"pesan\": }", "nul", "\u{0}", "{\"a\":1}}"] {
            h.post_raw(path, body)
                .await
                .expect(400, "VALIDATION_ERROR")
                .mentions(&["invalid JSON body"]);
        }
    }
    answer(
        h.http
            .post(h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}")))
            .header("content-type", "application/json")
            .body("{\"kode\":"),
    )
    .await
    .expect(400, "VALIDATION_ERROR")
    .mentions(&["invalid JSON body"]);
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_are_400_naming_the_problem() {
    let h = Harness::start().await;
    let cases = [
        (
            "/otomax/insert-inbox",
            json!({"pesan": 5, "pengirim": RESELLER_PHONE}),
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": ["628"]}),
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": RESELLER_PHONE, "kode_terminal": "one"}),
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": RESELLER_PHONE, "kode_terminal": 1.5}),
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": RESELLER_PHONE, "kode_reseller": 1}),
        ),
        // serde would fill a struct from an array by position; the API takes objects only.
        ("/otomax/insert-inbox", json!(["S.1234", RESELLER_PHONE])),
        ("/otomax/test", json!({"phone": 628123})),
        ("/otomax/test", json!("628123")),
        (
            "/otomax/set-callback",
            json!({"url": {"href": "https://x"}}),
        ),
        ("/otomax/set-callback", json!([])),
    ];
    for (path, body) in cases {
        let a = h.post(path, &body).await;
        a.expect(400, "VALIDATION_ERROR");
        assert!(
            a.message().contains("invalid type")
                || a.message().contains("invalid value")
                || a.message().contains("expected an object"),
            "{path} {body}: {}",
            a.message()
        );
    }
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_fields_are_400_naming_the_field() {
    let h = Harness::start().await;
    let cases = [
        (
            "/otomax/insert-inbox",
            json!({"pengirim": RESELLER_PHONE}),
            "pesan",
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "S.1234"}),
            "pengirim",
        ),
        ("/otomax/insert-inbox", json!({}), "pesan"),
        ("/otomax/test", json!({}), "phone"),
    ];
    for (path, body, field) in cases {
        h.post(path, &body)
            .await
            .expect(400, "VALIDATION_ERROR")
            .mentions(&["missing field", field]);
    }
    // An empty body is missing everything.
    h.post_raw("/otomax/test", "")
        .await
        .expect(400, "VALIDATION_ERROR");
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_are_400() {
    let h = Harness::start().await;
    let cases = [
        (
            "/otomax/insert-inbox",
            json!({"pesan": "  ", "pengirim": RESELLER_PHONE}),
            "pesan is empty",
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": "budi"}),
            "not a phone number",
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": "123@g.us"}),
            "not a phone number",
        ),
        (
            "/otomax/insert-inbox",
            json!({"pesan": "x", "pengirim": ""}),
            "not a phone number",
        ),
        ("/otomax/test", json!({"phone": " "}), "phone is empty"),
    ];
    for (path, body, why) in cases {
        h.post(path, &body)
            .await
            .expect(400, "VALIDATION_ERROR")
            .mentions(&[why]);
    }
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_or_unusable_reseller_codes_are_400() {
    let h = Harness::start().await;
    let long = "R".repeat(65);
    for route in [
        "/otomax/reseller/{}",
        "/otomax/balance/{}",
        "/otomax/reseller/{}/balance",
    ] {
        for (code, why) in [
            ("%20", "empty"),
            ("%09%20", "empty"),
            (long.as_str(), "at most 64"),
            ("R%0A1", "printable"),
            ("%FF%FE", "reseller code"),
        ] {
            let path = route.replace("{}", code);
            let a = h.get(&path).await;
            a.expect(400, "VALIDATION_ERROR");
            assert!(a.message().contains(why), "{path}: {}", a.message());
        }
    }
    // 64 characters of several bytes each are still 64 characters.
    let wide = "%C3%A9".repeat(64);
    let a = h.get(&format!("/otomax/balance/{wide}")).await;
    assert_eq!(
        a.status, 502,
        "reaches OtomaX, which does not know it: {}",
        a.body
    );
    assert_eq!(
        h.sim_calls("getsaldors").await,
        1,
        "only the valid code reached OtomaX"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reseller_route_without_a_code_is_an_unknown_route() {
    let h = Harness::start().await;
    for path in ["/otomax/reseller/", "/otomax/balance/"] {
        h.get(path).await.expect(404, "NOT_FOUND");
    }
    // An empty segment in the middle is still this route, with an empty code.
    h.get("/otomax/reseller//balance")
        .await
        .expect(400, "VALIDATION_ERROR")
        .mentions(&["reseller code is empty"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_one_mebibyte_are_413() {
    let h = Harness::start().await;
    let limit = wacenter_callback::BODY_LIMIT;
    let big = format!("{{\"pesan\":\"{}\"}}", "a".repeat(limit));
    for path in JSON_ROUTES {
        h.post_raw(path, big.clone())
            .await
            .expect(413, "PAYLOAD_TOO_LARGE")
            .mentions(&["1048576"]);
    }
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .header("content-type", "application/json")
            .body(big),
    )
    .await
    .expect(413, "PAYLOAD_TOO_LARGE");
    // Exactly at the limit is read (and then judged on its content).
    let at_limit = format!("{{\"phone\":\"{}\"}}", " ".repeat(limit - 12));
    assert_eq!(at_limit.len(), limit);
    h.post_raw("/otomax/test", at_limit)
        .await
        .expect(400, "VALIDATION_ERROR")
        .mentions(&["phone is empty"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_are_404_and_wrong_methods_405_both_enveloped() {
    let h = Harness::start().await;
    for path in [
        "/",
        "/nope",
        "/otomax",
        "/otomax/unknown",
        "/otomax/health/x",
        "/openapi.yaml",
    ] {
        h.get(path)
            .await
            .expect(404, "NOT_FOUND")
            .mentions(&["/openapi.json"]);
    }
    h.post("/nope", &json!({})).await.expect(404, "NOT_FOUND");
    for (method, path) in [
        (Method::GET, "/otomax/insert-inbox"),
        (Method::DELETE, "/otomax/balance/R001"),
        (Method::PUT, "/otomax/set-callback"),
        (Method::POST, "/otomax/get-callback"),
        (Method::GET, "/otomax/callback"),
        (Method::POST, "/otomax/health"),
        (Method::POST, "/openapi.json"),
        (Method::POST, "/healthz"),
    ] {
        let a = h.admin(method.clone(), path, None).await;
        a.expect(405, "METHOD_NOT_ALLOWED");
        assert!(
            a.headers.contains_key("allow"),
            "{method} {path}: no Allow header"
        );
    }
}
