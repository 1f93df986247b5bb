//! The lifecycle checker: messages of every kind through a whole deployment (each service its
//! own process, NATS a three-node cluster with every stream on three replicas) while random
//! faults strike, then a check of every promise from what the simulators recorded and the dead
//! letters, never from logs.
//!
//! Kinds: purchases (an auto-reply, then a transaction result through the outbox callback),
//! deposit tickets, unknown senders, malformed commands, the same webhook delivered twice at
//! the same instant, outbox rows OtomaX pushes on its own, and outbox rows posted again.
//! Faults, one at a time: kill -9 of any service process (restarted 1–3 s later), a NATS node
//! killed and restarted, OtomaX slow or down (sometimes past `_exp`), WhatsApp answering 429, 503
//! or 500.
//!
//! Promises checked: every accepted message in exactly one terminal state (inserted once, or
//! dead-lettered with its reason; `uncertain` may also have arrived, that is what it says); no
//! InsertInbox twice; none after its `_exp`; no echo of our own sends forwarded; no WhatsApp
//! message sent twice; every outbox row reported to OtomaX (or dead-lettered `uncertain`).
//!
//! Long (about three minutes) and heavy, so `#[ignore]`d in the plain test run: `scripts/test`
//! runs it on its own. `WACENTER_CHAOS_SEED` replays a run (the seed is printed), and
//! `WACENTER_CHAOS_SECONDS` sets how long the load lasts (default 100).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wacenter_test_support::procs::Proc;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use wacenter_config::Settings;
use wacenter_proto::{DeadLetter, DeadLetterReason};
use wacenter_test_support::{free_port, NatsCluster};

use crate::chaos::deliver_like_gowa;
use crate::stack::*;

/// The service processes, each restartable after a kill -9.
struct Processes {
    /// Killed when dropped.
    running: Vec<(&'static str, Settings, Proc)>,
}

impl Processes {
    fn start(base: &Settings) -> Self {
        let mut running = Vec::new();
        for name in ["ingress", "forwarder", "forwarder", "reply", "callback"] {
            let mut settings = base.clone();
            // Two forwarder replicas share the consumer; each needs its own ops port.
            settings.forwarder_port = free_port();
            let child = spawn_services(&settings, name);
            running.push((name, settings, child));
        }
        Self { running }
    }

    /// SIGKILL: no graceful shutdown, in-flight work abandoned mid-call.
    async fn kill(&mut self, i: usize) -> &'static str {
        let (name, _, child) = &mut self.running[i];
        child.kill().await;
        name
    }

    fn restart(&mut self, i: usize) {
        let (name, settings, child) = &mut self.running[i];
        *child = spawn_services(settings, name);
    }
}

/// What the load generator did, for the checks.
#[derive(Default)]
struct Sent {
    /// Accepted webhooks: message id → text.
    accepted: BTreeMap<String, String>,
    /// Webhooks ingress never took (the provider gave up): not wacenter's to account for.
    refused: usize,
    /// Texts whose auto-reply is unique to them (purchases and tickets).
    unique_answers: HashSet<String>,
    duplicates_posted: usize,
    outbox_pushed: usize,
    callbacks_repeated: usize,
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "about three minutes of chaos; scripts/test runs it on its own"]
async fn lifecycle_under_random_faults() {
    let seed: u64 = std::env::var("WACENTER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let seconds: u64 = std::env::var("WACENTER_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    println!(
        "lifecycle checker: seed {seed}, {seconds} s of load (replay: WACENTER_CHAOS_SEED={seed})"
    );
    // The faults' own sequence, apart from the load's, both from the seed.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);

    let nats = TestNats::Cluster(NatsCluster::start(3));
    let none = Services {
        ingress: false,
        forwarder: false,
        reply: false,
        callback: false,
    };
    let mut stack = Stack::start_on(nats, none, Duration::from_millis(500), true, |s| {
        // Our own sends come back as from-me echoes, and must never reach OtomaX.
        s.otomax_forward_outgoing = true;
        // Short enough that an OtomaX outage or a slow OtomaX expires some commands.
        s.otomax_exp_seconds = 10;
        s.otomax_timeout_seconds = 10;
    })
    .await;
    let mut procs = Processes::start(&stack.settings);
    wait_ready(&stack).await;
    stack.register_callback().await;

    // The load runs on its own while faults strike here, one at a time.
    let sent = Arc::new(Mutex::new(Sent::default()));
    let target = Target {
        http: stack.http.clone(),
        ingress: stack.ingress_url.clone(),
        otomax: stack.otomax_url.clone(),
        callback: stack.callback_url.clone(),
    };
    let load = tokio::spawn(generate_load(
        target,
        StdRng::seed_from_u64(seed),
        Duration::from_secs(seconds),
        sent.clone(),
    ));
    let started = Instant::now();
    let mut faults = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(rng.random_range(5..10))).await;
        if started.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        let fault = strike(&mut rng, &mut stack, &mut procs).await;
        println!("  [{:>5.1}s] {fault}", started.elapsed().as_secs_f64());
        faults.push(fault);
    }
    load.await.expect("the load generator does not panic");
    heal(&stack).await;

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let outcome = settle_and_check(&stack, &sent).await;
    println!(
        "lifecycle checker (seed {seed}): {} webhooks accepted ({} refused after the provider's retries, {} posted twice at once), {} outbox rows pushed, {} callbacks repeated; {} faults; inserted {}, WhatsApp sends {}, dead letters {} {:?}; outbox rows {} ({} reported to OtomaX)",
        sent.accepted.len(),
        sent.refused,
        sent.duplicates_posted,
        sent.outbox_pushed,
        sent.callbacks_repeated,
        faults.len(),
        outcome.inserted,
        outcome.sends,
        outcome.letters,
        outcome.letter_reasons,
        outcome.outbox_rows,
        outcome.reported,
    );
    assert!(
        outcome.violations.is_empty(),
        "promises broken (replay with WACENTER_CHAOS_SEED={seed}):\n{}",
        outcome.violations.join("\n")
    );
    drop(procs);
    stack.stop().await;
}

/// Where the load goes.
struct Target {
    http: reqwest::Client,
    ingress: String,
    /// With a trailing `/`.
    otomax: String,
    callback: String,
}

/// Messages of every kind for `length`, one every 60–200 ms, each in its own task.
async fn generate_load(t: Target, mut rng: StdRng, length: Duration, sent: Arc<Mutex<Sent>>) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while started.elapsed() < length {
        n += 1;
        let (http, ingress, sent) = (t.http.clone(), t.ingress.clone(), sent.clone());
        // A webhook: its text, its sender, whether its auto-reply names it alone, and whether
        // the gateway delivers it twice at the same instant.
        let webhook_of = |roll| match roll {
            // A purchase: auto-reply now, the transaction result through the outbox later.
            0..=34 => Some((format!("S1.08{n:010}.1234"), RESELLER_PHONE, true, false)),
            35..=54 => Some((
                format!("TIKET.{}.1234", 10_000 + n),
                RESELLER_PHONE,
                true,
                false,
            )),
            55..=64 => Some((format!("S.1234 X{n}"), STRANGER_PHONE, false, false)),
            65..=72 => Some((format!("HALO{n}"), RESELLER_PHONE, false, false)),
            // The same webhook twice at the same instant, as gateways do.
            73..=82 => Some((
                format!("TIKET.{}.1234", 10_000 + n),
                RESELLER_PHONE,
                true,
                true,
            )),
            _ => None,
        };
        let roll = rng.random_range(0..100);
        if let Some((text, from, unique, twice)) = webhook_of(roll) {
            tasks.spawn(webhook(http, ingress, sent, n, text, from, unique, twice));
        } else if roll <= 92 {
            // OtomaX pushes a row of its own (a notice).
            let url = format!("{}_sim/outbox", t.otomax);
            let body =
                json!({"penerima": RESELLER_PHONE, "pesan": format!("INFO saldo masuk #{n}")});
            sent.lock().unwrap().outbox_pushed += 1;
            tasks.spawn(async move {
                let _ = http.post(url).json(&body).send().await;
            });
        } else {
            // OtomaX posts a row it already posted (its callback retry, a restart).
            let rows: Vec<Value> = match http.get(format!("{}_sim/outbox", t.otomax)).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            if !rows.is_empty() {
                let body = rows[rng.random_range(0..rows.len())]["row"].clone();
                let url = format!("{}/otomax/callback?secret={CALLBACK_SECRET}", t.callback);
                sent.lock().unwrap().callbacks_repeated += 1;
                tasks.spawn(async move {
                    let _ = http.post(url).json(&body).send().await;
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(60..200))).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// Posts one webhook like GOWA (retried until a 200 or for 20 s); twice at once when `twice`.
#[allow(clippy::too_many_arguments)]
async fn webhook(
    http: reqwest::Client,
    ingress: String,
    sent: Arc<Mutex<Sent>>,
    n: u64,
    text: String,
    from: &'static str,
    unique_answer: bool,
    twice: bool,
) {
    let id = format!("LC{n:06}");
    let msg = gowa_message(&id, from, &text, Utc::now());
    let patience = Duration::from_secs(20);
    let accepted = if twice {
        let (a, b) = tokio::join!(
            deliver_like_gowa(&http, &ingress, &msg, patience),
            deliver_like_gowa(&http, &ingress, &msg, patience)
        );
        a || b
    } else {
        deliver_like_gowa(&http, &ingress, &msg, patience).await
    };
    let mut sent = sent.lock().unwrap();
    sent.duplicates_posted += usize::from(twice);
    if accepted {
        if unique_answer {
            sent.unique_answers.insert(text.clone());
        }
        sent.accepted.insert(id, text);
    } else {
        sent.refused += 1;
    }
}

/// One random fault, healed before it returns; says what it was.
async fn strike(rng: &mut StdRng, stack: &mut Stack, procs: &mut Processes) -> String {
    match rng.random_range(0..5) {
        0 => {
            let i = rng.random_range(0..procs.running.len());
            let down = Duration::from_millis(rng.random_range(1_000..3_000));
            let name = procs.kill(i).await;
            tokio::time::sleep(down).await;
            procs.restart(i);
            format!("kill -9 {name} (process {i}), restarted after {down:?}")
        }
        1 => {
            let node = format!("n{}", rng.random_range(0..3));
            let down = Duration::from_millis(rng.random_range(3_000..6_000));
            stack.nats.cluster().node(&node).kill();
            tokio::time::sleep(down).await;
            stack.nats.cluster().node(&node).restart();
            format!("NATS node {node} killed, restarted after {down:?}")
        }
        2 => {
            let latency = rng.random_range(3_000..8_000);
            stack.otomax_faults(json!({"latency_ms": latency})).await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            stack.otomax_faults(json!({"latency_ms": 0})).await;
            format!("OtomaX answering in {latency} ms for 6 s")
        }
        3 => {
            // Sometimes longer than `_exp` (10 s): those commands expire, their senders told.
            let down = rng.random_range(4..14);
            stack.otomax_faults(json!({"down_for_seconds": down})).await;
            tokio::time::sleep(Duration::from_secs(down)).await;
            format!("OtomaX down for {down} s")
        }
        _ => {
            // 500 may come after the message left: dead-lettered uncertain, never resent.
            let status = [429, 503, 500][rng.random_range(0..3)];
            stack
                .whatsapp_faults(json!({"fail_status": status, "fail_for_seconds": 3}))
                .await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            format!("WhatsApp answering {status} for 3 s")
        }
    }
}

async fn heal(stack: &Stack) {
    stack
        .otomax_faults(json!({"latency_ms": 0, "down_for_seconds": 0}))
        .await;
    stack
        .whatsapp_faults(json!({"fail_status": 0, "fail_for_seconds": 0}))
        .await;
}

async fn wait_ready(stack: &Stack) {
    let s = &stack.settings;
    for port in [s.ingress_port, s.reply_port, s.app_port] {
        wacenter_test_support::eventually(Duration::from_secs(60), "services ready", || async {
            let r = stack
                .http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await;
            r.is_ok_and(|r| r.status().is_success()).then_some(())
        })
        .await;
    }
}

struct Outcome {
    inserted: usize,
    sends: usize,
    letters: usize,
    letter_reasons: BTreeMap<&'static str, usize>,
    outbox_rows: usize,
    reported: usize,
    violations: Vec<String>,
}

/// Checks every promise until they all hold, or until nothing has changed for 30 s (what is
/// still broken then stays broken), or for 3 minutes at most; the violations come back in words.
async fn settle_and_check(stack: &Stack, sent: &Sent) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut last, mut since) = (Vec::new(), Instant::now());
    loop {
        let outcome = check(stack, sent).await;
        if outcome.violations != last {
            (last, since) = (outcome.violations.clone(), Instant::now());
        }
        let stuck = since.elapsed() > Duration::from_secs(30);
        if outcome.violations.is_empty() || stuck || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn check(stack: &Stack, sent: &Sent) -> Outcome {
    let inbox = stack.otomax_inbox().await;
    let wa = stack.whatsapp_sent().await;
    let outbox = stack.otomax_outbox().await;
    let letters = stack.dead_letters().await;
    let expired_at_otomax = stack
        .get_json(&format!("{}_sim/stats", stack.otomax_url))
        .await["expired"]
        .as_u64()
        .unwrap_or(0);
    let mut v = Vec::new();

    let text_of =
        |x: &Value, field: &str| x["body"][field].as_str().unwrap_or_default().to_string();
    let mut inserted: HashMap<String, usize> = HashMap::new();
    for i in &inbox {
        *inserted.entry(text_of(i, "pesan")).or_default() += 1;
        // Never after `_exp`: OtomaX got it before the deadline it was given.
        let exp = i["body"]["_exp"]
            .as_str()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok());
        let at = i["received_at"]
            .as_str()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok());
        if let (Some(exp), Some(at)) = (exp, at) {
            if at > exp {
                v.push(format!(
                    "InsertInbox after its _exp: {} at {at}, _exp {exp}",
                    text_of(i, "pesan")
                ));
            }
        }
    }
    if expired_at_otomax > 0 {
        v.push(format!(
            "{expired_at_otomax} InsertInbox calls reached OtomaX after their _exp"
        ));
    }
    for (text, count) in &inserted {
        if *count > 1 {
            v.push(format!("InsertInbox {count} times: {text}"));
        }
    }
    let inbound_letter: HashMap<&str, &DeadLetter> = letters
        .iter()
        .filter(|l| l.subject.starts_with("wa.inbound."))
        .filter_map(|l| Some((l.payload["message_id"].as_str()?, l)))
        .collect();
    for (id, text) in &sent.accepted {
        match (
            inserted.get(text).copied().unwrap_or(0),
            inbound_letter.get(id.as_str()),
        ) {
            (0, None) => v.push(format!(
                "accepted but neither inserted nor dead-lettered: {id} {text:?}"
            )),
            (1, Some(l)) if l.reason != DeadLetterReason::Uncertain => v.push(format!(
                "inserted and dead-lettered {:?}: {id} {text:?}",
                l.reason
            )),
            _ => {}
        }
    }
    // No echo forwarded: nothing we sent came back into OtomaX's inbox.
    let sends: Vec<String> = wa.iter().map(|m| text_of(m, "message")).collect();
    let sent_texts: HashSet<&String> = sends.iter().collect();
    for text in inserted.keys() {
        if sent_texts.contains(text) {
            v.push(format!("an echo of our own send reached OtomaX: {text:?}"));
        }
    }
    // No send twice: answers unique to one command, and outbox rows (unique by construction).
    let mut sends_of: HashMap<&str, usize> = HashMap::new();
    for s in &sends {
        *sends_of.entry(s.as_str()).or_default() += 1;
    }
    let unique_send = |s: &str| {
        s.contains("sedang diproses")
            || s.starts_with("Tiket deposit")
            || s.starts_with("SUKSES")
            || s.starts_with("INFO saldo masuk")
    };
    for (s, count) in &sends_of {
        if *count > 1 && unique_send(s) {
            v.push(format!("sent {count} times: {s:?}"));
        }
    }
    // Every auto-reply of an insert with a unique answer sent or dead-lettered.
    let outbound_letters: HashSet<&str> = letters
        .iter()
        .filter(|l| l.subject.starts_with("wa.outbound."))
        .map(|l| l.id.as_str())
        .collect();
    let letter_of_outbox: HashMap<i64, &DeadLetter> = letters
        .iter()
        .filter_map(|l| Some((l.payload["outbox_kode"].as_i64()?, l)))
        .collect();
    for (id, text) in &sent.accepted {
        // Not inserted, or inserted with its answer lost (`uncertain`): no auto-reply is owed.
        if !sent.unique_answers.contains(text)
            || inserted.get(text).copied().unwrap_or(0) == 0
            || inbound_letter.contains_key(id.as_str())
        {
            continue;
        }
        let dedupe = format!("gowa:{DEVICE}:{id}");
        let replied = sends.iter().any(|s| {
            let amount = text
                .strip_prefix("TIKET.")
                .and_then(|t| t.split('.').next());
            match amount {
                Some(a) => s.starts_with("Tiket deposit") && s.contains(&rupiah(a)),
                None => s.starts_with(text.trim_end_matches(".1234")),
            }
        });
        if !replied && !outbound_letters.contains(format!("autoreply:{dedupe}").as_str()) {
            v.push(format!(
                "inserted, but its auto-reply neither sent nor dead-lettered: {id} {text:?}"
            ));
        }
    }
    // Every outbox row delivered to us and reported back, or dead-lettered uncertain.
    let mut reported = 0;
    for e in &outbox {
        let kode = e["row"]["kode"].as_i64().unwrap_or(0);
        let pesan = e["row"]["pesan"].as_str().unwrap_or_default();
        if e["update_status"].is_i64() {
            reported += 1;
        } else if letter_of_outbox
            .get(&kode)
            .is_none_or(|l| l.reason != DeadLetterReason::Uncertain)
        {
            v.push(format!(
                "outbox row {kode} ({}) not reported to OtomaX: {pesan:?}",
                e["state"]
            ));
        }
        let times = sends_of.get(pesan).copied().unwrap_or(0);
        if times == 0 && !letter_of_outbox.contains_key(&kode) {
            v.push(format!(
                "outbox row {kode} neither sent nor dead-lettered: {pesan:?}"
            ));
        }
    }
    let mut letter_reasons = BTreeMap::new();
    for l in &letters {
        *letter_reasons.entry(l.reason.as_str()).or_default() += 1;
    }
    Outcome {
        inserted: inbox.len(),
        sends: wa.len(),
        letters: letters.len(),
        letter_reasons,
        outbox_rows: outbox.len(),
        reported,
        violations: v,
    }
}

/// `10042` → `10.042`, as OtomaX writes rupiah.
fn rupiah(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}
