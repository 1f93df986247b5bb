//! No secret ever reaches a log line, even at `--debug`: the four services run as one process
//! with DEBUG on and JSON logs, both flows and the REST API are exercised (including refused
//! requests), and the captured log is searched for every secret.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use wacenter_config::Secret;
use wacenter_sim::otomax::{Faults, OtomaxSim, OtomaxSimConfig, SimReseller};
use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};
use wacenter_test_support::{eventually, NatsServer};

use crate::stack::*;

const APP_KEY: &str = "appkey-SECRET-7f3a";
const DEV_KEY: &str = "devkey-SECRET-91bc";
const HOOK: &str = "whsec-SECRET-55e1";
const CALLBACK: &str = "cbsec-SECRET-a0a0";
const ADMIN_PASS: &str = "adminpw-SECRET-c3c3";
const GOWA_PASS: &str = "gowapw-SECRET-d4d4";

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_log_line_at_debug() {
    let nats = TestNats::One(NatsServer::start());
    let otomax = OtomaxSim::new(OtomaxSimConfig {
        app_id: "OtomaX.Addon".into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        resellers: vec![SimReseller::parse_arg(&format!("{RESELLER_PHONE}=R001")).unwrap()],
        result_delay: std::time::Duration::from_millis(200),
        faults: Faults::default(),
    });
    let otomax_url = format!("http://{}/", otomax.spawn(0).await.unwrap());
    let mut settings = base_settings(&nats);
    let wa = WhatsappSim::new(WhatsappSimConfig {
        webhook_url: Some(format!(
            "http://127.0.0.1:{}/webhook/gowa",
            settings.ingress_port
        )),
        webhook_secret: HOOK.into(),
        device_id: DEVICE.into(),
        other_devices: Vec::new(),
        basic_auth: Some(("gowa".into(), GOWA_PASS.into())),
        echo_sent: false,
    });
    let wa_url = format!("http://{}", wa.spawn(0).await.unwrap());
    settings.otomax_api_url = otomax_url.clone();
    settings.otomax_app_key = Secret::new(APP_KEY);
    settings.otomax_dev_key = Secret::new(DEV_KEY);
    settings.wa_webhook_secret = Secret::new(HOOK);
    settings.otomax_callback_secret = Secret::new(CALLBACK);
    settings.app_basic_auth = Secret::new(format!("admin:{ADMIN_PASS}"));
    settings.gowa_url = wa_url.clone();
    settings.gowa_basic_auth = Secret::new(format!("gowa:{GOWA_PASS}"));
    settings.public_url = format!("http://127.0.0.1:{}", settings.app_port);
    settings.debug = true;
    settings.log_format = wacenter_config::LogFormat::Json;

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wacenter"))
        .args(["all", "--debug"])
        .env_clear()
        .envs(settings.to_env())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let http = wacenter_otomax::client::shared_http_client();
    let callback = format!("http://127.0.0.1:{}", settings.app_port);
    for port in [
        settings.ingress_port,
        settings.forwarder_port,
        settings.reply_port,
        settings.app_port,
    ] {
        eventually(Duration::from_secs(30), "services ready", || async {
            let r = http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
    // The REST API, with and without the right password.
    let r = http
        .post(format!("{callback}/otomax/set-callback"))
        .basic_auth("admin", Some(ADMIN_PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !r.text().await.unwrap().contains(CALLBACK),
        "set-callback's answer redacts the secret"
    );
    let r = http
        .get(format!("{callback}/otomax/get-callback"))
        .basic_auth("admin", Some(ADMIN_PASS))
        .send()
        .await
        .unwrap();
    assert!(
        !r.text().await.unwrap().contains(CALLBACK),
        "get-callback redacts the secret"
    );
    let r = http
        .get(format!("{callback}/otomax/balance/R001"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Both flows: a purchase (auto-reply, then the result through the callback).
    let r = http
        .post(format!("{wa_url}/_sim/incoming"))
        .json(&json!({"from": RESELLER_PHONE, "text": "S5.08123456789.1234"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually(
        Duration::from_secs(20),
        "auto-reply and result sent",
        || async {
            let sent: Vec<serde_json::Value> = http
                .get(format!("{wa_url}/_sim/outbox"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (sent.len() >= 2).then_some(())
        },
    )
    .await;
    // Refused requests log why, still without secrets.
    let r = http
        .post(format!("{callback}/otomax/callback?secret=wrong-guess"))
        .json(&json!({"kode": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body =
        serde_json::to_vec(&gowa_message("SEC-1", RESELLER_PHONE, "S.1234", Utc::now())).unwrap();
    let r = http
        .post(format!(
            "http://127.0.0.1:{}/webhook/gowa",
            settings.ingress_port
        ))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Stop gracefully (SIGTERM) so every line is flushed, then read the log.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "wacenter all stopped cleanly: {exited}");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.lines().count() > 20, "the flows were logged:\n{text}");
    assert!(
        text.contains("\"level\":\"DEBUG\""),
        "--debug produced debug lines"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("LOG_FORMAT=json line is not JSON ({e}): {line}"));
        assert!(
            !line.contains("SECRET-"),
            "a secret leaked into the log: {line}"
        );
        assert!(
            !line.contains("token="),
            "a signed URL (with its token) leaked into the log: {line}"
        );
    }
    assert!(
        text.contains("3EB0") || text.contains("wa_message_id"),
        "lines about a message carry its id"
    );
}
