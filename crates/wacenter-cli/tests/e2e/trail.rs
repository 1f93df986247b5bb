//! The message trail: every step recorded on NATS, and `wacenter trace` finding one message by
//! each kind of query (WhatsApp message id, phone number, kode_inbox, outbox kode).

use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use wacenter_test_support::eventually;

use crate::stack::*;

const BIN: &str = env!("CARGO_BIN_EXE_wacenter");

fn trace(stack: &Stack, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("trace")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NATS_URL", &stack.settings.nats_url)
        .output()
        .expect("run wacenter trace")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The steps of the one timeline `query` finds, as `wacenter trace --json` prints them.
fn steps_of(stack: &Stack, query: &str) -> Vec<Value> {
    let out = trace(stack, &["--json", query]);
    assert!(
        out.status.success(),
        "trace {query}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mine: Vec<&Value> = found
        .iter()
        .filter(|t| t["id"].as_str().unwrap().ends_with(":TRAIL-1"))
        .collect();
    assert_eq!(mine.len(), 1, "trace {query}: {found:#?}");
    mine[0]["steps"].as_array().unwrap().clone()
}

fn step_names(steps: &[Value]) -> Vec<&str> {
    steps.iter().map(|s| s["step"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_finds_a_purchase_by_each_kind_of_query() {
    let stack = Stack::start().await;
    stack.register_callback().await;
    stack
        .post_gowa(&gowa_message(
            "TRAIL-1",
            RESELLER_PHONE,
            "S5.08123456789.1234",
            Utc::now(),
        ))
        .await;
    stack.wait_sent(2).await;
    let row = eventually(Duration::from_secs(10), "UpdateStatusOutbox 20", || async {
        stack
            .otomax_outbox()
            .await
            .into_iter()
            .find(|r| r["update_status"] == json!(20))
    })
    .await;
    let kode = row["row"]["kode"].as_i64().unwrap().to_string();
    let kode_inbox = row["row"]["kode_inbox"].as_i64().unwrap().to_string();

    // Steps are written without waiting; the last one may still be on its way.
    let expected = [
        "received",
        "forwarded",
        "sent",
        "outbox_received",
        "sent",
        "outbox_status",
    ];
    // The auto-reply and the outbox row race (the simulator posts the row 300 ms after the
    // insert): only what must come first is fixed.
    let sorted = |mut names: Vec<&str>| {
        names.sort_unstable();
        names.join(",")
    };
    let in_order = |steps: &[Value]| {
        let names = step_names(steps);
        names.first() == Some(&"received")
            && names.get(1) == Some(&"forwarded")
            && names.last() == Some(&"outbox_status")
            && sorted(names.clone()) == sorted(expected.to_vec())
    };
    eventually(
        Duration::from_secs(10),
        "every step on the trail",
        || async { in_order(&steps_of(&stack, "TRAIL-1")).then_some(()) },
    )
    .await;
    // The same timeline by each kind of query: the phone as a reseller would say it, too.
    for query in [
        "TRAIL-1",
        &format!("gowa:{DEVICE}:TRAIL-1"),
        "0812-3456-789",
        RESELLER_PHONE,
        &kode_inbox,
        &kode,
    ] {
        let steps = steps_of(&stack, query);
        assert!(in_order(&steps), "{query}: {:?}", step_names(&steps));
    }
    let steps = steps_of(&stack, "TRAIL-1");
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == json!(name))
            .unwrap()
            .clone()
    };
    assert_eq!(step("received")["text"], json!("S5.08123456789.1234"));
    let forwarded = step("forwarded");
    assert_eq!(forwarded["kode_inbox"].to_string(), kode_inbox);
    assert_eq!(forwarded["status"], json!(21));
    assert!(
        forwarded["reply"]
            .as_str()
            .unwrap()
            .contains("sedang diproses"),
        "{steps:#?}"
    );
    assert!(
        step("sent")["detail"]
            .as_str()
            .unwrap()
            .starts_with("provider message id "),
        "{steps:#?}"
    );
    assert_eq!(step("outbox_received")["kode"].to_string(), kode);
    assert_eq!(step("outbox_status")["status"], json!(20));

    // The text form: one line per step, the codes an operator asks about.
    let out = trace(&stack, &["TRAIL-1"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for needle in [
        "received",
        &format!("kode_inbox {kode_inbox}"),
        &format!("kode {kode}"),
        "outbox_status",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }

    // What is not on the trail is "not found", with what can be searched.
    let out = trace(&stack, &["NO-SUCH-MESSAGE"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("kode_inbox"),
        "{err}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_shows_a_dead_letter_and_its_replay() {
    let stack = Stack::start().await;
    let old = Utc::now() - chrono::Duration::seconds(120);
    stack
        .post_gowa(&gowa_message("TRAIL-1", RESELLER_PHONE, "S.1234", old))
        .await;
    let letters = stack.wait_dead_letters(1).await;
    let steps = eventually(
        Duration::from_secs(10),
        "the dead letter on the trail",
        || async {
            let steps = steps_of(&stack, "TRAIL-1");
            (step_names(&steps) == ["received", "dead_lettered"]).then_some(steps)
        },
    )
    .await;
    assert!(
        steps[1]["detail"]
            .as_str()
            .unwrap()
            .starts_with("expired: "),
        "{steps:#?}"
    );
    let bus = stack.bus().await;
    wacenter_bus::deadletters::replay(
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
    stack.wait_sent(1).await;
    eventually(
        Duration::from_secs(10),
        "the replay on the trail",
        || async {
            let steps = steps_of(&stack, "TRAIL-1");
            let names = step_names(&steps);
            (names.starts_with(&["received", "dead_lettered", "replayed", "forwarded"])
                && names.contains(&"sent"))
            .then_some(())
        },
    )
    .await;
    stack.stop().await;
}
