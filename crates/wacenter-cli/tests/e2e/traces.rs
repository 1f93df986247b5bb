//! One trace runs webhook → ingress → NATS → forwarder → OtomaX → NATS → reply → WhatsApp, and
//! callback → NATS → reply → WhatsApp: the W3C trace context crosses the bus in message headers
//! and reaches both peers in HTTP headers (the simulators record what they received).

use chrono::Utc;
use serde_json::{json, Value};

use crate::stack::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn trace_of(item: &Value) -> String {
    let tp = item["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent recorded in {item}"));
    wacenter_trace::trace_id(tp)
        .unwrap_or_else(|| panic!("malformed traceparent {tp}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trace_crosses_the_bus_to_otomax_and_whatsapp() {
    let stack = Stack::start().await;
    let incoming = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let r = stack
        .post_gowa_traced(
            &gowa_message("TRACE-1", RESELLER_PHONE, "S.1234", Utc::now()),
            Some(&incoming),
        )
        .await;
    assert_eq!(r.status(), 200);
    let inbox = stack.wait_inbox(1).await;
    let sent = stack.wait_sent(1).await;
    assert_eq!(
        trace_of(&inbox[0]),
        TRACE,
        "the InsertInbox call continues the webhook's trace"
    );
    assert_eq!(
        trace_of(&sent[0]),
        TRACE,
        "the auto-reply send continues it too"
    );
    assert_ne!(
        inbox[0]["traceparent"],
        json!(incoming),
        "each hop is its own span"
    );

    // Without an incoming trace, ingress starts one and it still runs end to end.
    stack
        .post_gowa(&gowa_message(
            "TRACE-2",
            RESELLER_PHONE,
            "S.1234",
            Utc::now(),
        ))
        .await;
    let inbox = stack.wait_inbox(2).await;
    let sent = stack.wait_sent(2).await;
    let started = trace_of(&inbox[1]);
    assert_ne!(started, TRACE);
    assert_eq!(trace_of(&sent[1]), started);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trace_of_an_outbox_callback_reaches_whatsapp() {
    let stack = Stack::start().await;
    let incoming = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let r = stack
        .http
        .post(format!("{}/otomax/callback?secret={CALLBACK_SECRET}", stack.callback_url))
        .header("traceparent", &incoming)
        .json(&json!({"kode": 4242, "penerima": RESELLER_PHONE, "tipe_penerima": "W", "pesan": "SUKSES"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = stack.wait_sent(1).await;
    assert_eq!(trace_of(&sent[0]), TRACE);
    stack.stop().await;
}
