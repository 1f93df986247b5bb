//! `GET /otomax/health`: healthy, OtomaX down, NATS down, OtomaX disabled, and the probe cache.

use std::time::Duration;

use serde_json::{json, Value};
use wacenter_test_support::eventually;

use crate::harness::*;

async fn health(h: &Harness) -> Answer {
    answer(h.http.get(h.url("/otomax/health"))).await
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_reports_every_part() {
    let h = Harness::start().await;
    let a = health(&h).await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.message(), "healthy");
    let r = &a.body["results"];
    assert_eq!(r["status"], json!("healthy"), "{r}");
    assert_eq!(r["problems"], json!([]));
    let otomax = &r["otomax"];
    assert_eq!(otomax["enabled"], json!(true), "{otomax}");
    assert_eq!(otomax["reachable"], json!(true), "{otomax}");
    assert!(otomax["latency_ms"].as_f64().unwrap() >= 0.0, "{otomax}");
    assert_eq!(otomax["error"], Value::Null);
    assert!(
        chrono::DateTime::parse_from_rfc3339(otomax["checked_at"].as_str().unwrap()).is_ok(),
        "{otomax}"
    );
    assert!(otomax["last_success_at"].is_string(), "{otomax}");
    assert_eq!(otomax["cached"], json!(false));
    assert_eq!(
        r["nats"],
        json!({"connected": true, "ready": true, "error": null})
    );
    // No forwarder or reply ran against this NATS, so their consumers may not exist yet: a
    // number or null, never an error.
    for consumer in ["forwarder", "reply"] {
        let lag = &r["consumer_lag"][consumer];
        assert!(lag.is_u64() || lag.is_null(), "{consumer}: {lag}");
    }
    assert_eq!(r["dead_letters"], json!(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_are_cached_for_a_few_seconds() {
    let h = Harness::start().await;
    let first = health(&h).await;
    let second = health(&h).await;
    first.expect(200, "SUCCESS");
    second.expect(200, "SUCCESS");
    assert_eq!(
        h.sim_calls("test").await,
        1,
        "two health checks, one Test call"
    );
    assert_eq!(second.body["results"]["otomax"]["cached"], json!(true));
    assert_eq!(
        first.body["results"]["otomax"]["checked_at"],
        second.body["results"]["otomax"]["checked_at"]
    );

    // Simultaneous checks share one probe too.
    let h2 = Harness::start().await;
    let (a, b, c) = tokio::join!(health(&h2), health(&h2), health(&h2));
    for x in [a, b, c] {
        x.expect(200, "SUCCESS");
    }
    assert_eq!(h2.sim_calls("test").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_down_is_503_with_the_reason() {
    let h = Harness::start().await;
    h.otomax_down().await;
    let a = health(&h).await;
    a.expect(503, "UNAVAILABLE")
        .mentions(&["unhealthy", "OtomaX unreachable", "HTTP 503"]);
    let r = &a.body["results"];
    assert_eq!(r["status"], json!("unhealthy"));
    assert_eq!(r["otomax"]["reachable"], json!(false));
    assert!(
        r["otomax"]["error"].as_str().unwrap().contains("HTTP 503"),
        "{r}"
    );
    assert!(r["otomax"]["latency_ms"].is_null());
    assert_eq!(r["problems"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["nats"]["connected"], json!(true), "only OtomaX is down");
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_unreachable_is_503() {
    let url = format!("http://127.0.0.1:{}/", wacenter_test_support::free_port());
    let h = Harness::start_with(|s| s.otomax_api_url = url).await;
    health(&h)
        .await
        .expect(503, "UNAVAILABLE")
        .mentions(&["cannot connect to OtomaX", "OTOMAX_API_URL"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_is_503_and_callbacks_are_refused_for_retry() {
    let mut h = Harness::start().await;
    health(&h).await.expect(200, "SUCCESS");
    h.nats.kill();
    let a = eventually(
        Duration::from_secs(15),
        "health to see NATS down",
        || async {
            let a = health(&h).await;
            (a.status == 503).then_some(a)
        },
    )
    .await;
    a.expect(503, "UNAVAILABLE").mentions(&["NATS"]);
    let r = &a.body["results"];
    assert_eq!(r["nats"]["connected"], json!(false), "{r}");
    assert_eq!(r["nats"]["ready"], json!(false), "{r}");
    assert_eq!(r["otomax"]["reachable"], json!(true), "OtomaX is fine: {r}");
    assert_eq!(r["dead_letters"], Value::Null);

    let ready = h.get_anonymous("/readyz").await;
    assert_eq!(ready.status(), 503);

    let row = json!({"kode": 7, "penerima": RESELLER_PHONE, "pesan": "hi"});
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&row),
    )
    .await
    .expect(503, "UNAVAILABLE")
    .mentions(&["NATS", "retry"]);

    // And healthy again once NATS is back.
    h.nats.restart();
    eventually(Duration::from_secs(20), "health to recover", || async {
        (health(&h).await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_disabled_is_not_a_problem() {
    let h = Harness::start_with(|s| s.otomax_enabled = false).await;
    let a = health(&h).await;
    a.expect(200, "SUCCESS");
    let otomax = &a.body["results"]["otomax"];
    assert_eq!(otomax["enabled"], json!(false));
    assert!(otomax["reachable"].is_null() && otomax["checked_at"].is_null());
    assert_eq!(h.sim_stats().await["requests"], json!(0));
}
