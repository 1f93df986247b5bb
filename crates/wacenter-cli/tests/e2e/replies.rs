//! What a reseller sees on the phone: long texts arrive whole and in order, each part once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::stack::*;

/// A Meta Cloud API peer on 127.0.0.1: records every message sent to it and answers as Meta does.
struct MetaPeer {
    url: String,
    sent: Arc<Mutex<Vec<Value>>>,
}

const PHONE_NUMBER_ID: &str = "106540352242922";

impl MetaPeer {
    async fn start() -> MetaPeer {
        let sent = Arc::new(Mutex::new(Vec::new()));
        async fn messages(
            State(sent): State<Arc<Mutex<Vec<Value>>>>,
            Path(phone_number_id): Path<String>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let mut sent = sent.lock().unwrap();
            sent.push(json!({"phone_number_id": phone_number_id, "body": body}));
            let id = format!("wamid.PART{}", sent.len());
            Json(
                json!({"messaging_product": "whatsapp", "contacts": [{"wa_id": body["to"]}], "messages": [{"id": id}]}),
            )
        }
        let app = Router::new()
            .route("/{phone_number_id}/messages", post(messages))
            .with_state(sent.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MetaPeer { url, sent }
    }

    /// Settings that send through this peer, from the number `phone_number_id` by default.
    fn send_through(&self, s: &mut wacenter_config::Settings, phone_number_id: &str) {
        s.wa_provider = wacenter_config::WaProvider::Meta;
        s.meta_graph_url = self.url.clone();
        s.meta_access_token = wacenter_config::Secret::new("meta-token");
        s.meta_phone_number_id = phone_number_id.into();
    }

    fn texts(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| {
                m["body"]["text"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

/// A price list of 10,000 characters, as OtomaX sends for "harga" commands.
fn price_list() -> String {
    let mut text = String::from("DAFTAR HARGA PULSA\n");
    let mut n = 0;
    while text.chars().count() < 10_000 {
        n += 1;
        text.push_str(&format!("S{n}.TELKOMSEL {n}.000 = Rp {}.150 (aktif)\n", n));
    }
    text.trim_end().to_string()
}

/// A 10,000-character outbox row to a Meta number: split at line breaks into parts under Meta's
/// 4,096 characters, sent in order, each once (a repeated callback sends nothing again), and
/// reported to OtomaX once the last part is out.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_price_list_arrives_whole_and_in_order_at_a_meta_number() {
    let meta = MetaPeer::start().await;
    let stack = Stack::start_with(Services::ALL, |s| meta.send_through(s, PHONE_NUMBER_ID)).await;
    let list = price_list();
    let row =
        json!({"kode": 7001, "penerima": RESELLER_PHONE, "pesan": list, "tipe_penerima": "W"});
    assert_eq!(stack.callback(&row).await.status(), 200);
    let texts = wacenter_test_support::eventually(
        Duration::from_secs(30),
        "the whole price list at the Meta peer",
        || async {
            let texts = meta.texts();
            (texts.concat().chars().count() + texts.len() >= list.chars().count()).then_some(texts)
        },
    )
    .await;
    assert!(texts.len() >= 3, "{} parts", texts.len());
    for t in &texts {
        assert!(
            t.chars().count() <= 4096,
            "a part of {} characters",
            t.chars().count()
        );
        assert!(
            !t.starts_with('\n') && !t.ends_with('\n'),
            "split at line breaks"
        );
    }
    assert_eq!(texts.join("\n"), list, "whole and in order");
    // Characters Meta refuses (a stray NUL or bell from OtomaX) are cleaned away, not refused.
    let row = json!({"kode": 7002, "penerima": RESELLER_PHONE, "pesan": "Saldo\u{7} Rp 1.000\r\nTerima kasih\u{0}", "tipe_penerima": "W"});
    assert_eq!(stack.callback(&row).await.status(), 200);
    let cleaned =
        wacenter_test_support::eventually(Duration::from_secs(20), "the cleaned row", || async {
            meta.texts().into_iter().find(|t| t.starts_with("Saldo"))
        })
        .await;
    assert_eq!(cleaned, "Saldo Rp 1.000\nTerima kasih");
    // OtomaX posting the row again sends nothing again.
    assert_eq!(stack.callback(&row).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(meta.texts().len(), texts.len() + 1, "each part once");
    stack.stop().await;
}

/// A command to a Meta number is answered through that number, quoting it
/// (`context.message_id`), so a reseller who sent several sees which answer is whose.
#[tokio::test(flavor = "multi_thread")]
async fn a_meta_auto_reply_quotes_the_command_it_answers() {
    let meta = MetaPeer::start().await;
    let stack = Stack::start_with(Services::ALL, |s| {
        // The default number is another: the reply must go out through the one that received.
        meta.send_through(s, "999");
        s.meta_app_secret = wacenter_config::Secret::new("test_app_secret");
        s.meta_verify_token = wacenter_config::Secret::new("verify-me");
    })
    .await;
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":PHONE_NUMBER_ID},
        "contacts":[{"profile":{"name":"Reseller"},"wa_id":RESELLER_PHONE}],
        "messages":[{"from":RESELLER_PHONE,"id":"wamid.QUOTE1","timestamp":chrono::Utc::now().timestamp().to_string(),"type":"text","text":{"body":"S.1234"}}]},
        "field":"messages"}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let r = stack
        .http
        .post(format!("{}/webhook/meta", stack.ingress_url))
        .header(
            "X-Hub-Signature-256",
            wacenter_whatsapp::sign_hub(b"test_app_secret", &raw),
        )
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent = wacenter_test_support::eventually(
        Duration::from_secs(20),
        "the auto-reply at the Meta peer",
        || async {
            let sent = meta.sent.lock().unwrap().clone();
            (!sent.is_empty()).then_some(sent)
        },
    )
    .await;
    assert_eq!(
        sent[0]["phone_number_id"],
        json!(PHONE_NUMBER_ID),
        "through the number that received the command"
    );
    assert_eq!(
        sent[0]["body"]["context"]["message_id"],
        json!("wamid.QUOTE1")
    );
    assert_eq!(sent[0]["body"]["to"], json!(RESELLER_PHONE));
    stack.stop().await;
}

/// The arrival times (ms) at the WhatsApp simulator, oldest first, with each message's text.
fn arrivals(sent: &[Value]) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = sent
        .iter()
        .map(|m| {
            let at = chrono::DateTime::parse_from_rfc3339(m["received_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (
                at,
                m["body"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `WA_SEND_RATE=4`: two reply replicas share the account's slots, so what reaches WhatsApp is
/// at most four a second however many replicas send (measured at the WhatsApp simulator), and
/// an auto-reply goes ahead of a queue of outbox rows.
#[tokio::test(flavor = "multi_thread")]
async fn sending_is_paced_per_account_across_replicas_auto_replies_first() {
    const RATE: usize = 4;
    const ROWS: i64 = 12;
    let mut stack = Stack::start_with(Services::ALL, |s| {
        s.wa_send_rate = RATE as u32;
        // Outbox rows and auto-replies through one number: one account, one pace.
        s.gowa_device_id = DEVICE.into();
    })
    .await;
    stack.add_reply_replica().await;
    for kode in 1..=ROWS {
        let row = json!({"kode": 8000 + kode, "penerima": RESELLER_PHONE, "pesan": format!("INFO promo {kode}"), "tipe_penerima": "W"});
        assert_eq!(stack.callback(&row).await.status(), 200);
    }
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    let sent = wacenter_test_support::eventually(
        Duration::from_secs(30),
        "every row and the auto-reply sent",
        || async {
            let sent = stack.whatsapp_sent().await;
            (sent.len() > ROWS as usize).then_some(sent)
        },
    )
    .await;
    let at = arrivals(&sent);
    for pair in at.windows(RATE + 1) {
        let span = pair[RATE].0 - pair[0].0;
        assert!(
            span >= 850,
            "{} sends within {span} ms at {RATE} a second: {at:?}",
            RATE + 1
        );
    }
    let reply_at = at
        .iter()
        .position(|(_, text)| text.starts_with("Saldo"))
        .expect("the auto-reply was sent");
    assert!(
        reply_at < ROWS as usize - 2,
        "the auto-reply waited behind the outbox rows: position {reply_at} of {}",
        at.len()
    );
    stack.stop().await;
}
