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
                m["body"]["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_numbers_on_two_terminals_of_one_server() {
    let stack = Stack::start_with(Services::ALL, |s| {
        s.account = vec![account(NUMBER_A, "default", 3), account(NUMBER_B, "default", 5)];
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
        [("S.1234".to_string(), 3), ("S5.08123456789.1234".to_string(), 5)],
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
    assert_eq!(inbox.len(), 1, "the unknown account's message never reaches OtomaX");
    assert_eq!(inbox[0]["body"]["kode_terminal"], json!(7));
    let sent = stack.wait_sent(1).await;
    assert_eq!(replies(&sent)[0].0, NUMBER_A);
    stack.stop().await;
}
