//! The reply service's handler against a real nats-server, the project's WhatsApp simulator and
//! an in-test OtomaX that records the UpdateStatusOutbox reports it gets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use wacenter_bus::{Bus, Delivery, Disposition, Topology};
use wacenter_config::{ReplyConfig, Settings};
use wacenter_proto::{
    names, DeadLetterReason, OutboundId, OutboundKind, OutboundMessage, PhoneNumber, Provider,
    PAYLOAD_VERSION,
};
use wacenter_reply::Replier;
use wacenter_sim::inspect::SimClient;
use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};
use wacenter_test_support::NatsServer;

const DEVICE: &str = "628111222333@s.whatsapp.net";
const RECIPIENT: &str = "628123456789";

struct World {
    _nats: NatsServer,
    bus: Bus,
    replier: Replier,
    /// The WhatsApp simulator's inspection API.
    whatsapp: SimClient,
    /// `(kode, status)` of every UpdateStatusOutbox OtomaX received.
    reports: Arc<Mutex<Vec<(i64, i64)>>>,
}

/// An OtomaX that accepts every UpdateStatusOutbox and remembers it.
async fn otomax(reports: Arc<Mutex<Vec<(i64, i64)>>>) -> String {
    let router = Router::new().route(
        "/{name}",
        post(move |body: Json<Value>| {
            let reports = reports.clone();
            async move {
                let (kode, status) = (body["kode"].as_i64(), body["status"].as_i64());
                if let (Some(kode), Some(status)) = (kode, status) {
                    reports.lock().unwrap().push((kode, status));
                }
                Json(json!({"ok": true, "result": {"kode": kode, "status": status}}))
            }
        }),
    );
    format!("http://{}/", wacenter_test_support::serve(router).await)
}

async fn world() -> World {
    world_with(|_| {}).await
}

/// A world whose settings `tweak` changes from the demo's.
async fn world_with(tweak: impl FnOnce(&mut Settings)) -> World {
    let nats = NatsServer::start();
    let wa = WhatsappSim::new(WhatsappSimConfig {
        webhook_url: None,
        webhook_secret: "unused".into(),
        device_id: DEVICE.into(),
        other_devices: Vec::new(),
        basic_auth: None,
        echo_sent: false,
    });
    let wa_url = format!("http://{}", wa.spawn(0).await.unwrap());
    let reports = Arc::new(Mutex::new(Vec::new()));
    let mut settings = Settings {
        gowa_url: wa_url.clone(),
        otomax_api_url: otomax(reports.clone()).await,
        ..wacenter_sim::demo::settings(&nats.url())
    };
    tweak(&mut settings);
    let config = ReplyConfig::from_settings(&settings).unwrap();
    let bus = Bus::connect(&nats.url(), "reply-test", Topology::default())
        .await
        .unwrap();
    bus.ensure_topology().await.unwrap();
    let replier = Replier::new(&config, bus.clone()).await.unwrap();
    World {
        _nats: nats,
        bus,
        replier,
        whatsapp: SimClient::new(&wa_url, reqwest::Client::new()),
        reports,
    }
}

impl World {
    /// Queues an outbox row as the callback service would; returns its first delivery.
    async fn queue_outbox_row(&self, kode: i64, text: &str) -> (Delivery, OutboundMessage) {
        let out = OutboundMessage {
            version: PAYLOAD_VERSION,
            id: OutboundId::outbox(kode),
            kind: OutboundKind::Outbox,
            provider: Some(Provider::Gowa),
            account: DEVICE.into(),
            to: PhoneNumber::from_digits(RECIPIENT).unwrap(),
            text: text.into(),
            reply_to: None,
            in_reply_to: None,
            otomax: None,
            outbox_kode: Some(kode),
            kode_inbox: None,
            part: None,
            created_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&out).unwrap();
        let ack = self
            .bus
            .publish(
                names::OUTBOUND_OUTBOX,
                out.id.as_str(),
                wacenter_bus::HeaderMap::new(),
                payload.clone().into(),
            )
            .await
            .unwrap();
        let delivery = Delivery::first(names::OUTBOUND_OUTBOX, payload.into(), ack.sequence);
        (delivery, out)
    }

    async fn handle(&self, d: &Delivery, out: &OutboundMessage) -> Disposition {
        self.replier.clone().handle(d.clone(), out.clone()).await
    }

    /// What the WhatsApp simulator received, oldest first.
    async fn sent(&self) -> Vec<Value> {
        self.whatsapp.list("outbox").await.unwrap()
    }

    async fn faults(&self, faults: Value) {
        self.whatsapp.faults(&faults).await.unwrap();
    }

    fn reports(&self) -> Vec<(i64, i64)> {
        self.reports.lock().unwrap().clone()
    }

    /// Records in the own-messages bucket (provider ids and fingerprints of our sends).
    async fn own_message_records(&self) -> u64 {
        let stream = format!("KV_{}", names::OWN_MESSAGES_BUCKET);
        let mut info = self.bus.jetstream().get_stream(&stream).await.unwrap();
        info.info().await.unwrap().state.messages
    }
}

#[tokio::test]
async fn what_it_sends_is_remembered_only_when_outgoing_forwarding_can_need_it() {
    // Off (the default), no forwarder ever looks for an echo: nothing is written for it.
    let world = world().await;
    let (d, out) = world.queue_outbox_row(9101, "SUKSES S5.08123456789").await;
    assert!(matches!(world.handle(&d, &out).await, Disposition::Ack));
    assert_eq!(world.sent().await.len(), 1);
    assert_eq!(world.own_message_records().await, 0);

    // On, the send's fingerprint (before) and its provider id (after) are both there.
    let world = world_with(|s| s.otomax_forward_outgoing = true).await;
    let (d, out) = world.queue_outbox_row(9102, "SUKSES S5.08123456789").await;
    assert!(matches!(world.handle(&d, &out).await, Disposition::Ack));
    assert_eq!(world.sent().await.len(), 1);
    assert_eq!(world.own_message_records().await, 2);
}

#[tokio::test]
async fn an_outbox_row_is_sent_once_through_its_account_and_reported() {
    let world = world().await;
    let (d, out) = world.queue_outbox_row(9001, "SUKSES S5.08123456789").await;
    assert!(matches!(world.handle(&d, &out).await, Disposition::Ack));
    let sent = world.sent().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["device_id"], DEVICE);
    assert_eq!(sent[0]["body"]["message"], "SUKSES S5.08123456789");
    assert_eq!(world.reports(), vec![(9001, 20)]);

    // OtomaX posting the row again (a redelivery of the same id) sends nothing and reports
    // again, in case OtomaX never heard.
    let mut again = d.clone();
    again.delivered = 2;
    assert!(matches!(world.handle(&again, &out).await, Disposition::Ack));
    assert_eq!(world.sent().await.len(), 1);
    assert_eq!(world.reports(), vec![(9001, 20), (9001, 20)]);
}

#[tokio::test]
async fn a_provider_outage_is_retried_and_then_sent_once() {
    let world = world().await;
    world
        .faults(json!({"fail_status": 503, "fail_for_seconds": 30}))
        .await;
    let (mut d, out) = world.queue_outbox_row(9002, "Saldo Anda Rp 10.000").await;
    let Disposition::RetryIn(_) = world.handle(&d, &out).await else {
        panic!("503 is transient: the send must be retried");
    };
    assert!(world.reports().is_empty(), "nothing to report yet");
    world.faults(json!({"fail_status": 0})).await;
    d.delivered += 1;
    d.attempt += 1;
    assert!(matches!(world.handle(&d, &out).await, Disposition::Ack));
    assert_eq!(world.sent().await.len(), 1);
    assert_eq!(world.reports(), vec![(9002, 20)]);
}

#[tokio::test]
async fn a_refused_send_is_dead_lettered_and_reported_failed() {
    let world = world().await;
    world
        .faults(json!({"fail_status": 400, "fail_for_seconds": 30}))
        .await;
    let (d, out) = world.queue_outbox_row(9003, "x").await;
    match world.handle(&d, &out).await {
        Disposition::DeadLetter { reason, .. } => assert_eq!(reason, DeadLetterReason::SendFailed),
        other => panic!("a 400 is final: {other:?}"),
    }
    assert_eq!(world.reports(), vec![(9003, 40)]);
}

#[tokio::test]
async fn a_send_whose_answer_was_lost_is_never_sent_again() {
    let world = world().await;
    world.faults(json!({"lose_answers": true})).await;
    let (d, out) = world.queue_outbox_row(9004, "SUKSES").await;
    match world.handle(&d, &out).await {
        Disposition::DeadLetter { reason, .. } => assert_eq!(reason, DeadLetterReason::Uncertain),
        other => panic!("a lost answer is ambiguous: {other:?}"),
    }
    world.faults(json!({"lose_answers": false})).await;
    // Redelivered until the handler decides: never a second send.
    let mut again = d.clone();
    let decided = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            again.delivered += 1;
            match world.handle(&again, &out).await {
                Disposition::Wait(pause) => tokio::time::sleep(pause).await,
                decided => return decided,
            }
        }
    })
    .await
    .expect("the redelivery decides within the owner's lease");
    match decided {
        Disposition::DeadLetter { reason, .. } => assert_eq!(reason, DeadLetterReason::Uncertain),
        other => panic!("a redelivery of an uncertain send is dead-lettered: {other:?}"),
    }
    assert_eq!(world.sent().await.len(), 1, "sent exactly once");
}

/// A text longer than the provider takes (here GOWA's 65,536 characters) goes out in parts, in
/// order, each once: a redelivery of a sent part hands the rest on again without a second send
/// or a second next part, and the row is reported to OtomaX once, after its last part.
#[tokio::test]
async fn a_long_text_goes_out_part_by_part_each_once_and_in_order() {
    let world = world().await;
    let line = "S100.TELKOMSEL 100.000 = Rp 100.150 (aktif)\n";
    let text = line.repeat(140_000 / line.len()).trim_end().to_string();
    let (first, out) = world.queue_outbox_row(9100, &text).await;
    let stream_messages = || async {
        world
            .bus
            .stream_messages(names::OUTBOUND_STREAM)
            .await
            .unwrap()
    };
    assert_eq!(world.handle(&first, &out).await, Disposition::Ack);
    assert_eq!(world.sent().await.len(), 1);
    assert_eq!(stream_messages().await, 2, "the row and its second part");
    assert!(
        world.reports().is_empty(),
        "not reported before its last part"
    );
    // The first part's delivery again (its ack was lost): nothing sent, no third message.
    let mut again = first.clone();
    again.delivered = 2;
    assert_eq!(world.handle(&again, &out).await, Disposition::Ack);
    assert_eq!(world.sent().await.len(), 1, "the first part sent once");
    assert_eq!(stream_messages().await, 2, "the second part handed on once");
    // The parts that follow, each read back from the stream as the consumer would hand it out.
    let mut seq = first.stream_sequence;
    loop {
        seq += 1;
        let Ok(raw) = world
            .bus
            .jetstream()
            .get_stream(names::OUTBOUND_STREAM)
            .await
            .unwrap()
            .get_raw_message(seq)
            .await
        else {
            break;
        };
        let d = Delivery::first(&raw.subject, raw.payload.clone(), seq);
        let part: OutboundMessage = serde_json::from_slice(&raw.payload).unwrap();
        assert_eq!(
            part.id.as_str(),
            format!("outbox:9100#{}", seq - first.stream_sequence + 1)
        );
        assert_eq!(world.handle(&d, &part).await, Disposition::Ack);
    }
    let sent: Vec<String> = world
        .sent()
        .await
        .iter()
        .map(|m| m["body"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        sent.len(),
        3,
        "140,000 characters in parts of at most 65,536"
    );
    assert!(sent.iter().all(|p| p.chars().count() <= 65_536));
    assert_eq!(sent.join("\n"), text, "whole and in order");
    assert_eq!(
        world.reports(),
        [(9100, 20)],
        "reported once, after the last part"
    );
}
