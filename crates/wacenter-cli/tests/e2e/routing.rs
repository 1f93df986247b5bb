//! The routing table (spec §3a) end to end: the account that receives a message decides its
//! OtomaX server and terminal, and the auto-reply goes out through that account.

use serde_json::{json, Value};
use wacenter_config::{AccountTable, ServerTable, WaProvider};
use wacenter_proto::DeadLetterReason;

use crate::stack::*;

const NUMBER_A: &str = "628111000001@s.whatsapp.net";
const NUMBER_B: &str = "628111000002@s.whatsapp.net";

fn account(id: &str, otomax: &str, kode_terminal: i64) -> AccountTable {
    AccountTable {
        id: id.into(),
        provider: WaProvider::Gowa,
        otomax: otomax.into(),
        kode_terminal: Some(kode_terminal),
        send_rate: None,
    }
}

/// The auto-replies the WhatsApp simulator sent, as (device, text).
fn replies(sent: &[Value]) -> Vec<(String, String)> {
    sent.iter()
        .map(|m| {
            (
                m["device_id"].as_str().unwrap_or_default().to_string(),
                m["body"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_numbers_on_two_terminals_of_one_server() {
    let stack = Stack::start_with(Services::ALL, |s| {
        s.account = vec![
            account(NUMBER_A, "default", 3),
            account(NUMBER_B, "default", 5),
        ];
    })
    .await;
    for (device, text) in [(NUMBER_A, "S.1234"), (NUMBER_B, "S5.08123456789.1234")] {
        let r = stack
            .incoming(json!({"from": RESELLER_PHONE, "text": text, "device": device}))
            .await;
        assert_eq!(r["webhook_status"], json!(200), "{r}");
    }
    let inbox = stack.wait_inbox(2).await;
    let mut terminals: Vec<(String, i64)> = inbox
        .iter()
        .map(|i| {
            (
                i["body"]["pesan"].as_str().unwrap().to_string(),
                i["body"]["kode_terminal"].as_i64().unwrap(),
            )
        })
        .collect();
    terminals.sort();
    assert_eq!(
        terminals,
        [
            ("S.1234".to_string(), 3),
            ("S5.08123456789.1234".to_string(), 5)
        ],
        "each message is inserted with the terminal of the number that received it"
    );
    let sent = stack.wait_sent(2).await;
    let mut devices: Vec<String> = replies(&sent).into_iter().map(|(d, _)| d).collect();
    devices.sort();
    assert_eq!(
        devices,
        [NUMBER_A, NUMBER_B],
        "each auto-reply goes out through the number that received the command"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_server_takes_its_accounts_and_an_unknown_account_is_dead_lettered() {
    let stack = Stack::start_with(Services::ALL, |s| {
        s.otomax = vec![ServerTable {
            name: "jaya".into(),
            api_url: s.otomax_api_url.clone(),
            app_id: wacenter_sim::demo::APP_ID.into(),
            app_key: wacenter_sim::demo::APP_KEY.into(),
            dev_key: wacenter_sim::demo::DEV_KEY.into(),
            callback_secret: "jaya-callback-secret".into(),
            default_kode_terminal: Some(9),
            ..Default::default()
        }];
        s.account = vec![account(NUMBER_A, "jaya", 7)];
    })
    .await;
    for (device, text) in [(NUMBER_A, "S.1234"), (NUMBER_B, "S.1234")] {
        let r = stack
            .incoming(json!({"from": RESELLER_PHONE, "text": text, "device": device}))
            .await;
        assert_eq!(r["webhook_status"], json!(200), "{r}");
    }
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::UnknownAccount);
    assert!(letters[0].error.contains(NUMBER_B), "{}", letters[0].error);
    let inbox = stack.wait_inbox(1).await;
    assert_eq!(
        inbox.len(),
        1,
        "the unknown account's message never reaches OtomaX"
    );
    assert_eq!(inbox[0]["body"]["kode_terminal"], json!(7));
    let sent = stack.wait_sent(1).await;
    assert_eq!(replies(&sent)[0].0, NUMBER_A);
    stack.stop().await;
}

/// A second business: its own OtomaX (another simulator, other credentials) and number.
const MAKMUR_APP_KEY: &str = "makmur-app-key";
const MAKMUR_DEV_KEY: &str = "makmur-dev-key";
const MAKMUR_SECRET: &str = "makmur-callback-secret";

async fn makmur_sim() -> String {
    let sim = wacenter_sim::otomax::OtomaxSim::new(wacenter_sim::otomax::OtomaxSimConfig {
        app_id: "Makmur".into(),
        app_key: MAKMUR_APP_KEY.into(),
        dev_key: MAKMUR_DEV_KEY.into(),
        ..wacenter_sim::demo::otomax(
            vec![
                wacenter_sim::otomax::SimReseller::parse_arg(&format!("{RESELLER_PHONE}=M001"))
                    .unwrap(),
            ],
            std::time::Duration::from_millis(300),
        )
    });
    format!("http://{}/", sim.spawn(0).await.unwrap())
}

/// The table of two businesses: `default` (the stack's OtomaX) with number A on terminal 1, and
/// makmur (its own simulator and keys) with number B on terminal 4.
fn two_businesses(s: &mut wacenter_config::Settings, makmur_url: &str) {
    s.otomax = vec![
        ServerTable {
            name: "default".into(),
            api_url: s.otomax_api_url.clone(),
            app_id: wacenter_sim::demo::APP_ID.into(),
            app_key: wacenter_sim::demo::APP_KEY.into(),
            dev_key: wacenter_sim::demo::DEV_KEY.into(),
            callback_secret: CALLBACK_SECRET.into(),
            ..Default::default()
        },
        ServerTable {
            name: "makmur".into(),
            api_url: makmur_url.into(),
            app_id: "Makmur".into(),
            app_key: MAKMUR_APP_KEY.into(),
            dev_key: MAKMUR_DEV_KEY.into(),
            callback_secret: MAKMUR_SECRET.into(),
            ..Default::default()
        },
    ];
    s.account = vec![
        account(NUMBER_A, "default", 1),
        account(NUMBER_B, "makmur", 4),
    ];
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_each_with_its_own_credentials_callbacks_and_reports() {
    let makmur_url = makmur_sim().await;
    let makmur = wacenter_sim::inspect::SimClient::new(&makmur_url, reqwest::Client::new());
    let stack = Stack::start_with(Services::ALL, |s| {
        two_businesses(s, &makmur_url);
    })
    .await;
    // The operator registers makmur's callback URL with makmur's OtomaX (`?otomax=makmur`,
    // no body: this service's own URL for that server, with that server's secret).
    let admin = |path: &str| {
        stack
            .http
            .post(format!("{}{path}", stack.callback_url))
            .basic_auth(
                wacenter_sim::demo::ADMIN_USER,
                Some(wacenter_sim::demo::ADMIN_PASSWORD),
            )
    };
    let r = admin("/otomax/set-callback?otomax=makmur")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = stack
        .http
        .get(format!(
            "{}/otomax/get-callback?otomax=makmur",
            stack.callback_url
        ))
        .basic_auth(
            wacenter_sim::demo::ADMIN_USER,
            Some(wacenter_sim::demo::ADMIN_PASSWORD),
        )
        .send()
        .await
        .unwrap();
    let shown = r.text().await.unwrap();
    assert!(shown.contains("/otomax/callback/makmur?secret="), "{shown}");
    assert!(!shown.contains(MAKMUR_SECRET), "{shown}");
    let r = admin("/otomax/set-callback?otomax=sentosa")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("default, makmur"));

    for (device, text) in [(NUMBER_A, "S.1234"), (NUMBER_B, "S5.08123456789.1234")] {
        let r = stack
            .incoming(json!({"from": RESELLER_PHONE, "text": text, "device": device}))
            .await;
        assert_eq!(r["webhook_status"], json!(200), "{r}");
    }
    // Each message reached its own server, signed with that server's keys (a wrong token is
    // refused by the simulator), with its account's terminal.
    let default_inbox = stack.wait_inbox(1).await;
    assert_eq!(default_inbox[0]["body"]["pesan"], json!("S.1234"));
    let makmur_inbox = wacenter_test_support::eventually(
        std::time::Duration::from_secs(20),
        "makmur's InsertInbox",
        || async { Some(makmur.list("inbox").await.unwrap()).filter(|i| !i.is_empty()) },
    )
    .await;
    assert_eq!(
        makmur_inbox[0]["body"]["pesan"],
        json!("S5.08123456789.1234")
    );
    assert_eq!(makmur_inbox[0]["body"]["kode_terminal"], json!(4));
    assert_eq!(
        stack.otomax_inbox().await.len(),
        1,
        "nothing of makmur's reached default"
    );

    // Makmur's transaction result comes through makmur's callback, goes out through makmur's
    // number, and is reported to makmur's OtomaX.
    let reported = wacenter_test_support::eventually(
        std::time::Duration::from_secs(30),
        "makmur's outbox row reported delivered",
        || async {
            let rows = makmur.list("outbox").await.unwrap();
            rows.iter()
                .any(|r| r["update_status"] == json!(20))
                .then_some(rows)
        },
    )
    .await;
    let row_text = reported[0]["row"]["pesan"].as_str().unwrap().to_string();
    let sent = stack.whatsapp_sent().await;
    let through: Vec<&str> = sent
        .iter()
        .filter(|m| m["body"]["message"] == json!(row_text))
        .map(|m| m["device_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        through,
        [NUMBER_B],
        "the result went out once, through makmur's number"
    );

    // Each callback URL takes only its own server's secret; an unknown name is told the names.
    let row = json!({"kode": 5, "penerima": RESELLER_PHONE, "pesan": "x", "tipe_penerima": "W"});
    let wrong = stack
        .http
        .post(format!(
            "{}/otomax/callback/makmur?secret={CALLBACK_SECRET}",
            stack.callback_url
        ))
        .json(&row)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = stack
        .http
        .post(format!(
            "{}/otomax/callback/sentosa?secret={MAKMUR_SECRET}",
            stack.callback_url
        ))
        .json(&row)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let text = unknown.text().await.unwrap();
    assert!(text.contains("default, makmur"), "{text}");
    assert!(!text.contains(MAKMUR_SECRET), "{text}");

    // Health reports each server.
    let health = stack
        .get_json(&format!("{}/otomax/health", stack.callback_url))
        .await;
    let servers = &health["results"]["servers"];
    assert_eq!(servers["default"]["reachable"], json!(true), "{health}");
    assert_eq!(servers["makmur"]["reachable"], json!(true), "{health}");
    assert_eq!(health["code"], json!("SUCCESS"), "{health}");
    stack.stop().await;
}

/// Isolation (spec §3a): one server down never holds up another server's messages. Makmur's
/// OtomaX is down, and its messages, sent first, fill every slot it may use while its client
/// retries (about 7 s each). Default's messages, sent after them, are all inserted and answered
/// before the first of makmur's has even ended: judged from what the peers recorded (default's
/// simulator's arrival times against makmur's first dead letter). In one shared queue they would
/// wait behind makmur's retries.
#[tokio::test(flavor = "multi_thread")]
async fn one_server_down_never_holds_up_another() {
    const MAKMUR_MESSAGES: usize = 8;
    const DEFAULT_MESSAGES: usize = 12;
    let makmur_url = makmur_sim().await;
    let makmur = wacenter_sim::inspect::SimClient::new(&makmur_url, reqwest::Client::new());
    makmur
        .faults(&json!({"down_for_seconds": 600}))
        .await
        .unwrap();
    let stack = Stack::start_with(Services::ALL, |s| {
        s.forwarder_concurrency = 2;
        two_businesses(s, &makmur_url);
        s.otomax[1].concurrency = Some(2);
    })
    .await;
    for (device, count) in [(NUMBER_B, MAKMUR_MESSAGES), (NUMBER_A, DEFAULT_MESSAGES)] {
        for i in 0..count {
            let r = stack
                .incoming(json!({"from": RESELLER_PHONE, "text": format!("S5.0812345{i:04}.1234"), "device": device}))
                .await;
            assert_eq!(r["webhook_status"], json!(200), "{r}");
        }
    }
    let inbox = wacenter_test_support::eventually(
        std::time::Duration::from_secs(90),
        "all of default's messages inserted",
        || async {
            let inbox = stack.otomax_inbox().await;
            (inbox.len() >= DEFAULT_MESSAGES).then_some(inbox)
        },
    )
    .await;
    assert_eq!(inbox.len(), DEFAULT_MESSAGES);
    let last_inserted = inbox
        .iter()
        .map(|i| chrono::DateTime::parse_from_rfc3339(i["received_at"].as_str().unwrap()).unwrap())
        .max()
        .unwrap();
    // Makmur's messages do not end silently: they are dead-lettered once their retries are spent.
    let letters = stack.wait_dead_letters(1).await;
    assert!(
        letters
            .iter()
            .all(|l| l.payload["account"] == json!(NUMBER_B)
                && matches!(
                    l.reason,
                    DeadLetterReason::RetriesExhausted | DeadLetterReason::Expired
                )),
        "{letters:?}"
    );
    let first_makmur_end = letters.iter().map(|l| l.failed_at).min().unwrap();
    assert!(
        last_inserted < first_makmur_end,
        "default's last message reached its OtomaX at {last_inserted}, after makmur's first one ended at {first_makmur_end}: it waited behind makmur's"
    );
    assert!(
        makmur.list("inbox").await.unwrap().is_empty(),
        "makmur was down all along"
    );
    let sent = stack.wait_sent(DEFAULT_MESSAGES).await;
    let through_a = replies(&sent)
        .iter()
        .filter(|(device, _)| device == NUMBER_A)
        .count();
    assert!(through_a >= DEFAULT_MESSAGES, "{sent:?}");
    stack.stop().await;
}
