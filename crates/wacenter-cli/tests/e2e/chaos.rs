//! Faults survived: each case drives load through a real stack while something breaks, prints
//! sent / inserted / replied / dead-lettered counts, and asserts nothing was lost and nothing
//! happened twice. (A forwarder killed with SIGKILL under load is in `pipeline`.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use wacenter_proto::DeadLetterReason;
use wacenter_test_support::eventually;

use crate::stack::*;

/// Counts of each text in a list.
fn tally<'a>(items: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i.to_string()).or_insert(0) += 1;
    }
    m
}

fn report(case: &str, sent: usize, inserted: usize, replied: usize, dead: usize) {
    println!(
        "chaos {case}: sent {sent}, inserted {inserted}, replied {replied}, dead-lettered {dead}"
    );
}

/// Posts a signed webhook like GOWA does: retried (briefly) until it gets a 200.
pub(crate) async fn deliver_like_gowa(
    http: &reqwest::Client,
    ingress: &str,
    msg: &Value,
    give_up_after: Duration,
) -> bool {
    let raw = serde_json::to_vec(msg).unwrap();
    let sig = wacenter_whatsapp::sign_hub(WEBHOOK_SECRET.as_bytes(), &raw);
    let started = Instant::now();
    while started.elapsed() < give_up_after {
        let r = http
            .post(format!("{ingress}/webhook/gowa"))
            .header("X-Hub-Signature-256", &sig)
            .body(raw.clone())
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_restarted_under_load() {
    let mut stack = Stack::start().await;
    const N: usize = 60;
    let (http, ingress) = (stack.http.clone(), stack.ingress_url.clone());
    let message = |i: usize| {
        gowa_message(
            &format!("NATS-{i}"),
            RESELLER_PHONE,
            &format!("S.1234 #{i}"),
            Utc::now(),
        )
    };
    let mut accepted = 0;
    for i in 0..N / 3 {
        accepted += usize::from(
            deliver_like_gowa(&http, &ingress, &message(i), Duration::from_secs(30)).await,
        );
    }
    // NATS dies (SIGKILL) with work in flight and comes back 3 s later while traffic continues.
    stack.nats.one().kill();
    let during = async {
        let mut n = 0;
        for i in N / 3..2 * N / 3 {
            n += usize::from(
                deliver_like_gowa(&http, &ingress, &message(i), Duration::from_secs(30)).await,
            );
        }
        n
    };
    let restart = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stack.nats.one().restart();
    };
    let (n, ()) = tokio::join!(during, restart);
    accepted += n;
    for i in 2 * N / 3..N {
        accepted += usize::from(
            deliver_like_gowa(&http, &ingress, &message(i), Duration::from_secs(30)).await,
        );
    }
    assert_eq!(
        accepted, N,
        "the provider's retries got every message in once NATS was back"
    );
    let letters = account_for_every_message(&stack, N, "nats restart").await;
    // NATS going away never leaves a call half made: a claim or outcome whose acknowledgement
    // was lost is recognised as ours, so nothing is called uncertain.
    assert!(
        letters
            .iter()
            .all(|l| l.reason != wacenter_proto::DeadLetterReason::Uncertain),
        "a NATS restart left messages uncertain"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otomax_down_for_10_seconds() {
    let stack = Stack::start_with(Services::ALL, |s| s.otomax_exp_seconds = 5).await;
    stack.otomax_faults(json!({"down_for_seconds": 10})).await;
    let started = Instant::now();
    let mut sent = 0;
    // Traffic before, during and after the outage.
    while started.elapsed() < Duration::from_secs(13) {
        let msg = gowa_message(
            &format!("DOWN-{sent}"),
            RESELLER_PHONE,
            &format!("S.1234 #{sent}"),
            Utc::now(),
        );
        assert_eq!(stack.post_gowa(&msg).await.status(), 200);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (inbox, letters) = eventually(
        Duration::from_secs(30),
        "every message inserted or dead-lettered",
        || async {
            let inbox = stack.otomax_inbox().await;
            let letters = stack.dead_letters().await;
            (inbox.len() + letters.len() >= sent).then_some((inbox, letters))
        },
    )
    .await;
    // Wait for the expired notices to go out too (they trail the dead letters).
    let expired = letters
        .iter()
        .filter(|l| l.reason == DeadLetterReason::Expired)
        .count();
    let sent_texts = eventually(
        Duration::from_secs(20),
        "every auto-reply and notice sent",
        || async {
            let texts = stack.whatsapp_sent().await;
            (texts.len() >= inbox.len() + expired).then_some(texts)
        },
    )
    .await;
    let notices = sent_texts
        .iter()
        .filter(|m| m["body"]["message"].as_str() == Some(wacenter_config::DEFAULT_EXPIRED_REPLY))
        .count();
    let replied = sent_texts.len() - notices;
    report(
        "otomax down 10 s",
        sent,
        inbox.len(),
        replied,
        letters.len(),
    );
    let inserted = tally(inbox.iter().map(|i| i["body"]["pesan"].as_str().unwrap()));
    assert!(
        inserted.values().all(|&n| n == 1),
        "inserted twice: {inserted:?}"
    );
    let dead = tally(letters.iter().map(|l| l.payload["text"].as_str().unwrap()));
    assert!(
        inserted.keys().all(|k| !dead.contains_key(k)),
        "both inserted and dead-lettered"
    );
    assert_eq!(inserted.len() + dead.len(), sent, "none lost");
    assert!(
        !inbox.is_empty() && !letters.is_empty(),
        "the outage spans both outcomes"
    );
    for l in &letters {
        assert!(
            matches!(
                l.reason,
                DeadLetterReason::Expired | DeadLetterReason::RetriesExhausted
            ),
            "{l:?}"
        );
    }
    // Never inserted late: every insert arrived before its own _exp.
    for i in &inbox {
        let arrived =
            chrono::DateTime::parse_from_rfc3339(i["received_at"].as_str().unwrap()).unwrap();
        let exp =
            chrono::DateTime::parse_from_rfc3339(i["body"]["_exp"].as_str().unwrap()).unwrap();
        assert!(arrived < exp, "inserted at {arrived}, after _exp {exp}");
    }
    assert_eq!(
        replied,
        inbox.len(),
        "every insert got its auto-reply, once"
    );
    assert_eq!(
        notices, expired,
        "every command that expired unprocessed told its sender, once"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn callback_storm_with_every_callback_repeated() {
    let stack = Stack::start().await;
    const N: i64 = 100;
    let mut calls = Vec::new();
    for kode in 0..N {
        let row = json!({"kode": 50_000 + kode, "penerima": RESELLER_PHONE, "tipe_penerima": "W", "pesan": format!("hasil #{kode}")});
        for _ in 0..3 {
            let (stack, row) = (&stack, row.clone());
            calls.push(async move { stack.callback(&row).await.status().as_u16() });
        }
    }
    let statuses = futures_join_all(calls).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let sent = stack.wait_sent(N as usize).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_now = stack.whatsapp_sent().await;
    report(
        "callback storm",
        3 * N as usize,
        0,
        sent_now.len(),
        stack.dead_letters().await.len(),
    );
    let texts = tally(sent.iter().map(|m| m["body"]["message"].as_str().unwrap()));
    assert_eq!(sent_now.len(), N as usize, "each outbox row sent once");
    assert!(texts.values().all(|&n| n == 1));
    // And OtomaX hears about each delivery.
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_answers_429_then_5xx_for_a_while() {
    let stack = Stack::start().await;
    stack
        .whatsapp_faults(json!({"fail_status": 429, "fail_for_seconds": 2}))
        .await;
    const N: i64 = 40;
    for kode in 0..N {
        if kode == N / 2 {
            stack
                .whatsapp_faults(json!({"fail_status": 503, "fail_for_seconds": 2}))
                .await;
        }
        let row = json!({"kode": 70_000 + kode, "penerima": RESELLER_PHONE, "pesan": format!("hasil #{kode}")});
        assert_eq!(stack.callback(&row).await.status(), 200);
    }
    let sent = eventually(Duration::from_secs(60), "every message sent", || async {
        let sent = stack.whatsapp_sent().await;
        (sent.len() >= N as usize).then_some(sent)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let letters = stack.dead_letters().await;
    report("whatsapp 429/5xx", N as usize, 0, sent.len(), letters.len());
    let texts = tally(sent.iter().map(|m| m["body"]["message"].as_str().unwrap()));
    assert_eq!(texts.len(), N as usize, "none lost");
    assert!(texts.values().all(|&n| n == 1), "none twice");
    assert!(
        letters.is_empty(),
        "rate limits and 5xx are retried, not dead-lettered: {letters:?}"
    );
    stack.stop().await;
}

async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    futures::future::join_all(handles).await
}

/// Waits until every one of the `n` accepted messages is accounted for, then checks from what
/// the simulators recorded and the dead letters: each inserted into OtomaX at most once, or
/// dead-lettered with its reason (none lost), most straight through, and every insert's
/// auto-reply sent once or dead-lettered. Returns the dead letters for the case's own checks.
pub(crate) async fn account_for_every_message(
    stack: &Stack,
    n: usize,
    case: &str,
) -> Vec<wacenter_proto::DeadLetter> {
    // Every accepted message is inserted once, or (if the outage outlasted its _exp or left it
    // uncertain) dead-lettered with the reason; every insert's auto-reply is sent once or
    // dead-lettered saying why. Accounted for, never twice.
    let inbound = |l: &&wacenter_proto::DeadLetter| l.subject.starts_with("wa.inbound.");
    let (inbox, sent, letters) = eventually(
        Duration::from_secs(90),
        "every message and reply accounted for",
        || async {
            let inbox = stack.otomax_inbox().await;
            let sent = stack.whatsapp_sent().await;
            let letters = stack.dead_letters().await;
            let dead_in = letters.iter().filter(inbound).count();
            let dead_out = letters.len() - dead_in;
            (inbox.len() + dead_in >= n && sent.len() + dead_out >= inbox.len())
                .then_some((inbox, sent, letters))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    report(case, n, inbox.len(), sent.len(), letters.len());
    for l in &letters {
        println!("  dead letter: {} {:?}: {}", l.id, l.reason, l.error);
    }
    let inserted = tally(inbox.iter().map(|i| i["body"]["pesan"].as_str().unwrap()));
    let dead = tally(
        letters
            .iter()
            .filter(inbound)
            .map(|l| l.payload["text"].as_str().unwrap_or_default()),
    );
    assert!(
        inserted.values().all(|&n| n == 1),
        "inserted twice: {inserted:?}"
    );
    let mut all: Vec<_> = inserted.keys().chain(dead.keys()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "none lost");
    assert!(
        inserted.len() >= n / 2,
        "most messages went straight through"
    );
    let dead_out = letters.len() - letters.iter().filter(inbound).count();
    let sent_now = stack.whatsapp_sent().await.len();
    assert!(
        sent_now <= inserted.len(),
        "never more than one auto-reply per insert"
    );
    assert_eq!(
        sent_now + dead_out,
        inserted.len(),
        "every auto-reply sent or dead-lettered"
    );
    letters
}
