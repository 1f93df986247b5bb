//! Ingress against a real nats-server: its router driven in-process (`oneshot`), what it
//! published read back from JetStream.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use wacenter_bus::{Bus, Topology};
use wacenter_config::IngressConfig;
use wacenter_ingress::Ingress;
use wacenter_proto::{names, DeadLetter, DeadLetterReason, InboundMessage};
use wacenter_sim::whatsapp::Incoming;
use wacenter_test_support::NatsServer;
use wacenter_whatsapp::{sign_hub, HUB_SIGNATURE_HEADER};

use wacenter_sim::demo::WEBHOOK_SECRET as SECRET;
const DEVICE: &str = "628111222333@s.whatsapp.net";

struct World {
    nats: NatsServer,
    bus: Bus,
    ingress: Ingress,
}

async fn world() -> World {
    let nats = NatsServer::start();
    let settings = wacenter_sim::demo::settings(&nats.url());
    let config = IngressConfig::from_settings(&settings).unwrap();
    let bus = Bus::connect(&nats.url(), "ingress-test", Topology::default())
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    let ingress = Ingress::new(&config, bus.clone());
    World { nats, bus, ingress }
}

fn gowa_message(id: &str, from: &str, text: &str) -> Vec<u8> {
    let incoming = Incoming {
        from: from.into(),
        text: text.into(),
        ..Default::default()
    };
    serde_json::to_vec(&wacenter_sim::whatsapp::gowa_message(
        DEVICE, id, from, &incoming,
    ))
    .unwrap()
}

fn signed(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header(HUB_SIGNATURE_HEADER, sign_hub(SECRET.as_bytes(), &body))
        .body(Body::from(body))
        .unwrap()
}

async fn call(world: &World, request: Request<Body>) -> (StatusCode, Value) {
    let response = world.ingress.router().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn stream_count(world: &World, stream: &str) -> u64 {
    world.bus.stream_messages(stream).await.unwrap()
}

#[tokio::test]
async fn a_signed_message_is_queued_once_with_its_id() {
    let world = world().await;
    let body = gowa_message("3EB0AA01", "628123456789", "S5.08123456789.1234");
    let (status, answer) = call(&world, signed("/webhook/gowa", body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["published"], 1);

    let stream = world
        .bus
        .jetstream()
        .get_stream(names::INBOUND_STREAM)
        .await
        .unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    let msg: InboundMessage = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(msg.sender.as_deref(), Some("628123456789"));
    assert_eq!(msg.account, DEVICE);
    assert_eq!(msg.text, "S5.08123456789.1234");
    let msg_id = stored
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_string());
    assert_eq!(msg_id.as_deref(), Some(msg.dedupe_id().as_str()));

    // The provider retrying the same webhook queues nothing new.
    let (status, answer) = call(&world, signed("/webhook/gowa", body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["duplicates"], 1);
    assert_eq!(stream_count(&world, names::INBOUND_STREAM).await, 1);
}

#[tokio::test]
async fn unsigned_or_disabled_webhooks_are_refused_and_nothing_is_queued() {
    let world = world().await;
    let body = gowa_message("3EB0AA02", "628123456789", "S.1234");
    let unsigned = Request::post("/webhook/gowa")
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, answer) = call(&world, unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("WA_WEBHOOK_SECRET"));

    let mut wrong = signed("/webhook/gowa", body.clone());
    wrong.headers_mut().insert(
        HUB_SIGNATURE_HEADER,
        sign_hub(b"another secret", &body).parse().unwrap(),
    );
    let (status, _) = call(&world, wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Meta is not configured: its webhook is disabled, and says how to enable it.
    let (status, answer) = call(&world, signed("/webhook/meta", b"{}".to_vec())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("META_APP_SECRET"));

    let (status, _) = call(&world, signed("/webhook/waha", body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(stream_count(&world, names::INBOUND_STREAM).await, 0);
}

#[tokio::test]
async fn an_authentic_body_that_cannot_be_read_is_kept_as_a_dead_letter() {
    let world = world().await;
    let body = br#"{"event":"message","payload":{"id":42,"body":["not","text"]}}"#.to_vec();
    let (status, answer) = call(&world, signed("/webhook/gowa", body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["reason"], "unreadable");

    let stream = world
        .bus
        .jetstream()
        .get_stream(names::DEADLETTER_STREAM)
        .await
        .unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    assert_eq!(stored.subject.as_str(), names::DEADLETTER_WEBHOOK);
    let letter: DeadLetter = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(letter.reason, DeadLetterReason::Unreadable);
    assert_eq!(
        letter.payload["body"].as_str().unwrap().as_bytes(),
        &body[..]
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_and_nats_down_gets_503() {
    let mut world = world().await;
    let huge = vec![b' '; wacenter_ingress::BODY_LIMIT + 1];
    let (status, _) = call(&world, signed("/webhook/gowa", huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    world.nats.kill();
    let body = gowa_message("3EB0AA03", "628123456789", "S.1234");
    let (status, answer) = call(&world, signed("/webhook/gowa", body)).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the provider must retry: {answer}"
    );
}
