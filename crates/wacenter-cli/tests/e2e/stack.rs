//! A whole wacenter on loopback for one test: its own nats-server, the OtomaX and WhatsApp
//! simulators, and the four services running in this process (talking through NATS exactly as
//! separate processes would).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wacenter_config::Settings;
use wacenter_sim::demo;
use wacenter_sim::inspect::SimClient;
use wacenter_sim::otomax::{OtomaxSim, SimReseller};
use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};
use wacenter_test_support::procs::Proc;
use wacenter_test_support::{eventually, free_port, NatsCluster, NatsServer};

pub const RESELLER_PHONE: &str = "628123456789";
pub const POOR_RESELLER_PHONE: &str = "628555000111";
pub const STRANGER_PHONE: &str = "628777000999";
pub const DEVICE: &str = "628987654321@s.whatsapp.net";
pub const DEFAULT_DEVICE: &str = "628111222333@s.whatsapp.net";
pub use wacenter_sim::demo::{CALLBACK_SECRET, WEBHOOK_SECRET};

/// The NATS a stack runs on: one server, or a three-node JetStream cluster with every stream
/// and bucket replicated three times.
pub enum TestNats {
    One(NatsServer),
    Cluster(NatsCluster),
}

impl TestNats {
    pub fn url(&self) -> String {
        match self {
            TestNats::One(n) => n.url(),
            TestNats::Cluster(c) => c.url(),
        }
    }

    pub fn one(&mut self) -> &mut NatsServer {
        match self {
            TestNats::One(n) => n,
            TestNats::Cluster(_) => panic!("this stack runs on a cluster"),
        }
    }

    pub fn cluster(&mut self) -> &mut NatsCluster {
        match self {
            TestNats::Cluster(c) => c,
            TestNats::One(_) => panic!("this stack runs on one nats-server"),
        }
    }
}

pub struct Stack {
    pub nats: TestNats,
    pub settings: Settings,
    pub otomax_url: String,
    pub wa_url: String,
    pub ingress_url: String,
    pub callback_url: String,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    services: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

/// Which services to run (tests of one stage leave the others out).
#[derive(Clone, Copy)]
pub struct Services {
    pub ingress: bool,
    pub forwarder: bool,
    pub reply: bool,
    pub callback: bool,
}

impl Services {
    pub const ALL: Services = Services {
        ingress: true,
        forwarder: true,
        reply: true,
        callback: true,
    };
}

pub fn base_settings(nats: &TestNats) -> Settings {
    Settings {
        nats_stream_replicas: match nats {
            TestNats::One(_) => 1,
            TestNats::Cluster(c) => c.nodes.len(),
        },
        gowa_device_id: DEFAULT_DEVICE.into(),
        ingress_port: free_port(),
        forwarder_port: free_port(),
        reply_port: free_port(),
        app_port: free_port(),
        forwarder_concurrency: 16,
        reply_concurrency: 16,
        ..wacenter_sim::demo::settings(&nats.url())
    }
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(Services::ALL, |_| {}).await
    }

    pub async fn start_with(services: Services, customize: impl FnOnce(&mut Settings)) -> Stack {
        Self::start_full(services, Duration::from_millis(300), false, customize).await
    }

    pub async fn start_full(
        services: Services,
        result_delay: Duration,
        echo_sent: bool,
        customize: impl FnOnce(&mut Settings),
    ) -> Stack {
        let nats = TestNats::One(NatsServer::start());
        Self::start_on(nats, services, result_delay, echo_sent, customize).await
    }

    /// Every service on a three-node JetStream cluster (`NATS_URL` lists all three,
    /// `NATS_STREAM_REPLICAS=3`).
    pub async fn start_on_cluster(customize: impl FnOnce(&mut Settings)) -> Stack {
        let nats = TestNats::Cluster(NatsCluster::start(3));
        Self::start_on(
            nats,
            Services::ALL,
            Duration::from_millis(300),
            false,
            customize,
        )
        .await
    }

    pub async fn start_on(
        nats: TestNats,
        services: Services,
        result_delay: Duration,
        echo_sent: bool,
        customize: impl FnOnce(&mut Settings),
    ) -> Stack {
        let mut settings = base_settings(&nats);
        // In-process services get listeners bound here, on ports the kernel picked: no race
        // with other tests for a "free" port.
        let mut listeners = Vec::new();
        for port in [
            &mut settings.ingress_port,
            &mut settings.forwarder_port,
            &mut settings.reply_port,
            &mut settings.app_port,
        ] {
            let listener = wacenter_service::bind_loopback().await.unwrap();
            *port = listener.local_addr().unwrap().port();
            listeners.push(listener);
        }
        let [ingress_listener, forwarder_listener, reply_listener, callback_listener] =
            <[_; 4]>::try_from(listeners).unwrap();
        // Tracing is always on (trace context must cross the bus); logs only when asked for.
        wacenter_telemetry::init(&settings, std::env::var_os("WACENTER_TEST_LOG").is_some());
        let otomax = OtomaxSim::new(wacenter_sim::demo::otomax(
            vec![
                SimReseller::parse_arg(&format!("{RESELLER_PHONE}=R001")).unwrap(),
                SimReseller {
                    phone: POOR_RESELLER_PHONE.into(),
                    code: "R002".into(),
                    name: String::new(),
                    saldo: 100,
                    pin: Some("9999".into()),
                },
            ],
            result_delay,
        ));
        let otomax_url = format!("http://{}/", otomax.spawn(0).await.unwrap());
        let ingress_url = format!("http://127.0.0.1:{}", settings.ingress_port);
        let wa = WhatsappSim::new(WhatsappSimConfig {
            webhook_url: Some(format!("{ingress_url}/webhook/gowa")),
            webhook_secret: WEBHOOK_SECRET.into(),
            device_id: DEVICE.into(),
            other_devices: Vec::new(),
            basic_auth: None,
            echo_sent,
        });
        let wa_url = format!("http://{}", wa.spawn(0).await.unwrap());
        settings.otomax_api_url = otomax_url.clone();
        settings.gowa_url = wa_url.clone();
        settings.public_url = format!("http://127.0.0.1:{}", settings.app_port);
        customize(&mut settings);
        let (stop, shutdown) = watch::channel(false);
        let mut handles = Vec::new();
        if services.ingress {
            let config = wacenter_config::IngressConfig::from_settings(&settings).unwrap();
            handles.push((
                "ingress",
                tokio::spawn(wacenter_ingress::run(
                    config,
                    ingress_listener,
                    shutdown.clone(),
                )),
            ));
        }
        if services.forwarder {
            let config = wacenter_config::ForwarderConfig::from_settings(&settings).unwrap();
            handles.push((
                "forwarder",
                tokio::spawn(wacenter_forwarder::run(
                    config,
                    forwarder_listener,
                    shutdown.clone(),
                )),
            ));
        }
        if services.reply {
            let config = wacenter_config::ReplyConfig::from_settings(&settings).unwrap();
            handles.push((
                "reply",
                tokio::spawn(wacenter_reply::run(
                    config,
                    reply_listener,
                    shutdown.clone(),
                )),
            ));
        }
        if services.callback {
            let config = wacenter_config::CallbackConfig::from_settings(&settings).unwrap();
            handles.push((
                "callback",
                tokio::spawn(wacenter_callback::run(
                    config,
                    callback_listener,
                    shutdown.clone(),
                )),
            ));
        }
        let stack = Stack {
            nats,
            callback_url: format!("http://127.0.0.1:{}", settings.app_port),
            settings,
            otomax_url,
            wa_url,
            ingress_url,
            http: wacenter_otomax::client::shared_http_client(),
            stop,
            services: handles,
        };
        stack.wait_ready(services).await;
        stack
    }

    async fn wait_ready(&self, services: Services) {
        let ports = [
            (services.ingress, self.settings.ingress_port),
            (services.forwarder, self.settings.forwarder_port),
            (services.reply, self.settings.reply_port),
            (services.callback, self.settings.app_port),
        ];
        for (on, port) in ports {
            if !on {
                continue;
            }
            let url = format!("http://127.0.0.1:{port}/readyz");
            let started = std::time::Instant::now();
            loop {
                if let Some((name, _)) = self.services.iter().find(|(_, h)| h.is_finished()) {
                    panic!(
                        "{name} stopped during start-up (see its error with WACENTER_TEST_LOG=1)"
                    );
                }
                match self.http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) if started.elapsed() > Duration::from_secs(30) => {
                        panic!(
                            "{url} not ready after 30 s: {}",
                            r.text().await.unwrap_or_default()
                        )
                    }
                    Err(e) if started.elapsed() > Duration::from_secs(30) => {
                        panic!("{url} not answering after 30 s: {e}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        if services.forwarder || services.reply {
            // Consumers bind right after readiness; give them a moment so the first message
            // is not waiting on the first pull.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the services gracefully and checks none failed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, handle) in self.services {
            match tokio::time::timeout(Duration::from_secs(20), handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("{name} failed: {e:#}"),
                Ok(Err(e)) => panic!("{name} panicked: {e}"),
                Err(_) => panic!("{name} did not stop within 20 s"),
            }
        }
    }

    /// Registers this stack's callback URL with the OtomaX simulator (`POST /otomax/set-callback`
    /// without a body), as an operator would.
    /// Another reply replica beside the stack's own (binding the same consumers), stopped with
    /// the stack.
    pub async fn add_reply_replica(&mut self) {
        let config = wacenter_config::ReplyConfig::from_settings(&self.settings).unwrap();
        let listener = wacenter_service::bind_loopback().await.unwrap();
        let handle = tokio::spawn(wacenter_reply::run(config, listener, self.stop.subscribe()));
        self.services.push(("reply", handle));
    }

    pub async fn register_callback(&self) {
        let r = self
            .http
            .post(format!("{}/otomax/set-callback", self.callback_url))
            .basic_auth(demo::ADMIN_USER, Some(demo::ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// A reseller's phone sending `text` to our number (a signed GOWA webhook via the simulator).
    pub async fn whatsapp_says(&self, from: &str, text: &str) -> Value {
        self.incoming(json!({"from": from, "text": text})).await
    }

    pub async fn incoming(&self, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/_sim/incoming", self.wa_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "simulator could not deliver the webhook: {}",
            r.text().await.unwrap()
        );
        r.json().await.unwrap()
    }

    pub async fn get_json(&self, url: &str) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The OtomaX simulator's inspection API.
    pub fn otomax_sim(&self) -> SimClient {
        SimClient::new(&self.otomax_url, self.http.clone())
    }

    /// The WhatsApp simulator's inspection API.
    pub fn whatsapp_sim(&self) -> SimClient {
        SimClient::new(&self.wa_url, self.http.clone())
    }

    pub async fn otomax_inbox(&self) -> Vec<Value> {
        self.otomax_sim().list("inbox").await.unwrap()
    }

    pub async fn otomax_outbox(&self) -> Vec<Value> {
        self.otomax_sim().list("outbox").await.unwrap()
    }

    pub async fn whatsapp_sent(&self) -> Vec<Value> {
        self.whatsapp_sim().list("outbox").await.unwrap()
    }

    pub async fn otomax_faults(&self, body: Value) {
        self.otomax_sim().faults(&body).await.unwrap();
    }

    pub async fn whatsapp_faults(&self, body: Value) {
        self.whatsapp_sim().faults(&body).await.unwrap();
    }

    /// Waits until the WhatsApp simulator has received `n` messages; returns them.
    pub async fn wait_sent(&self, n: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(20),
            &format!("{n} WhatsApp messages sent"),
            || async {
                let sent = self.whatsapp_sent().await;
                (sent.len() >= n).then_some(sent)
            },
        )
        .await
    }

    pub async fn wait_inbox(&self, n: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(20),
            &format!("{n} InsertInbox calls"),
            || async {
                let inbox = self.otomax_inbox().await;
                (inbox.len() >= n).then_some(inbox)
            },
        )
        .await
    }

    /// The dead letters currently stored.
    pub async fn dead_letters(&self) -> Vec<wacenter_proto::DeadLetter> {
        let bus = self.bus().await;
        // The cluster cases kill the node that leads a stream: until a new leader is elected a
        // read times out, which says nothing about the letters. Read again.
        let letters = eventually(
            Duration::from_secs(30),
            "the dead letters to be readable",
            || async { wacenter_bus::deadletters::list(&bus, 10_000).await.ok() },
        )
        .await;
        letters.into_iter().map(|l| l.letter).collect()
    }

    pub async fn wait_dead_letters(&self, n: usize) -> Vec<wacenter_proto::DeadLetter> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} dead letters"),
            || async {
                let letters = self.dead_letters().await;
                (letters.len() >= n).then_some(letters)
            },
        )
        .await
    }

    pub async fn bus(&self) -> wacenter_bus::Bus {
        let bus =
            wacenter_bus::Bus::connect(&self.nats.url(), "test", wacenter_bus::Topology::default())
                .await
                .unwrap();
        eventually(Duration::from_secs(5), "test NATS connection", || async {
            bus.is_connected().then_some(())
        })
        .await;
        bus
    }

    /// Posts a raw, correctly signed GOWA webhook body to ingress.
    pub async fn post_gowa(&self, body: &Value) -> reqwest::Response {
        self.post_gowa_traced(body, None).await
    }

    /// Like [`Stack::post_gowa`], with a W3C `traceparent` header.
    pub async fn post_gowa_traced(
        &self,
        body: &Value,
        traceparent: Option<&str>,
    ) -> reqwest::Response {
        let raw = serde_json::to_vec(body).unwrap();
        let sig = wacenter_whatsapp::sign_hub(WEBHOOK_SECRET.as_bytes(), &raw);
        let mut request = self.http.post(format!("{}/webhook/gowa", self.ingress_url));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        request
            .header("content-type", "application/json")
            .header("X-Hub-Signature-256", sig)
            .body(raw)
            .send()
            .await
            .unwrap()
    }

    /// Posts an OtomaX outbox row to the callback service with the right secret.
    pub async fn callback(&self, row: &Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/otomax/callback?secret={CALLBACK_SECRET}",
                self.callback_url
            ))
            .json(row)
            .send()
            .await
            .unwrap()
    }
}

/// A GOWA v8 message webhook body from `from` to the stack's device.
pub fn gowa_message(
    id: &str,
    from: &str,
    text: &str,
    timestamp: chrono::DateTime<chrono::Utc>,
) -> Value {
    let incoming = wacenter_sim::whatsapp::Incoming {
        from: from.into(),
        text: text.into(),
        from_name: Some("Test".into()),
        timestamp: Some(timestamp),
        ..Default::default()
    };
    wacenter_sim::whatsapp::gowa_message(DEVICE, id, from, &incoming)
}

/// `wacenter all --services <services>` as a separate process (so it can be killed for real),
/// with exactly `settings` as its environment. Its log goes to a file in the system's temporary
/// folder (`wacenter-e2e-logs/`), and its end is shown when it stops unexpectedly.
pub fn spawn_services(settings: &Settings, services: &str) -> Proc {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_dir = std::env::temp_dir().join("wacenter-e2e-logs");
    std::fs::create_dir_all(&log_dir).expect("create the log folder");
    let name = format!("{}-{services}-{n}", std::process::id());
    Proc::spawn(
        &name,
        std::path::Path::new(env!("CARGO_BIN_EXE_wacenter")),
        &["all".into(), "--services".into(), services.into()],
        &settings.to_env(),
        &log_dir,
    )
    .expect("start wacenter all")
}
