//! The `/otomax/*` admin routes against the simulator (success and OtomaX refusing), against an
//! OtomaX that is down, unreachable, or answers garbage, and with OtomaX disabled.

use reqwest::Method;
use serde_json::{json, Value};
use wacenter_test_support::free_port;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn insert_inbox_sends_what_a_whatsapp_message_would_and_returns_otomax_answer() {
    let h = Harness::start_with(|s| s.otomax_default_reseller = "DEFAULT1".into()).await;
    let a = h
        .post(
            "/otomax/insert-inbox",
            &json!({"pesan": "S.1234", "pengirim": "0812-3456-789"}),
        )
        .await;
    a.expect(200, "SUCCESS");
    let results = &a.body["results"];
    // OtomaX's `result` object itself, not its `{ok, result}` envelope nested inside ours.
    assert!(
        results.get("ok").is_none() && results.get("result").is_none(),
        "{results}"
    );
    assert_eq!(results["status"], json!(21), "{results}");
    assert!(results["kode_inbox"].is_i64(), "{results}");
    assert_eq!(results["statusDesc"], json!("Sukses Masuk Outbox"));
    assert_eq!(
        results["pesan"],
        json!("Saldo Toko Satu Rp 750.000"),
        "OtomaX's reply text is passed through"
    );
    // The request that was signed and sent is shown back.
    assert_eq!(results["request"]["pengirim"], json!(RESELLER_PHONE));

    let inbox = h.sim_inbox().await;
    assert_eq!(inbox.len(), 1);
    let sent = &inbox[0]["body"];
    assert_eq!(sent["pesan"], json!("S.1234"));
    assert_eq!(
        sent["pengirim"],
        json!(RESELLER_PHONE),
        "national 08… became 628…"
    );
    assert_eq!(sent["tipe_pengirim"], json!("W"));
    assert_eq!(sent["kode_terminal"], json!(1));
    assert_eq!(sent["kode_reseller"], json!("DEFAULT1"));
    assert!(sent["_exp"].is_string(), "{sent}");

    // Explicit values win over the defaults (7.0 is the integer 7, as in JSON Schema); a blank
    // reseller code means the default.
    h.post(
        "/otomax/insert-inbox",
        &json!({"pesan": "halo", "pengirim": "628555", "kode_reseller": "R9", "kode_terminal": 7.0}),
    )
    .await
    .expect(200, "SUCCESS");
    h.post(
        "/otomax/insert-inbox",
        &json!({"pesan": "halo", "pengirim": "628555", "kode_reseller": "  ", "kode_terminal": null}),
    )
    .await
    .expect(200, "SUCCESS");
    let inbox = h.sim_inbox().await;
    assert_eq!(inbox[1]["body"]["kode_reseller"], json!("R9"));
    assert_eq!(inbox[1]["body"]["kode_terminal"], json!(7));
    assert_eq!(inbox[2]["body"]["kode_reseller"], json!("DEFAULT1"));
    assert_eq!(inbox[2]["body"]["kode_terminal"], json!(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_inbox_from_a_stranger_is_otomax_status_41_not_an_error() {
    let h = Harness::start().await;
    let a = h
        .post(
            "/otomax/insert-inbox",
            &json!({"pesan": "halo", "pengirim": "628777000999"}),
        )
        .await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.body["results"]["status"], json!(41));
    assert_eq!(a.body["results"]["statusDesc"], json!("Bukan Reseller"));
}

/// An OtomaX stand-in that answers every call with `answer`, to show what the simulator does not
/// send (unmodelled fields) or should never send (HTML).
async fn fake_otomax(status: u16, content_type: &'static str, answer: String) -> String {
    let router = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                answer,
            )
        }
    });
    let addr = wacenter_test_support::serve(router).await;
    format!("http://{addr}/")
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_inbox_passes_fields_wacenter_does_not_model_through() {
    let otomax = fake_otomax(
        200,
        "application/json",
        json!({
            "ok": true,
            "result": {"kode_inbox": 5, "status": 21, "statusDesc": "Sukses", "pesan": "ok",
                       "saldo_akhir": 12345, "antrian": {"posisi": 3}},
            "server": "otomax-node-2"
        })
        .to_string(),
    )
    .await;
    let h = Harness::start_with(|s| s.otomax_api_url = otomax).await;
    let a = h
        .post(
            "/otomax/insert-inbox",
            &json!({"pesan": "S.1234", "pengirim": RESELLER_PHONE}),
        )
        .await;
    a.expect(200, "SUCCESS");
    let results = &a.body["results"];
    assert_eq!(results["saldo_akhir"], json!(12345), "{results}");
    assert_eq!(results["antrian"], json!({"posisi": 3}), "{results}");
    assert_eq!(results["server"], json!("otomax-node-2"), "{results}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reseller_and_both_balance_routes() {
    let h = Harness::start().await;
    let a = h.get("/otomax/reseller/R001").await;
    a.expect(200, "SUCCESS");
    let reseller = &a.body["results"];
    assert_eq!(reseller["kode"], json!(RESELLER_CODE), "{reseller}");
    assert_eq!(reseller["nama"], json!("Toko Satu"));
    assert_eq!(reseller["hp"], json!(RESELLER_PHONE));

    for path in ["/otomax/balance/R001", "/otomax/reseller/R001/balance"] {
        let a = h.get(path).await;
        a.expect(200, "SUCCESS");
        assert_eq!(
            a.body["results"]["saldo"],
            json!(RESELLER_SALDO),
            "{path}: {}",
            a.body
        );
    }
    // Codes are trimmed and may need percent-encoding.
    h.get("/otomax/balance/%20R001%20")
        .await
        .expect(200, "SUCCESS");
    assert_eq!(h.sim_calls("getsaldors").await, 3);
    assert_eq!(h.sim_calls("getrs").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_refusing_is_502_with_otomax_reason() {
    let h = Harness::start().await;
    for path in [
        "/otomax/reseller/NOPE",
        "/otomax/balance/NOPE",
        "/otomax/reseller/NOPE/balance",
    ] {
        h.get(path)
            .await
            .expect(502, "EXTERNAL_API_ERROR")
            .mentions(&["OtomaX refused", "Reseller NOPE tidak ditemukan"]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_down_is_502_on_every_route() {
    let h = Harness::start().await;
    h.otomax_down().await;
    for (label, a) in call_every_otomax_route(&h).await {
        a.expect(502, "EXTERNAL_API_ERROR");
        assert!(
            a.message().contains("HTTP 503") && a.message().contains("try again later"),
            "{label}: {}",
            a.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_unreachable_is_502_naming_the_setting_to_check() {
    let url = format!("http://127.0.0.1:{}/", free_port());
    let h = Harness::start_with(|s| s.otomax_api_url = url).await;
    for (label, a) in call_every_otomax_route(&h).await {
        a.expect(502, "EXTERNAL_API_ERROR");
        assert!(
            a.message().contains("cannot connect to OtomaX")
                && a.message().contains("OTOMAX_API_URL"),
            "{label}: {}",
            a.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_answering_html_is_502_not_a_crash() {
    let otomax = fake_otomax(
        200,
        "text/html",
        "<html><body><h1>It works!</h1></body></html>".into(),
    )
    .await;
    let h = Harness::start_with(|s| s.otomax_api_url = otomax).await;
    for (label, a) in call_every_otomax_route(&h).await {
        a.expect(502, "EXTERNAL_API_ERROR");
        assert!(
            a.message().contains("not its JSON envelope")
                && a.message().contains("It works!")
                && a.message().contains("OTOMAX_API_URL"),
            "{label}: {}",
            a.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_answering_json_without_its_envelope_is_502() {
    let otomax = fake_otomax(200, "application/json", r#"{"status":"fine"}"#.into()).await;
    let h = Harness::start_with(|s| s.otomax_api_url = otomax).await;
    h.get("/otomax/get-callback")
        .await
        .expect(502, "EXTERNAL_API_ERROR")
        .mentions(&["no boolean \"ok\""]);
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_rejecting_the_credentials_is_502_naming_the_settings() {
    let h = Harness::start_with(|s| s.otomax_app_key = wacenter_config::Secret::new("wrong")).await;
    h.get("/otomax/get-callback")
        .await
        .expect(502, "EXTERNAL_API_ERROR")
        .mentions(&["OTOMAX_APP_KEY"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_disabled_is_503_on_every_route() {
    let h = Harness::start_with(|s| s.otomax_enabled = false).await;
    for (label, a) in call_every_otomax_route(&h).await {
        a.expect(503, "UNAVAILABLE");
        assert!(
            a.message().contains("OTOMAX_ENABLED=false"),
            "{label}: {}",
            a.message()
        );
    }
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn set_callback_without_body_registers_this_service_with_its_secret() {
    let h = Harness::start().await;
    let expected = format!("{PUBLIC_URL}/otomax/callback?secret={CALLBACK_SECRET}");
    // No body at all, a JSON null, an empty object and a null url all mean "this service".
    for body in [
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!({"url": null})),
    ] {
        let a = h
            .admin(Method::POST, "/otomax/set-callback", body.as_ref())
            .await;
        a.expect(200, "SUCCESS");
        assert_eq!(h.sim_stats().await["callback_url"], json!(expected));
        let shown = a.body.to_string();
        assert!(!shown.contains(CALLBACK_SECRET), "secret shown: {shown}");
        assert_eq!(
            a.body["results"]["url"],
            json!(format!("{PUBLIC_URL}/otomax/callback?secret=redacted"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_callback_with_a_url_registers_it() {
    let h = Harness::start().await;
    let url = "http://10.0.0.5:3000/otomax/callback?secret=abc";
    h.post("/otomax/set-callback", &json!({"url": url}))
        .await
        .expect(200, "SUCCESS");
    assert_eq!(h.sim_stats().await["callback_url"], json!(url));
}

#[tokio::test(flavor = "multi_thread")]
async fn set_callback_refuses_what_is_not_an_http_url() {
    let h = Harness::start().await;
    for url in [
        json!("not a url"),
        json!("ftp://files.example.com/cb"),
        json!("mailto:ops@example.com"),
        json!("/otomax/callback"),
        json!(""),
    ] {
        h.post("/otomax/set-callback", &json!({ "url": url }))
            .await
            .expect(400, "VALIDATION_ERROR")
            .mentions(&["is not an http(s) URL"]);
    }
    h.post("/otomax/set-callback", &json!({"url": 42}))
        .await
        .expect(400, "VALIDATION_ERROR")
        .mentions(&["invalid type"]);
    assert_eq!(h.sim_calls("setoutboxcallback").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_callback_without_body_or_public_url_says_what_to_do() {
    let h = Harness::start_with(|s| s.public_url = String::new()).await;
    h.admin(Method::POST, "/otomax/set-callback", None)
        .await
        .expect(400, "VALIDATION_ERROR")
        .mentions(&["PUBLIC_URL", "\"url\""]);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_callback_redacts_the_secret() {
    let h = Harness::start().await;
    h.admin(Method::POST, "/otomax/set-callback", None)
        .await
        .expect(200, "SUCCESS");
    let a = h.get("/otomax/get-callback").await;
    a.expect(200, "SUCCESS");
    assert_eq!(
        a.body["results"]["url"],
        json!(format!("{PUBLIC_URL}/otomax/callback?secret=redacted"))
    );
    assert!(!a.body.to_string().contains(CALLBACK_SECRET), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_route_returns_otomax_answer_and_round_trip_time() {
    let h = Harness::start().await;
    let a = h
        .post("/otomax/test", &json!({"phone": " 6285219898489 "}))
        .await;
    a.expect(200, "SUCCESS").mentions(&["OtomaX answered in"]);
    assert_eq!(a.body["results"]["phone"], json!("6285219898489"));
    let rtt = a.body["results"]["round_trip_ms"].as_f64().unwrap();
    assert!(rtt >= 0.0, "{rtt}");

    // The time is OtomaX's: a slow OtomaX shows.
    h.sim_faults(json!({"latency_ms": 300})).await;
    let a = h.post("/otomax/test", &json!({"phone": "1"})).await;
    a.expect(200, "SUCCESS");
    let rtt: Value = a.body["results"]["round_trip_ms"].clone();
    assert!(rtt.as_f64().unwrap() >= 300.0, "{rtt}");
}
