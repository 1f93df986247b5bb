//! Both flows end to end: WhatsApp → OtomaX → auto-reply, and OtomaX outbox → WhatsApp.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use wacenter_proto::DeadLetterReason;
use wacenter_test_support::eventually;

use crate::stack::*;

fn texts(sent: &[Value]) -> Vec<String> {
    sent.iter()
        .map(|m| {
            m["body"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn purchase_gets_auto_reply_then_transaction_result() {
    let stack = Stack::start().await;
    stack.register_callback().await;
    let r = stack
        .whatsapp_says(RESELLER_PHONE, "S5.08123456789.1234")
        .await;
    assert_eq!(r["webhook_status"], json!(200), "{r}");

    let inbox = stack.wait_inbox(1).await;
    let body = &inbox[0]["body"];
    assert_eq!(body["pesan"], json!("S5.08123456789.1234"));
    assert_eq!(body["pengirim"], json!(RESELLER_PHONE));
    assert_eq!(body["tipe_pengirim"], json!("W"));
    assert_eq!(body["kode_terminal"], json!(1));
    assert_eq!(body["kode_reseller"], json!(""));
    let exp = chrono::DateTime::parse_from_rfc3339(body["_exp"].as_str().unwrap()).unwrap();
    assert!(body["_exp"].as_str().unwrap().ends_with('Z'));
    let lead = (exp.with_timezone(&Utc) - Utc::now()).num_seconds();
    assert!(
        (20..=31).contains(&lead),
        "_exp = message time + 30 s, was {lead} s ahead"
    );

    // The auto-reply (status 21: pesan), then the transaction result through the callback.
    let sent = stack.wait_sent(2).await;
    let t = texts(&sent);
    assert!(t[0].contains("sedang diproses"), "{t:?}");
    assert!(t[1].starts_with("SUKSES S5.08123456789"), "{t:?}");
    for m in &sent {
        assert_eq!(m["body"]["phone"], json!(RESELLER_PHONE));
    }
    assert_eq!(
        sent[0]["device_id"],
        json!(DEVICE),
        "the auto-reply goes out through the account that received the message"
    );
    assert_eq!(
        sent[1]["device_id"],
        json!(DEFAULT_DEVICE),
        "outbox rows go out through GOWA_DEVICE_ID"
    );
    // OtomaX is told the outbox row was delivered.
    let row = eventually(Duration::from_secs(10), "UpdateStatusOutbox 20", || async {
        stack
            .otomax_outbox()
            .await
            .into_iter()
            .find(|r| r["update_status"] == json!(20))
    })
    .await;
    assert_eq!(row["state"], json!("delivered"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stack.whatsapp_sent().await.len(), 2, "nothing more is sent");
    assert_eq!(stack.otomax_inbox().await.len(), 1);
    stack.stop().await;
}

/// An auto-reply quotes the reseller's command (GOWA `reply_message_id`), so a reseller who sent
/// several sees which answer is whose; `WA_QUOTE_REPLIES=false` sends it plain. The expired
/// notice quotes too.
#[tokio::test(flavor = "multi_thread")]
async fn auto_replies_quote_the_command_they_answer() {
    let stack = Stack::start().await;
    stack
        .post_gowa(&gowa_message(
            "QUOTE-1",
            RESELLER_PHONE,
            "S.1234",
            Utc::now(),
        ))
        .await;
    let sent = stack.wait_sent(1).await;
    assert_eq!(
        sent[0]["body"]["reply_message_id"],
        json!("QUOTE-1"),
        "{}",
        sent[0]
    );
    stack.stop().await;

    let stack = Stack::start_with(Services::ALL, |s| s.wa_quote_replies = false).await;
    stack
        .post_gowa(&gowa_message(
            "QUOTE-2",
            RESELLER_PHONE,
            "S.1234",
            Utc::now(),
        ))
        .await;
    let sent = stack.wait_sent(1).await;
    assert!(
        sent[0]["body"].get("reply_message_id").is_none(),
        "{}",
        sent[0]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_auto_reply_status() {
    let stack = Stack::start().await;
    stack
        .whatsapp_says(STRANGER_PHONE, "S5.08123456789.1234")
        .await; // 41
    stack.wait_sent(1).await;
    stack
        .whatsapp_says(RESELLER_PHONE, "halo, saldo saya berapa?")
        .await; // 42
    stack.wait_sent(2).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await; // 21 balance
    let sent = stack.wait_sent(3).await;
    stack.whatsapp_says(POOR_RESELLER_PHONE, "S.1111").await; // 49: no auto-reply
    stack.wait_inbox(4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = texts(&sent);
    assert_eq!(t[0], "Bukan Reseller");
    assert_eq!(t[1], "Format Salah");
    assert!(t[2].starts_with("Saldo"), "{t:?}");
    assert_eq!(
        stack.whatsapp_sent().await.len(),
        3,
        "status 49 gets no auto-reply"
    );
    assert_eq!(sent[0]["body"]["phone"], json!(STRANGER_PHONE));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_reply_can_be_disabled() {
    let stack = Stack::start_with(Services::ALL, |s| s.otomax_auto_reply_enabled = false).await;
    stack.whatsapp_says(STRANGER_PHONE, "S.1234").await;
    stack.wait_inbox(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.whatsapp_sent().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_flags_defaults() {
    let stack = Stack::start().await;
    let now = Utc::now();
    // Group message: not forwarded by default.
    stack
        .incoming(json!({"from": RESELLER_PHONE, "text": "S.1234", "group": "120363025246125486"}))
        .await;
    // From our own number (outgoing): not forwarded by default.
    stack
        .incoming(json!({"from": RESELLER_PHONE, "text": "S.1234", "from_me": true}))
        .await;
    // Media with a caption: not forwarded by default.
    let mut media = gowa_message("MEDIA1", RESELLER_PHONE, "", now);
    media["payload"]["image"] = json!({"path": "/media/1.jpg", "caption": "S.1234"});
    assert_eq!(stack.post_gowa(&media).await.status(), 200);
    // Empty text.
    stack
        .incoming(json!({"from": RESELLER_PHONE, "text": "   "}))
        .await;
    // A normal message goes through, and is the only one.
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    stack.wait_inbox(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.otomax_inbox().await.len(), 1);
    stack.stop().await;
}

/// A send whose answer was lost (the provider sent it, then answered 504) never tells the reply
/// service the message's id; its echo must still never reach OtomaX with outgoing forwarding on,
/// or OtomaX and wacenter would answer each other.
#[tokio::test(flavor = "multi_thread")]
async fn the_echo_of_a_send_whose_answer_was_lost_is_not_forwarded() {
    let stack = Stack::start_full(Services::ALL, Duration::from_millis(300), true, |s| {
        s.otomax_forward_outgoing = true;
    })
    .await;
    stack.whatsapp_faults(json!({"lose_answers": true})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    // The auto-reply went out, its answer was lost: uncertain, and its echo came back.
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(
        letters[0].reason,
        DeadLetterReason::Uncertain,
        "{letters:?}"
    );
    assert_eq!(stack.wait_sent(1).await.len(), 1);
    // Longer than the forwarder's wait for a from-me message to be recognised as ours.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let inbox = stack.otomax_inbox().await;
    assert_eq!(
        inbox.len(),
        1,
        "the echo of our own reply was forwarded: {:?}",
        inbox
            .iter()
            .map(|i| &i["body"]["pesan"])
            .collect::<Vec<_>>()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_flags_opened() {
    let stack = Stack::start_full(Services::ALL, Duration::from_millis(300), true, |s| {
        s.otomax_forward_groups = true;
        s.otomax_forward_media = true;
        s.otomax_forward_outgoing = true;
    })
    .await;
    stack
        .incoming(json!({"from": RESELLER_PHONE, "text": "S.1234", "group": "120363025246125486"}))
        .await;
    let mut media = gowa_message("MEDIA2", RESELLER_PHONE, "", Utc::now());
    media["payload"]["image"] = json!({"path": "/media/2.jpg", "caption": "TIKET.100000.1234"});
    assert_eq!(stack.post_gowa(&media).await.status(), 200);
    stack
        .incoming(json!({"from": RESELLER_PHONE, "text": "S.1234", "from_me": true}))
        .await;
    let inbox = stack.wait_inbox(3).await;
    let pesan: Vec<_> = inbox
        .iter()
        .map(|i| i["body"]["pesan"].as_str().unwrap().to_string())
        .collect();
    assert!(
        pesan.contains(&"TIKET.100000.1234".to_string()),
        "media caption forwarded: {pesan:?}"
    );
    // Our own auto-replies come back as from_me echoes (echo_sent) and must never be forwarded.
    stack.wait_sent(3).await;
    // Longer than the forwarder's wait for a from-me message to be recognised as ours.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let inbox = stack.otomax_inbox().await;
    assert_eq!(
        inbox.len(),
        3,
        "echoes of our own replies were forwarded: {:?}",
        inbox
            .iter()
            .map(|i| &i["body"]["pesan"])
            .collect::<Vec<_>>()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_disabled_forwards_nothing() {
    let stack = Stack::start_with(Services::ALL, |s| s.otomax_enabled = false).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(stack.otomax_inbox().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_webhooks_give_one_insert_and_one_reply() {
    let stack = Stack::start().await;
    let msg = gowa_message("DUP-1", RESELLER_PHONE, "S.1234", Utc::now());
    // The same delivery twice in the same instant, then again later (GOWA retries).
    let (a, b) = tokio::join!(stack.post_gowa(&msg), stack.post_gowa(&msg));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    stack.wait_sent(1).await;
    assert_eq!(stack.post_gowa(&msg).await.status(), 200);
    // Past the stream's dedupe window (simulated: a second stream message with another
    // Nats-Msg-Id), the idempotency record still stops it.
    let bus = stack.bus().await;
    let inbound: wacenter_proto::InboundMessage = match wacenter_whatsapp::parse_webhook(
        wacenter_proto::Provider::Gowa,
        &serde_json::to_vec(&msg).unwrap(),
        Utc::now(),
        "62",
    )
    .unwrap()
    {
        wacenter_whatsapp::Parsed::Messages(m) => m[0].clone(),
        other => panic!("{other:?}"),
    };
    bus.publish(
        "wa.inbound.gowa",
        "days-later-redelivery",
        Default::default(),
        serde_json::to_vec(&inbound).unwrap().into(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        stack.otomax_inbox().await.len(),
        1,
        "exactly one InsertInbox"
    );
    assert_eq!(
        stack.whatsapp_sent().await.len(),
        1,
        "exactly one auto-reply"
    );
    stack.stop().await;
}

/// A sender WhatsApp shows only as a LID, with no field that gives the phone number, is never
/// inserted under a made-up number (the LID's digits): dead-lettered `no_phone_number`, with
/// the message kept, so the operator sees it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sender_without_a_phone_number_is_dead_lettered_never_inserted() {
    let stack = Stack::start().await;
    let mut body = gowa_message("LID-1", RESELLER_PHONE, "S.1234", Utc::now());
    body["payload"]["from"] = json!("12345678901234@lid");
    body["payload"]["from_lid"] = json!("12345678901234@lid");
    body["payload"]["chat_id"] = json!("12345678901234@lid");
    assert_eq!(stack.post_gowa(&body).await.status(), 200);
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::NoPhoneNumber);
    assert!(letters[0].error.contains("LID"), "{}", letters[0].error);
    assert_eq!(letters[0].payload["message_id"], json!("LID-1"));
    assert!(stack.otomax_inbox().await.is_empty());
    assert!(stack.whatsapp_sent().await.is_empty(), "nobody to answer");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_message_is_dead_lettered_never_inserted() {
    let stack = Stack::start().await;
    let old = Utc::now() - chrono::Duration::seconds(120);
    assert_eq!(
        stack
            .post_gowa(&gowa_message("OLD-1", RESELLER_PHONE, "S.1234", old))
            .await
            .status(),
        200
    );
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::Expired);
    assert!(letters[0].id.ends_with("OLD-1"));
    assert_eq!(
        letters[0].payload["message_id"],
        json!("OLD-1"),
        "the original message is kept"
    );
    assert!(stack.otomax_inbox().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_down_past_exp_dead_letters_without_a_late_insert() {
    let stack = Stack::start_with(Services::ALL, |s| s.otomax_exp_seconds = 4).await;
    stack.otomax_faults(json!({"down_for_seconds": 10})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(
        letters[0].reason,
        DeadLetterReason::Expired,
        "{:?}",
        letters[0]
    );
    assert!(
        letters[0].error.contains("503"),
        "the last error is kept: {}",
        letters[0].error
    );
    stack.otomax_faults(json!({"down_for_seconds": 0})).await;
    // The reseller is told, once, instead of waiting for an answer that never comes.
    let sent = stack.wait_sent(1).await;
    assert_eq!(texts(&sent), vec![wacenter_config::DEFAULT_EXPIRED_REPLY]);
    assert!(
        sent[0]["body"]["phone"]
            .as_str()
            .unwrap()
            .starts_with(RESELLER_PHONE),
        "{sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.otomax_inbox().await.is_empty(), "never inserted late");
    assert_eq!(stack.whatsapp_sent().await.len(), 1, "told once");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_off_at_exp_is_uncertain_and_replays_only_with_force() {
    let stack = Stack::start_with(Services::ALL, |s| s.otomax_exp_seconds = 3).await;
    // OtomaX takes longer than the message lives: the attempt is cut off at _exp while OtomaX
    // holds it, so nobody can say it did not happen.
    stack.otomax_faults(json!({"latency_ms": 6000})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(
        letters[0].reason,
        DeadLetterReason::Uncertain,
        "{:?}",
        letters[0]
    );
    stack.otomax_faults(json!({"latency_ms": 0})).await;
    let bus = stack.bus().await;
    let one = wacenter_bus::deadletters::Selector::One(letters[0].id.clone());
    let fresh = wacenter_bus::deadletters::ReplayOptions {
        fresh: true,
        force: false,
    };
    let done = wacenter_bus::deadletters::replay(&bus, &one, fresh, None)
        .await
        .unwrap();
    assert_eq!(
        done[0].outcome,
        wacenter_bus::deadletters::ReplayOutcome::NeedsForce
    );
    assert_eq!(stack.dead_letters().await.len(), 1, "the letter stays");
    let forced = wacenter_bus::deadletters::ReplayOptions {
        force: true,
        ..fresh
    };
    let done = wacenter_bus::deadletters::replay(&bus, &one, forced, None)
        .await
        .unwrap();
    assert_eq!(
        done[0].outcome,
        wacenter_bus::deadletters::ReplayOutcome::Replayed
    );
    stack.wait_inbox(1).await;
    assert!(
        stack
            .whatsapp_sent()
            .await
            .iter()
            .all(|m| m["body"]["message"] != json!(wacenter_config::DEFAULT_EXPIRED_REPLY)),
        "an uncertain message is not called expired to its sender"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delivery_report_reaches_otomax_after_an_outage_without_a_second_send() {
    let stack = Stack::start().await;
    stack.register_callback().await;
    stack
        .whatsapp_says(RESELLER_PHONE, "S5.08123456789.1234")
        .await;
    stack.wait_inbox(1).await;
    // Down longer than the client's own retries (1 + 2 + 4 s) of the report: only a durable
    // retry gets it there. The outbox row itself still reaches wacenter (OtomaX pushes it).
    stack.otomax_faults(json!({"down_for_seconds": 9})).await;
    let sent = stack.wait_sent(2).await;
    let row = eventually(
        Duration::from_secs(40),
        "UpdateStatusOutbox 20 once OtomaX is back",
        || async {
            stack
                .otomax_outbox()
                .await
                .into_iter()
                .find(|r| r["update_status"] == json!(20))
        },
    )
    .await;
    assert_eq!(row["state"], json!("delivered"));
    assert_eq!(
        stack.whatsapp_sent().await.len(),
        sent.len(),
        "reporting again never sends again"
    );
    assert!(stack.dead_letters().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_down_briefly_is_retried_within_exp() {
    let stack = Stack::start().await;
    stack.otomax_faults(json!({"down_for_seconds": 1.5})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    stack.wait_sent(1).await;
    assert_eq!(stack.otomax_inbox().await.len(), 1);
    assert!(stack.dead_letters().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_dead_letter_as_auth_failed() {
    let stack = Stack::start_with(Services::ALL, |s| {
        s.otomax_dev_key = wacenter_config::Secret::new("wrong")
    })
    .await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::AuthFailed);
    // OtomaX never saw the command: the reseller is told, once, instead of waiting.
    let sent = stack.wait_sent(1).await;
    assert_eq!(
        texts(&sent),
        vec![wacenter_config::DEFAULT_AUTH_FAILED_REPLY]
    );
    assert_eq!(sent[0]["device_id"], json!(DEVICE));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack.whatsapp_sent().await.len(), 1, "told once");
    stack.stop().await;
}

/// OtomaX refusing the command (`ok:false`, as a server with the terminal switched off does):
/// dead-lettered `rejected`, and the reseller told once; an empty notice text turns it off.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_command_is_dead_lettered_and_its_sender_told() {
    let stack = Stack::start().await;
    stack.otomax_faults(json!({"reject_inbox": true})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::Rejected);
    assert!(
        letters[0].error.contains("terminal"),
        "{}",
        letters[0].error
    );
    let sent = stack.wait_sent(1).await;
    assert_eq!(texts(&sent), vec![wacenter_config::DEFAULT_REJECTED_REPLY]);
    stack.stop().await;

    let stack = Stack::start_with(Services::ALL, |s| s.otomax_rejected_reply = String::new()).await;
    stack.otomax_faults(json!({"reject_inbox": true})).await;
    stack.whatsapp_says(RESELLER_PHONE, "S.1234").await;
    stack.wait_dead_letters(1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(stack.whatsapp_sent().await.is_empty(), "turned off");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_signature_and_shape_failures_publish_nothing() {
    let stack = Stack::start().await;
    let raw =
        serde_json::to_vec(&gowa_message("SIG-1", RESELLER_PHONE, "S.1234", Utc::now())).unwrap();
    let url = format!("{}/webhook/gowa", stack.ingress_url);
    let post = |sig: Option<&str>, body: Vec<u8>| {
        let mut r = stack
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = sig {
            r = r.header("X-Hub-Signature-256", s.to_string());
        }
        r.send()
    };
    assert_eq!(
        post(None, raw.clone()).await.unwrap().status(),
        401,
        "unsigned"
    );
    let wrong = wacenter_whatsapp::sign_hub(b"another secret", &raw);
    assert_eq!(
        post(Some(&wrong), raw.clone()).await.unwrap().status(),
        401,
        "wrongly signed"
    );
    assert_eq!(
        post(Some("sha256=nothex"), raw.clone())
            .await
            .unwrap()
            .status(),
        401,
        "malformed signature"
    );
    // Signed but unreadable: kept (see the unreadable-webhook test), never refused into a loss.
    let garbage = b"{not json".to_vec();
    let sig = wacenter_whatsapp::sign_hub(WEBHOOK_SECRET.as_bytes(), &garbage);
    let r = post(Some(&sig), garbage).await.unwrap();
    assert_eq!(r.status(), 200, "malformed JSON is kept");
    let huge = vec![b' '; 2 << 20];
    let sig = wacenter_whatsapp::sign_hub(WEBHOOK_SECRET.as_bytes(), &huge);
    // The server answers 413 as soon as it sees the size; the client may then find the
    // connection closed while it is still sending, which is a refusal too. A client of its own,
    // so the connection the server closes never goes back to the shared pool for the next test.
    let oversized = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("X-Hub-Signature-256", sig)
        .body(huge)
        .send();
    match oversized.await {
        Ok(r) => assert_eq!(r.status(), 413, "oversized"),
        Err(e) => assert!(e.is_request() || e.is_body(), "oversized body refused: {e}"),
    }
    let r = stack
        .http
        .post(format!("{}/webhook/telegram", stack.ingress_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "unknown provider");
    let r = stack
        .http
        .post(format!("{}/webhook/meta", stack.ingress_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "Meta not configured: disabled");
    // Receipts are acknowledged and not published.
    let ack = json!({"event":"message.ack","device_id":DEVICE,"payload":{"ids":["X"],"receipt_type":"read"}});
    let r = stack.post_gowa(&ack).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], json!("ignored"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        stack.otomax_inbox().await.is_empty(),
        "nothing was published"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_webhooks_handshake_and_messages() {
    let stack = Stack::start_with(Services::ALL, |s| {
        s.meta_app_secret = wacenter_config::Secret::new("test_app_secret");
        s.meta_verify_token = wacenter_config::Secret::new("verify-me");
    })
    .await;
    let url = format!("{}/webhook/meta", stack.ingress_url);
    let r = stack
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "1158201444");
    let r = stack
        .http
        .get(format!(
            "{url}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = json!({"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
        "contacts":[{"profile":{"name":"Reseller"},"wa_id":RESELLER_PHONE}],
        "messages":[{"from":RESELLER_PHONE,"id":"wamid.TEST1","timestamp":Utc::now().timestamp().to_string(),"type":"text","text":{"body":"S.1234"}}]},
        "field":"messages"}]}]});
    let raw = serde_json::to_vec(&body).unwrap();
    let sig = wacenter_whatsapp::sign_hub(b"test_app_secret", &raw);
    let r = stack
        .http
        .post(&url)
        .header("X-Hub-Signature-256", sig)
        .body(raw.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let inbox = stack.wait_inbox(1).await;
    assert_eq!(inbox[0]["body"]["pengirim"], json!(RESELLER_PHONE));
    let r = stack
        .http
        .post(&url)
        .header("X-Hub-Signature-256", "sha256=00")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_in_both_shapes_and_repeated_send_once() {
    let stack = Stack::start().await;
    let row = json!({"kode": "9047353", "tgl_entri": "2026-01-01T00:00:00", "penerima": "081234567890", "tipe_penerima": "W",
                     "pesan": "SUKSES S5 SN:123", "status": 0, "kode_inbox": 218223});
    let seed_shape = json!({"kode": 9047354, "status": 21, "message": "Sukses", "pesan": "Saldo Anda Rp 1.000", "pengirim": "+62 812-0000-1111"});
    for body in [&row, &row, &seed_shape, &row] {
        let r = stack.callback(body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let sent = stack.wait_sent(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_now = stack.whatsapp_sent().await;
    assert_eq!(
        sent_now.len(),
        2,
        "a repeated callback sends once: {sent_now:?}"
    );
    let phones: Vec<_> = sent
        .iter()
        .map(|m| m["body"]["phone"].as_str().unwrap().to_string())
        .collect();
    assert!(
        phones.contains(&"6281234567890".to_string()),
        "08… becomes 628…: {phones:?}"
    );
    assert!(phones.contains(&"6281200001111".to_string()), "{phones:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_refusals() {
    let stack = Stack::start().await;
    let url = format!("{}/otomax/callback", stack.callback_url);
    let row = json!({"kode": 1, "penerima": "6281", "pesan": "x"});
    let r = stack.http.post(&url).json(&row).send().await.unwrap();
    assert_eq!(r.status(), 401, "missing secret");
    let r = stack
        .http
        .post(format!("{url}?secret=wrong"))
        .json(&row)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong secret");
    let r = stack
        .http
        .post(&url)
        .header("X-Callback-Secret", CALLBACK_SECRET)
        .json(&json!({"kode": 2, "pesan": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no recipient");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], json!("VALIDATION_ERROR"));
    assert!(v["message"].as_str().unwrap().contains("recipient"), "{v}");
    let r = stack
        .callback(&json!({"kode": 3, "penerima": "not a phone", "pesan": "hi"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = stack
        .callback(
            &json!({"kode": 4, "penerima": "628123", "tipe_penerima": "S", "pesan": "sms only"}),
        )
        .await;
    assert_eq!(r.status(), 200, "other channels are skipped with 200");
    let r = stack
        .callback(&json!({"kode": 5, "penerima": "628123456789", "pesan": ""}))
        .await;
    assert_eq!(r.status(), 200, "empty pesan skipped with 200");
    let r = stack
        .http
        .post(format!("{url}?secret={CALLBACK_SECRET}"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stack.whatsapp_sent().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_permanent_rejection_is_dead_lettered_and_reported() {
    let stack = Stack::start().await;
    stack
        .whatsapp_faults(json!({"fail_status": 400, "fail_for_seconds": 60}))
        .await;
    let r = stack
        .callback(&json!({"kode": 777, "penerima": RESELLER_PHONE, "pesan": "hasil transaksi"}))
        .await;
    assert_eq!(r.status(), 200);
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::SendFailed);
    assert!(letters[0].error.contains("400"), "{}", letters[0].error);
    assert_eq!(letters[0].id, "outbox:777");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_rate_limits_and_5xx_are_retried_then_sent_once() {
    let stack = Stack::start().await;
    stack
        .whatsapp_faults(json!({"fail_status": 429, "fail_for_seconds": 1.5}))
        .await;
    stack
        .callback(&json!({"kode": 8001, "penerima": RESELLER_PHONE, "pesan": "satu"}))
        .await;
    stack.wait_sent(1).await;
    stack
        .whatsapp_faults(json!({"fail_status": 503, "fail_for_seconds": 1.5}))
        .await;
    stack
        .callback(&json!({"kode": 8002, "penerima": RESELLER_PHONE, "pesan": "dua"}))
        .await;
    let sent = stack.wait_sent(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.whatsapp_sent().await.len(), 2);
    assert_eq!(texts(&sent), vec!["satu", "dua"]);
    assert!(stack.dead_letters().await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_means_503_then_recovery() {
    let mut stack = Stack::start().await;
    stack.nats.one().kill();
    eventually(
        Duration::from_secs(10),
        "ingress to notice NATS is gone",
        || async {
            let r = stack
                .post_gowa(&gowa_message(
                    "DOWN-1",
                    RESELLER_PHONE,
                    "S.1234",
                    Utc::now(),
                ))
                .await;
            (r.status() == 503).then_some(())
        },
    )
    .await;
    let r = stack
        .callback(&json!({"kode": 1, "penerima": RESELLER_PHONE, "pesan": "x"}))
        .await;
    assert_eq!(r.status(), 503);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.ingress_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "readiness tells the truth");
    stack.nats.one().restart();
    // The provider retries; once NATS is back the message goes through, once.
    eventually(
        Duration::from_secs(20),
        "ingress to accept again",
        || async {
            let r = stack
                .post_gowa(&gowa_message(
                    "DOWN-1",
                    RESELLER_PHONE,
                    "S.1234",
                    Utc::now(),
                ))
                .await;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    stack.wait_sent(1).await;
    assert_eq!(stack.otomax_inbox().await.len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_webhook_that_cannot_be_parsed_is_kept_and_replayed_after_an_upgrade() {
    let stack = Stack::start().await;
    // A provider changed a field's type: the message id became an object.
    let mut changed = gowa_message("SHAPE-1", RESELLER_PHONE, "S.1234", Utc::now());
    changed["payload"]["id"] = json!({"value": "SHAPE-1"});
    let r = stack.post_gowa(&changed).await;
    assert_eq!(r.status(), 200, "kept, so the provider does not give up");
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["status"], json!("kept"), "{answer}");
    let letters = stack.wait_dead_letters(1).await;
    assert_eq!(letters[0].reason, DeadLetterReason::Unreadable);
    assert_eq!(letters[0].subject, "webhook.gowa");
    let raw: Value = serde_json::from_str(letters[0].payload["body"].as_str().unwrap()).unwrap();
    assert_eq!(raw, changed, "the raw body is kept whole");
    assert!(letters[0].payload["headers"]["x-hub-signature-256"].is_string());
    // The same webhook again (the provider retrying) keeps one letter.
    assert_eq!(stack.post_gowa(&changed).await.status(), 200);
    assert!(stack.otomax_inbox().await.is_empty());
    let bus = stack.bus().await;
    let one = wacenter_bus::deadletters::Selector::One(letters[0].id.clone());
    let options = wacenter_bus::deadletters::ReplayOptions::default();
    // This version still cannot read it: the letter stays.
    let lanes = wacenter_config::Lanes::default();
    let today = |provider, body: &[u8]| wacenter_ingress::messages_of(provider, body, "62", &lanes);
    let done = wacenter_bus::deadletters::replay(&bus, &one, options, Some(&today))
        .await
        .unwrap();
    assert_eq!(
        done[0].outcome,
        wacenter_bus::deadletters::ReplayOutcome::StillUnreadable
    );
    assert_eq!(stack.dead_letters().await.len(), 1);
    // "After the upgrade": a parser that understands the new shape.
    let upgraded = |provider, body: &[u8]| {
        let mut v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let id = v["payload"]["id"]["value"].clone();
        v["payload"]["id"] = id;
        today(provider, &serde_json::to_vec(&v).unwrap())
    };
    let done = wacenter_bus::deadletters::replay(&bus, &one, options, Some(&upgraded))
        .await
        .unwrap();
    assert_eq!(
        done[0].outcome,
        wacenter_bus::deadletters::ReplayOutcome::Replayed
    );
    let inbox = stack.wait_inbox(1).await;
    assert_eq!(inbox[0]["body"]["pesan"], json!("S.1234"));
    assert!(stack.dead_letters().await.is_empty(), "the letter is gone");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_can_be_replayed() {
    let stack = Stack::start().await;
    let old = Utc::now() - chrono::Duration::seconds(120);
    stack
        .post_gowa(&gowa_message("REPLAY-1", RESELLER_PHONE, "S.1234", old))
        .await;
    let letters = stack.wait_dead_letters(1).await;
    let bus = stack.bus().await;
    let done = wacenter_bus::deadletters::replay(
        &bus,
        &wacenter_bus::deadletters::Selector::One(letters[0].id.clone()),
        wacenter_bus::deadletters::ReplayOptions {
            fresh: true,
            force: false,
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 1);
    stack.wait_sent(1).await;
    assert_eq!(
        stack.otomax_inbox().await.len(),
        1,
        "replayed with a fresh _exp, inserted once"
    );
    assert!(
        stack.dead_letters().await.is_empty(),
        "the replayed letter is gone"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarder_killed_mid_flight_is_finished_by_another_replica_never_twice() {
    let stack = Stack::start_with(
        Services {
            forwarder: false,
            ..Services::ALL
        },
        |_| {},
    )
    .await;
    stack.otomax_faults(json!({"latency_ms": 400})).await;
    let mut a_settings = stack.settings.clone();
    a_settings.forwarder_port = wacenter_test_support::free_port();
    a_settings.forwarder_concurrency = 8;
    let mut b_settings = a_settings.clone();
    b_settings.forwarder_port = wacenter_test_support::free_port();
    let mut a = spawn_services(&a_settings, "forwarder");
    let mut b = spawn_services(&b_settings, "forwarder");
    for port in [a_settings.forwarder_port, b_settings.forwarder_port] {
        eventually(
            Duration::from_secs(20),
            "forwarder replica ready",
            || async {
                let r = stack
                    .http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            },
        )
        .await;
    }
    const N: usize = 40;
    for i in 0..N {
        let r = stack
            .post_gowa(&gowa_message(
                &format!("KILL-{i}"),
                RESELLER_PHONE,
                &format!("pesan nomor {i}"),
                Utc::now(),
            ))
            .await;
        assert_eq!(r.status(), 200);
    }
    // Kill one replica with SIGKILL while OtomaX calls are on the wire.
    stack.wait_inbox(3).await;
    a.kill().await;

    // Every message ends up inserted exactly once, or (if it was on the wire when its replica
    // died) dead-lettered as uncertain — never inserted twice.
    let (inserted, uncertain) = eventually(
        Duration::from_secs(60),
        "every message accounted for",
        || async {
            let inbox = stack.otomax_inbox().await;
            let letters = stack.dead_letters().await;
            let inserted: Vec<String> = inbox
                .iter()
                .map(|i| i["body"]["pesan"].as_str().unwrap().to_string())
                .collect();
            let uncertain: Vec<String> = letters
                .iter()
                .filter(|l| l.reason == DeadLetterReason::Uncertain)
                .map(|l| l.payload["text"].as_str().unwrap().to_string())
                .collect();
            let mut all: Vec<_> = inserted.iter().chain(uncertain.iter()).cloned().collect();
            all.sort();
            all.dedup();
            (all.len() == N).then_some((inserted, uncertain))
        },
    )
    .await;
    let mut unique = inserted.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        inserted.len(),
        "a message was inserted twice: {inserted:?}"
    );
    println!(
        "killed a replica: {} inserted, {} dead-lettered as uncertain",
        inserted.len(),
        uncertain.len()
    );
    assert!(
        inserted.len() > N / 2,
        "the surviving replica finished the rest"
    );
    b.kill().await;
    stack.stop().await;
}
