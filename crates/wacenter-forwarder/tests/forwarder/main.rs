//! The forwarder's handler against a real nats-server and the OtomaX simulator, driven one
//! delivery at a time so that two replicas can be made to meet on one message.

use std::time::Duration;

use chrono::Utc;
use wacenter_bus::{Bus, Delivery, Disposition, Topology};
use wacenter_config::Settings;
use wacenter_forwarder::Forwarder;
use wacenter_proto::{names, InboundMessage, PhoneNumber, Provider, PAYLOAD_VERSION};
use wacenter_sim::otomax::{Faults, OtomaxSim, OtomaxSimConfig, SimReseller};
use wacenter_test_support::NatsServer;

const RESELLER_PHONE: &str = "628123456789";

struct World {
    _nats: NatsServer,
    settings: Settings,
    otomax_url: String,
    http: reqwest::Client,
}

impl World {
    async fn start(faults: Faults, customize: impl FnOnce(&mut Settings)) -> World {
        let nats = NatsServer::start();
        let otomax = OtomaxSim::new(OtomaxSimConfig {
            faults,
            ..wacenter_sim::demo::otomax(
                vec![SimReseller::parse_arg(&format!("{RESELLER_PHONE}=R001")).unwrap()],
                Duration::from_secs(3600),
            )
        });
        let otomax_url = format!("http://{}/", otomax.spawn(0).await.unwrap());
        let mut settings = Settings {
            otomax_api_url: otomax_url.clone(),
            ..wacenter_sim::demo::settings(&nats.url())
        };
        customize(&mut settings);
        World {
            _nats: nats,
            settings,
            otomax_url,
            http: reqwest::Client::new(),
        }
    }

    /// A forwarder replica with its own NATS connection.
    async fn replica(&self) -> Forwarder {
        let bus = Bus::connect(&self.settings.nats_url, "forwarder", Topology::default())
            .await
            .unwrap();
        bus.ensure_topology().await.unwrap();
        let config = wacenter_config::ForwarderConfig::from_settings(&self.settings).unwrap();
        Forwarder::new(&config, bus).await.unwrap()
    }

    /// Publishes a purchase as ingress would; returns its first delivery.
    async fn publish(&self, id: &str, text: &str) -> Delivery {
        let bus = Bus::connect(&self.settings.nats_url, "ingress", Topology::default())
            .await
            .unwrap();
        bus.ensure_topology().await.unwrap();
        let msg = InboundMessage {
            version: PAYLOAD_VERSION,
            provider: Provider::Gowa,
            account: "628111222333@s.whatsapp.net".into(),
            message_id: id.into(),
            chat: format!("{RESELLER_PHONE}@s.whatsapp.net"),
            sender: Some(PhoneNumber::from_digits(RESELLER_PHONE).unwrap()),
            sender_name: "Test".into(),
            timestamp: Utc::now(),
            text: text.into(),
            is_group: false,
            from_me: false,
            has_media: false,
            media_type: None,
            received_at: Utc::now(),
        };
        let payload = serde_json::to_vec(&msg).unwrap();
        let subject = names::inbound_subject(Provider::Gowa, names::DEFAULT_LANE);
        let ack = bus
            .publish(
                &subject,
                msg.dedupe_id().as_str(),
                wacenter_bus::HeaderMap::new(),
                payload.clone().into(),
            )
            .await
            .unwrap();
        Delivery::first(&subject, payload.into(), ack.sequence)
    }

    async fn inbox(&self) -> Vec<serde_json::Value> {
        wacenter_sim::inspect::SimClient::new(&self.otomax_url, self.http.clone())
            .list("inbox")
            .await
            .unwrap()
    }
}

/// The message a delivery carries, as the worker decodes it.
fn job(d: &Delivery) -> InboundMessage {
    match wacenter_bus::worker::decode(d, "forwarder") {
        Ok(msg) => msg,
        Err(invalid) => panic!("not an InboundMessage: {invalid:?}"),
    }
}

/// Redelivers `first` to `replica` (as JetStream would after lost progress acks) until the
/// handler stops asking to look again; returns what it finally decided.
async fn redeliver_until_decided(replica: &Forwarder, first: &Delivery) -> Disposition {
    let mut d = first.clone();
    loop {
        d.delivered += 1;
        match replica.clone().handle(d.clone(), job(&d)).await {
            Disposition::Wait(pause) => tokio::time::sleep(pause).await,
            Disposition::RetryIn(pause) => {
                d.attempt += 1;
                tokio::time::sleep(pause).await
            }
            decided => return decided,
        }
    }
}

/// OtomaX takes 25 s to answer (`_exp` 120 s allows it). A redelivery of the message to another
/// replica meanwhile must see that the owner is alive however long its call takes, and then
/// find the message done: never `uncertain` while the owner still works on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_call_is_not_taken_for_a_dead_owner() {
    let slow = Faults {
        latency_ms: 25_000,
        ..Faults::default()
    };
    let world = World::start(slow, |s| {
        s.otomax_exp_seconds = 120;
        s.otomax_timeout_seconds = 60;
    })
    .await;
    let (owner, other) = (world.replica().await, world.replica().await);
    let first = world.publish("SLOW-1", "S.1234").await;
    let owner_task = tokio::spawn(owner.handle(first.clone(), job(&first)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let decided = redeliver_until_decided(&other, &first).await;
    assert_eq!(owner_task.await.unwrap(), Disposition::Ack);
    assert_eq!(decided, Disposition::Ack, "the redelivery finds it done");
    assert_eq!(world.inbox().await.len(), 1, "one InsertInbox");
}
