//! What the services really publish matches `proto/`: every message seen on `wa.>` during both
//! flows (and a dead letter) validates against the JSON Schema for its subject, and carries the
//! headers the contract names.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::stack::*;

#[tokio::test(flavor = "multi_thread")]
async fn published_messages_match_the_schemas() {
    let stack = Stack::start().await;
    let bus = stack.bus().await;
    let mut seen = bus.client().subscribe("wa.>").await.unwrap();
    bus.client().flush().await.unwrap();

    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await; // inbound + auto-reply
    stack
        .callback(&json!({"kode": 31337, "penerima": RESELLER_PHONE, "pesan": "SUKSES"}))
        .await; // outbox
    let old = Utc::now() - chrono::Duration::seconds(300);
    stack
        .post_gowa(&gowa_message("CONTRACT-OLD", RESELLER_PHONE, "S.1234", old))
        .await; // dead letter
    stack.wait_sent(2).await;
    stack.wait_dead_letters(1).await;

    let mut by_subject: std::collections::BTreeMap<String, usize> = Default::default();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), seen.next()).await {
        let subject = msg.subject.to_string();
        let schema_text = wacenter_proto::schemas::for_subject(&subject)
            .unwrap_or_else(|| panic!("{subject} is not in the contract"));
        let schema: Value = serde_json::from_str(schema_text).unwrap();
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let doc: Value = serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|e| panic!("{subject}: not JSON: {e}"));
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{subject} payload breaks its schema: {errors:?}\n{doc}"
        );
        // Trail steps are records, not work: no dedupe id, no trace context (proto/README.md).
        let label = if subject.starts_with("wa.trail.p.") {
            "wa.trail.p.<phone>".to_string()
        } else if subject.starts_with("wa.trail.k.") {
            "wa.trail.k.<hash>".to_string()
        } else {
            subject.clone()
        };
        if label != subject {
            *by_subject.entry(label).or_default() += 1;
            continue;
        }
        let headers = msg
            .headers
            .as_ref()
            .unwrap_or_else(|| panic!("{subject} without headers"));
        assert!(
            headers.get("Nats-Msg-Id").is_some(),
            "{subject} without Nats-Msg-Id"
        );
        assert!(
            headers.get("traceparent").is_some(),
            "{subject} without traceparent"
        );
        *by_subject.entry(subject).or_default() += 1;
    }
    println!("validated: {by_subject:?}");
    for subject in [
        "wa.trail.p.<phone>",
        "wa.trail.k.<hash>",
        "wa.inbound.gowa",
        "wa.outbound.autoreply",
        "wa.outbound.outbox",
        "wa.deadletter.inbound",
    ] {
        assert!(
            by_subject.contains_key(subject),
            "nothing seen on {subject}: {by_subject:?}"
        );
    }
    stack.stop().await;
}
