//! Hostile callbacks: whatever OtomaX (or anyone holding the secret) posts, the answer is the
//! envelope with 200 (queued or skipped), 400 or 413, never a 5xx and never a panic.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::harness::{Harness, CALLBACK_SECRET};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| runtime().block_on(Harness::start()))
}

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

fn post(body: Vec<u8>, content_type: &'static str) -> (u16, Value) {
    let h = harness();
    runtime().block_on(async {
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_row(kode in scalar(), penerima in scalar(), pengirim in scalar(), tipe in scalar(), pesan in scalar(), extra in scalar()) {
        let row = json!({"kode": kode, "penerima": penerima, "pengirim": pengirim, "tipe_penerima": tipe, "pesan": pesan, "x": extra});
        let (status, body) = post(serde_json::to_vec(&row).unwrap(), "application/json");
        prop_assert!(matches!(status, 200 | 400), "status {status} for {row}: {body}");
        prop_assert!(body["code"].is_string() && body["message"].is_string(), "envelope: {body}");
    }

    #[test]
    fn any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300), form in any::<bool>()) {
        let ct = if form { "application/x-www-form-urlencoded" } else { "application/json" };
        let (status, body) = post(bytes, ct);
        prop_assert!(matches!(status, 200 | 400 | 413), "status {status}: {body}");
        prop_assert!(body["code"].is_string(), "envelope: {body}");
    }
}
