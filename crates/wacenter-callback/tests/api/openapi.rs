//! The OpenAPI document: generated from the code, committed as `proto/openapi.json`, served at
//! `/openapi.json`, and in agreement with the router.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use wacenter_callback::openapi::document_json;

use crate::harness::*;

const REFRESH: &str = "run `UPDATE_OPENAPI=1 cargo test -p wacenter-callback` to refresh";

fn document() -> Value {
    serde_json::from_str(&document_json()).unwrap()
}

/// `proto/openapi.json` is the generated document byte for byte; `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn committed_document_is_current() {
    let path = wacenter_test_support::workspace_root().join("proto/openapi.json");
    let generated = document_json();
    if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {REFRESH}", path.display()));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "proto/openapi.json differs from the document the code generates (first at line {line}); {REFRESH}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn served_document_is_the_generated_one() {
    let h = Harness::start_with(|s| s.app_basic_auth = Default::default()).await;
    let r = h.get_anonymous("/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().await.unwrap(), document_json());
}

/// Every documented operation, as `METHOD path`.
fn operations(doc: &Value) -> BTreeSet<String> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    ops
}

#[test]
fn every_route_is_documented() {
    let expected: BTreeSet<String> = [
        "POST /otomax/insert-inbox",
        "POST /otomax/set-callback",
        "GET /otomax/get-callback",
        "POST /otomax/test",
        "GET /otomax/reseller/{code}",
        "GET /otomax/balance/{code}",
        "GET /otomax/reseller/{code}/balance",
        "POST /otomax/callback",
        "POST /otomax/callback/{name}",
        "GET /otomax/health",
        "GET /otomax/trail",
        "GET /otomax/trail/live",
        "GET /otomax/dead-letters",
        "POST /otomax/dead-letters/replay",
        "GET /otomax/figures",
        "GET /otomax/whatsapp",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(operations(&document()), expected);
}

/// No documented operation hits the router's 404 / 405 fallbacks.
#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_routed() {
    let h = Harness::start().await;
    for op in operations(&document()) {
        let (method, path) = op.split_once(' ').unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = h
            .http
            .request(
                method,
                h.url(&path.replace("{code}", RESELLER_CODE).replace("{name}", "default")),
            )
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&json!({"phone": "1", "pesan": "x", "pengirim": RESELLER_PHONE, "penerima": RESELLER_PHONE}))
            .send()
            .await
            .unwrap();
        assert!(
            r.status() != 404 && r.status() != 405,
            "{op}: {} {}",
            r.status(),
            r.text().await.unwrap()
        );
    }
}

/// The failures each kind of route can answer are documented, with the error envelope.
#[test]
fn operations_document_their_failures() {
    let doc = document();
    let error_ref = json!({"$ref": "#/components/schemas/ErrorEnvelope"});
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let label = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            assert!(has("200"), "{label}: no 200");
            let admin = op["security"] == json!([{"basic_auth": []}]);
            assert_eq!(
                admin,
                path.starts_with("/otomax/")
                    && !path.ends_with("/callback")
                    && !path.starts_with("/otomax/callback/")
                    && !path.ends_with("/health"),
                "{label}: basic auth"
            );
            if admin {
                for status in ["401", "503"] {
                    assert!(has(status), "{label}: no {status}");
                }
                // Only the routes that call OtomaX can fail because of it.
                let calls_otomax = op["tags"] == json!(["otomax"]);
                assert_eq!(has("502"), calls_otomax, "{label}: 502 iff it calls OtomaX");
                if method == "post" {
                    assert!(has("400") && has("413"), "{label}: no 400/413");
                    assert!(op["requestBody"].is_object(), "{label}: no request body");
                }
                if path.contains("{code}") {
                    assert!(has("400"), "{label}: no 400 for a bad code");
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"];
                    let ops = path.starts_with("/readyz") || path == "/otomax/health";
                    assert!(
                        *schema == error_ref || ops,
                        "{label} {status}: not the error envelope: {schema}"
                    );
                }
            }
        }
    }
    let callback = &doc["paths"]["/otomax/callback"]["post"];
    assert_eq!(
        callback["security"],
        json!([{"callback_secret_query": []}, {"callback_secret_header": []}])
    );
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic_auth"]["scheme"], json!("basic"));
    assert_eq!(schemes["callback_secret_query"]["in"], json!("query"));
    assert_eq!(schemes["callback_secret_query"]["name"], json!("secret"));
    assert_eq!(
        schemes["callback_secret_header"]["name"],
        json!("X-Callback-Secret")
    );
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
        "NOT_FOUND",
        "PAYLOAD_TOO_LARGE",
        "EXTERNAL_API_ERROR",
        "UNAVAILABLE",
    ] {
        assert!(
            codes.as_array().unwrap().contains(&json!(code)),
            "{code} not in {codes}"
        );
    }
}
