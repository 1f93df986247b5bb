//! The console's page and the routes it is built on: trail search and live steps, dead letters
//! and their replay, today's figures; auth, cross-site refusal and security headers.

use std::time::Duration;

use serde_json::json;
use wacenter_proto::{names, DeadLetter, DeadLetterReason, TrailEvent, TrailKeyKind, TrailStep};

use crate::harness::*;

/// A purchase's steps on the trail, as the services would record them; its text is hostile.
async fn record_purchase(h: &Harness, message_id: &str) {
    let trail = h.bus.trail();
    let id = format!("gowa:628987654321@s.whatsapp.net:{message_id}");
    let mut received = TrailEvent::new(TrailStep::Received, &id, RESELLER_PHONE);
    received.text = "<script>alert(1)</script> S5.0812.1234".into();
    trail.record_with_key(&received, message_id, TrailKeyKind::MessageId);
    let mut forwarded = TrailEvent::new(TrailStep::Forwarded, &id, RESELLER_PHONE);
    forwarded.kode_inbox = Some(4242);
    forwarded.status = Some(21);
    forwarded.reply = "diproses".into();
    trail.record_with_key(&forwarded, "4242", TrailKeyKind::KodeInbox);
    trail.record(&TrailEvent::new(
        TrailStep::Sent,
        format!("autoreply:{id}"),
        RESELLER_PHONE,
    ));
    h.bus.trail().flush(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_page_needs_auth_and_allows_no_inline_script_or_framing() {
    let h = Harness::start().await;
    let r = h.get_anonymous("/console").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers().contains_key("www-authenticate"),
        "the browser is asked for the password"
    );
    for (path, content_type) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let r = h
            .http
            .get(h.url(path))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers();
        let ct = headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    // No inline script or style in the page itself: the policy would block it anyway.
    let page = h
        .http
        .get(h.url("/console"))
        .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<script src="/console/app.js" defer></script>"#));
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(
        !page.contains("<style") && !page.contains("onclick"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_from_another_site_are_refused() {
    let h = Harness::start().await;
    for (origin, site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
    ] {
        for path in ["/otomax/set-callback", "/otomax/dead-letters/replay"] {
            let mut req = h
                .http
                .post(h.url(path))
                .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
                .json(&json!({"all": true}));
            if let Some(origin) = origin {
                req = req.header("origin", origin);
            }
            if let Some(site) = site {
                req = req.header("sec-fetch-site", site);
            }
            answer(req)
                .await
                .expect(403, "FORBIDDEN")
                .mentions(&["another site"]);
        }
    }
    assert_eq!(h.sim_calls("setoutboxcallback").await, 0);
    // The console's own page (same origin) and curl (no Origin) are served.
    let own = h.base.clone();
    answer(
        h.http
            .post(h.url("/otomax/set-callback"))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
            .header("origin", own)
            .header("sec-fetch-site", "same-origin"),
    )
    .await
    .expect(200, "SUCCESS");
    assert_eq!(h.sim_calls("setoutboxcallback").await, 1);
    // Behind a reverse proxy the page's origin is PUBLIC_URL or the forwarded host, not Host.
    for (origin, forwarded) in [
        (PUBLIC_URL, None),
        ("https://ops.example.net", Some("ops.example.net")),
    ] {
        let mut req = h
            .http
            .post(h.url("/otomax/set-callback"))
            .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
            .header("origin", origin)
            .header("sec-fetch-site", "same-origin");
        if let Some(host) = forwarded {
            req = req.header("x-forwarded-host", host);
        }
        answer(req).await.expect(200, "SUCCESS");
    }
    assert_eq!(h.sim_calls("setoutboxcallback").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_is_searched_by_message_id_kode_inbox_and_phone() {
    let h = Harness::start().await;
    record_purchase(&h, "3EB0CONSOLE").await;
    for q in ["3EB0CONSOLE", "4242", "0812-3456-789"] {
        let a = h.get(&format!("/otomax/trail?q={}", urlencode(q))).await;
        a.expect(200, "SUCCESS");
        let messages = a.body["results"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{q}: {}", a.body);
        let steps: Vec<&str> = messages[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["received", "forwarded", "sent"], "{q}");
        // Stored and answered as the data it is; the console shows it as text.
        assert_eq!(
            messages[0]["steps"][0]["text"],
            json!("<script>alert(1)</script> S5.0812.1234")
        );
    }
    h.get("/otomax/trail?q=NOPE-NOTHING")
        .await
        .expect(404, "NOT_FOUND")
        .mentions(&["not found"]);
    for bad in [
        "/otomax/trail?q=%20",
        "/otomax/trail",
        "/otomax/trail?q=x&hours=0",
    ] {
        h.get(bad).await.expect(400, "VALIDATION_ERROR");
    }
    let r = h.get_anonymous("/otomax/trail?q=4242").await;
    assert_eq!(r.status(), 401);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_steps_arrive_as_server_sent_events() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/otomax/trail/live"))
        .basic_auth(ADMIN_USER, Some(ADMIN_PASS))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut r = r;
    // The subscription is made before the answer starts: what is recorded now arrives.
    record_purchase(&h, "3EB0LIVE").await;
    let mut seen = String::new();
    let read = async {
        while let Some(chunk) = r.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.matches("event: step").count() >= 3 {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no steps within 10 s: {seen:?}"));
    assert!(
        seen.contains("3EB0LIVE") && seen.contains("\"step\":\"forwarded\""),
        "{seen}"
    );
}

/// A dead letter of an inbound message, as the forwarder writes it.
async fn dead_letter(h: &Harness, id: &str, reason: DeadLetterReason) {
    let letter = DeadLetter {
        version: 1,
        id: id.into(),
        reason,
        error: "test".into(),
        subject: "wa.inbound.gowa".into(),
        payload: json!({"version": 1, "provider": "gowa", "account": "a", "message_id": id,
            "chat": "628123456789@s.whatsapp.net", "sender": RESELLER_PHONE, "sender_name": "",
            "timestamp": "2025-06-01T08:15:30Z", "text": "S.1234", "is_group": false,
            "from_me": false, "has_media": false, "received_at": "2025-06-01T08:15:31Z"}),
        attempts: 1,
        failed_at: chrono::Utc::now(),
    };
    h.bus
        .publish(
            names::DEADLETTER_INBOUND,
            &format!("dlq:{id}"),
            Default::default(),
            serde_json::to_vec(&letter).unwrap().into(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_and_replayed_once() {
    let h = Harness::start().await;
    dead_letter(&h, "gowa:a:EXPIRED1", DeadLetterReason::Expired).await;
    dead_letter(&h, "gowa:a:UNSURE1", DeadLetterReason::Uncertain).await;
    let a = h.get("/otomax/dead-letters").await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.body["results"]["count"], json!(2));
    let letters = a.body["results"]["letters"].as_array().unwrap();
    assert_eq!(letters[0]["letter"]["id"], json!("gowa:a:EXPIRED1"));
    let seq = letters[0]["sequence"].as_u64().unwrap().to_string();

    let a = h
        .post(
            "/otomax/dead-letters/replay",
            &json!({"id": seq, "fresh": true}),
        )
        .await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.body["results"]["replayed"], json!(1));
    // A second click finds nothing to replay.
    h.post("/otomax/dead-letters/replay", &json!({"id": seq}))
        .await
        .expect(404, "NOT_FOUND")
        .mentions(&["replayed already"]);
    // Uncertain: left alone without force, with the warning; replayed with it.
    let a = h
        .post(
            "/otomax/dead-letters/replay",
            &json!({"id": "gowa:a:UNSURE1"}),
        )
        .await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.body["results"]["replayed"], json!(0));
    assert_eq!(
        a.body["results"]["results"][0]["outcome"],
        json!("needs_force")
    );
    assert!(a.body["results"]["results"][0]["explanation"]
        .as_str()
        .unwrap()
        .contains("may already have it"));
    let a = h
        .post(
            "/otomax/dead-letters/replay",
            &json!({"id": "gowa:a:UNSURE1", "force": true}),
        )
        .await;
    assert_eq!(a.body["results"]["replayed"], json!(1), "{}", a.body);
    assert_eq!(
        h.get("/otomax/dead-letters").await.body["results"]["count"],
        json!(0)
    );
    // Both replays are on the trail.
    h.bus.trail().flush(Duration::from_secs(5)).await;
    let a = h.get(&format!("/otomax/trail?q={RESELLER_PHONE}")).await;
    a.expect(200, "SUCCESS");
    let shown = a.body.to_string();
    assert!(
        shown.contains("\"replayed\"") && shown.contains("--force"),
        "{shown}"
    );
    for bad in [
        json!({}),
        json!({"id": "1", "all": true}),
        json!({"id": 5}),
        json!({"nope": 1}),
    ] {
        h.post("/otomax/dead-letters/replay", &bad)
            .await
            .expect(400, "VALIDATION_ERROR");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn figures_count_the_trail() {
    let h = Harness::start().await;
    record_purchase(&h, "3EB0FIG1").await;
    record_purchase(&h, "3EB0FIG2").await;
    let a = h.get("/otomax/figures").await;
    a.expect(200, "SUCCESS");
    let f = &a.body["results"];
    assert_eq!(f["received"], json!(2), "{f}");
    assert_eq!(f["forwarded"], json!(2));
    assert_eq!(f["auto_replies"], json!(2));
    assert_eq!(f["sent"], json!(2));
    assert_eq!(f["forwarded_by_status"], json!({"21": 2}));
    h.get("/otomax/figures?since=2000-01-01T00:00:00Z")
        .await
        .expect(400, "VALIDATION_ERROR");
    h.get("/otomax/figures?since=yesterday")
        .await
        .expect(400, "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread")]
async fn whatsapp_accounts_say_whether_gowa_has_them_logged_in() {
    use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};
    let sim = WhatsappSim::new(WhatsappSimConfig {
        device_id: wacenter_sim::demo::DEVICE.into(),
        ..Default::default()
    });
    let gowa = format!("http://{}", sim.spawn(0).await.unwrap());
    let url = gowa.clone();
    let h = Harness::start_with(move |s| s.gowa_url = url).await;
    let accounts = |a: &Answer| a.body["results"]["accounts"].as_array().unwrap().clone();
    let a = h.get("/otomax/whatsapp").await;
    a.expect(200, "SUCCESS");
    let listed = accounts(&a);
    assert_eq!(listed.len(), 1, "{}", a.body);
    assert_eq!(listed[0]["account"], json!(wacenter_sim::demo::DEVICE));
    assert_eq!(listed[0]["logged_in"], json!(true), "{}", a.body);
    assert_eq!(listed[0]["connected"], json!(true));

    // The phone unlinked the device.
    reqwest::Client::new()
        .post(format!("{gowa}/_sim/faults"))
        .json(&json!({"logged_out": true}))
        .send()
        .await
        .unwrap();
    let a = h.get("/otomax/whatsapp").await;
    assert_eq!(accounts(&a)[0]["logged_in"], json!(false), "{}", a.body);

    // GOWA not answering is said per account, not a failed page.
    let h = Harness::start_with(|s| s.gowa_url = "http://127.0.0.1:9".into()).await;
    let a = h.get("/otomax/whatsapp").await;
    a.expect(200, "SUCCESS");
    let listed = accounts(&a);
    assert!(
        listed[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{}",
        a.body
    );
    assert!(listed[0].get("logged_in").is_none());
}
