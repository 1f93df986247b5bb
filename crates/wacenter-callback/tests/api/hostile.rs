//! Hostile callbacks: whatever OtomaX (or anyone holding the secret) posts, the answer is the
//! envelope with 200 (queued or skipped), 400 or 413, never a 5xx and never a panic.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::harness::{Harness, CALLBACK_SECRET};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,24}".prop_map(Value::String),
        "0?8[0-9]{8,12}".prop_map(Value::String),
        Just(json!("W")),
        Just(json!([1, {"a": null}])),
    ]
}

fn post(
    rt: &tokio::runtime::Runtime,
    h: &Harness,
    body: Vec<u8>,
    content_type: &'static str,
) -> (u16, Value) {
    rt.block_on(async {
        let r = h
            .http
            .post(h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn any_row() {
    let strategy = (scalar(), scalar(), scalar(), scalar(), scalar(), scalar());
    run(
        200,
        strategy,
        |rt, h, (kode, penerima, pengirim, tipe, pesan, extra)| {
            let row = json!({"kode": kode, "penerima": penerima, "pengirim": pengirim, "tipe_penerima": tipe, "pesan": pesan, "x": extra});
            let (status, body) = post(rt, h, serde_json::to_vec(&row).unwrap(), "application/json");
            prop_assert!(
                matches!(status, 200 | 400),
                "status {status} for {row}: {body}"
            );
            prop_assert!(
                body["code"].is_string() && body["message"].is_string(),
                "envelope: {body}"
            );
            Ok(())
        },
    );
}

#[test]
fn any_bytes() {
    let strategy = (prop::collection::vec(any::<u8>(), 0..300), any::<bool>());
    run(200, strategy, |rt, h, (bytes, form)| {
        let ct = if form {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let (status, body) = post(rt, h, bytes, ct);
        prop_assert!(matches!(status, 200 | 400 | 413), "status {status}: {body}");
        prop_assert!(body["code"].is_string(), "envelope: {body}");
        Ok(())
    });
}

/// Runs `cases` cases of `strategy` against one live service started for this test and stopped
/// (with its private nats-server) when the test ends.
fn run<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(&tokio::runtime::Runtime, &Harness, S::Value) -> Result<(), TestCaseError>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let harness = rt.block_on(Harness::start());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&strategy, |value| check(&rt, &harness, value));
    drop(harness);
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
