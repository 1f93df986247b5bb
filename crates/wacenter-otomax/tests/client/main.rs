//! The client and its retry policy against in-test servers that fail, stall and recover:
//! attempts are counted, their spacing measured, and nothing may arrive after `_exp`.

mod hostile;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use wacenter_otomax::{ClientConfig, InsertInboxRequest, OtomaxClient, OtomaxError, RetryPolicy};

/// How the scripted server answers attempt n (0-based).
#[derive(Clone)]
enum Answer {
    Status(u16, &'static str),
    Stall(Duration),
    Json(&'static str),
}

/// When each attempt arrived: monotonic (for spacing) and wall clock (to compare with `_exp`).
type Arrival = (Instant, chrono::DateTime<Utc>);

#[derive(Clone)]
struct Script {
    answers: Arc<Vec<Answer>>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

async fn scripted(State(s): State<Script>, _body: Bytes) -> (StatusCode, String) {
    let n = {
        let mut a = s.arrivals.lock().unwrap();
        a.push((Instant::now(), Utc::now()));
        a.len() - 1
    };
    let answer = s
        .answers
        .get(n)
        .or(s.answers.last())
        .cloned()
        .expect("script has answers");
    match answer {
        Answer::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body.to_string()),
        Answer::Stall(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, r#"{"ok":true,"result":{}}"#.to_string())
        }
        Answer::Json(body) => (StatusCode::OK, body.to_string()),
    }
}

struct Peer {
    script: Script,
    client: OtomaxClient,
}

impl Peer {
    async fn start(answers: Vec<Answer>, policy: RetryPolicy) -> Self {
        let script = Script {
            answers: Arc::new(answers),
            arrivals: Arc::default(),
        };
        let addr = wacenter_test_support::serve(
            Router::new()
                .route("/{name}", post(scripted))
                .with_state(script.clone()),
        )
        .await;
        Self {
            script,
            client: client(&format!("http://{addr}/"), policy),
        }
    }
    fn attempts(&self) -> Vec<Arrival> {
        self.script.arrivals.lock().unwrap().clone()
    }
}

fn client(base: &str, policy: RetryPolicy) -> OtomaxClient {
    OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: base.parse().unwrap(),
        app_id: "OtomaX.Addon".into(),
        app_key: "demoKey".into(),
        dev_key: "YAR.OtomaX.OpenApi.App".into(),
        policy,
        rate_limit: 0,
    })
}

const OK: &str = r#"{"ok":true,"result":{"kode_inbox":1,"status":21,"statusDesc":"Sukses Masuk Outbox","pesan":"ok"}}"#;

fn gaps(arrivals: &[Arrival]) -> Vec<f64> {
    arrivals
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect()
}

#[tokio::test]
async fn recovers_after_transient_failures_with_1_2_second_spacing() {
    let peer = Peer::start(
        vec![
            Answer::Status(503, "busy"),
            Answer::Status(429, "slow down"),
            Answer::Json(OK),
        ],
        RetryPolicy::default(),
    )
    .await;
    let r = peer
        .client
        .test("08123456789")
        .await
        .expect("third attempt succeeds");
    assert_eq!(r.attempts, 3);
    let g = gaps(&peer.attempts());
    assert_eq!(g.len(), 2);
    assert!((0.95..1.6).contains(&g[0]), "first wait ~1 s, was {g:?}");
    assert!((1.95..2.6).contains(&g[1]), "second wait ~2 s, was {g:?}");
}

#[tokio::test]
async fn gives_up_after_three_retries() {
    let peer = Peer::start(vec![Answer::Status(503, "busy")], RetryPolicy::default()).await;
    let err = peer.client.get_rs("R1").await.unwrap_err();
    assert!(
        matches!(err, OtomaxError::Status { status: 503, .. }),
        "{err}"
    );
    let g = gaps(&peer.attempts());
    assert_eq!(peer.attempts().len(), 4, "1 attempt + 3 retries");
    assert!((3.9..4.6).contains(&g[2]), "third wait ~4 s, was {g:?}");
}

#[tokio::test]
async fn final_errors_are_sent_once() {
    for (answer, check) in [
        (
            Answer::Status(401, r#"{"ok":false,"desc":"invalid token"}"#),
            "auth",
        ),
        (
            Answer::Json(r#"{"ok":false,"desc":"Reseller tidak ditemukan"}"#),
            "rejected",
        ),
        (
            Answer::Json(r#"{"ok":false,"desc":"Invalid token"}"#),
            "auth",
        ),
        (Answer::Status(400, "bad"), "http_status"),
        (Answer::Status(404, "nope"), "http_status"),
        // Not OtomaX's JSON: maybe a proxy's page after OtomaX acted on it.
        (Answer::Json("<html>oops</html>"), "uncertain"),
        (Answer::Status(500, "boom"), "uncertain"),
        (Answer::Status(504, "gateway timeout"), "uncertain"),
    ] {
        let peer = Peer::start(vec![answer], RetryPolicy::default()).await;
        let err = peer.client.get_saldo_rs("R1").await.unwrap_err();
        assert_eq!(err.kind(), check, "{err}");
        assert_eq!(peer.attempts().len(), 1, "{check} must not be retried");
    }
}

#[tokio::test]
async fn ambiguous_failures_are_sent_once_and_uncertain() {
    for answer in [
        Answer::Status(500, "Internal Server Error"),
        Answer::Status(504, "Gateway Timeout"),
        Answer::Stall(Duration::from_secs(5)),
    ] {
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let peer = Peer::start(vec![answer, Answer::Json(OK)], policy).await;
        let req = InsertInboxRequest::whatsapp(
            "S5.08123456789.1234",
            "",
            "628123456789",
            1,
            Utc::now() + chrono::Duration::seconds(60),
        );
        let err = peer.client.insert_inbox(&req).await.unwrap_err();
        assert!(matches!(err, OtomaxError::Uncertain { .. }), "{err}");
        assert_eq!(
            peer.attempts().len(),
            1,
            "OtomaX may have the purchase: it must not get it twice ({err})"
        );
    }
}

#[tokio::test]
async fn ambiguous_failures_are_retried_when_allowed() {
    let policy = RetryPolicy {
        retry_ambiguous: true,
        ..Default::default()
    };
    let peer = Peer::start(vec![Answer::Status(504, "gw"), Answer::Json(OK)], policy).await;
    let r = peer.client.test("1").await.expect("second attempt answers");
    assert_eq!(r.attempts, 2);
}

#[tokio::test]
async fn an_ambiguous_attempt_makes_a_later_failure_uncertain() {
    // Allowed to retry the timeout, then OtomaX is plainly down: the first may still have landed.
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        max_retries: 1,
        retry_ambiguous: true,
        ..Default::default()
    };
    let peer = Peer::start(
        vec![
            Answer::Stall(Duration::from_secs(5)),
            Answer::Status(503, "down"),
        ],
        policy,
    )
    .await;
    let err = peer.client.test("1").await.unwrap_err();
    assert!(matches!(err, OtomaxError::Uncertain { .. }), "{err}");
    assert_eq!(peer.attempts().len(), 2);
}

/// A peer that reads each request whole, then closes the connection without answering.
async fn hang_up_after_reading() -> (std::net::SocketAddr, Arc<Mutex<u32>>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(0u32));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // Headers and the small JSON body have arrived once the body's `}` has.
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.ends_with(b"}") {
                        *counted.lock().unwrap() += 1;
                        return; // dropping the socket closes it: the answer is lost
                    }
                }
            });
        }
    });
    (addr, requests)
}

#[tokio::test]
async fn a_connection_lost_after_the_request_is_not_sent_again() {
    let (addr, requests) = hang_up_after_reading().await;
    let c = client(&format!("http://{addr}/"), RetryPolicy::default());
    let err = c.test("1").await.unwrap_err();
    assert!(matches!(err, OtomaxError::Uncertain { .. }), "{err}");
    assert!(
        matches!(&err, OtomaxError::Uncertain { last } if matches!(**last, OtomaxError::Interrupted { .. })),
        "{err:?}"
    );
    assert_eq!(
        *requests.lock().unwrap(),
        1,
        "OtomaX read it once: never twice"
    );
    assert!(!err.to_string().contains("token="), "{err}");
}

#[tokio::test]
async fn stalled_attempts_time_out_and_are_retried_when_allowed() {
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(300),
        max_retries: 1,
        retry_ambiguous: true,
        ..Default::default()
    };
    let peer = Peer::start(
        vec![Answer::Stall(Duration::from_secs(5)), Answer::Json(OK)],
        policy,
    )
    .await;
    let started = Instant::now();
    let r = peer.client.test("1").await.expect("second attempt answers");
    assert_eq!(r.attempts, 2);
    let took = started.elapsed().as_secs_f64();
    assert!(
        (1.25..2.5).contains(&took),
        "300 ms timeout + 1 s wait, took {took}"
    );
}

#[tokio::test]
async fn nothing_is_sent_after_exp() {
    let peer = Peer::start(vec![Answer::Status(503, "down")], RetryPolicy::default()).await;
    // 2.5 s of life: attempts at 0 s and 1 s; the next would start at 3 s, after _exp.
    let exp = Utc::now() + chrono::Duration::milliseconds(2500);
    let req = InsertInboxRequest::whatsapp("S5.08123456789.1234", "", "628123456789", 1, exp);
    // _exp has whole seconds: use the rounded value as the real deadline.
    let deadline = chrono::DateTime::parse_from_rfc3339(&req.exp)
        .unwrap()
        .with_timezone(&Utc);
    let err = peer.client.insert_inbox(&req).await.unwrap_err();
    assert!(matches!(err, OtomaxError::Expired { .. }), "{err}");
    let attempts = peer.attempts();
    assert!(
        !attempts.is_empty() && attempts.len() <= 3,
        "{} attempts",
        attempts.len()
    );
    for (_, at) in &attempts {
        assert!(
            *at < deadline,
            "an attempt arrived at {at}, after _exp {deadline}"
        );
    }
}

#[tokio::test]
async fn an_expired_message_is_never_sent() {
    let peer = Peer::start(vec![Answer::Json(OK)], RetryPolicy::default()).await;
    let req = InsertInboxRequest::whatsapp(
        "S.1234",
        "",
        "628123456789",
        1,
        Utc::now() - chrono::Duration::seconds(1),
    );
    let err = peer.client.insert_inbox(&req).await.unwrap_err();
    assert!(matches!(err, OtomaxError::Expired { last: None }), "{err}");
    assert!(peer.attempts().is_empty(), "nothing may be sent after _exp");
}

#[tokio::test]
async fn an_attempt_is_cut_off_at_exp() {
    let peer = Peer::start(
        vec![Answer::Stall(Duration::from_secs(10))],
        RetryPolicy::default(),
    )
    .await;
    let exp = Utc::now() + chrono::Duration::milliseconds(1800);
    let req = InsertInboxRequest::whatsapp("S.1234", "", "628123456789", 1, exp);
    let started = Instant::now();
    let err = peer.client.insert_inbox(&req).await.unwrap_err();
    // Cut off at _exp while OtomaX had it: it may have acted on it, so not "expired".
    assert!(matches!(err, OtomaxError::Uncertain { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2100),
        "the 30 s timeout must shrink to _exp"
    );
    assert_eq!(peer.attempts().len(), 1);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_and_retried() {
    let port = wacenter_test_support::free_port();
    let policy = RetryPolicy {
        max_retries: 1,
        ..Default::default()
    };
    let c = client(&format!("http://127.0.0.1:{port}/"), policy);
    let started = Instant::now();
    let err = c.test("1").await.unwrap_err();
    assert!(matches!(err, OtomaxError::Connect { .. }), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "one retry after 1 s"
    );
    assert!(
        !err.to_string().contains("token="),
        "errors never show the signed URL: {err}"
    );
}

#[tokio::test]
async fn rate_limit_spaces_requests() {
    let script = Script {
        answers: Arc::new(vec![Answer::Json(OK)]),
        arrivals: Arc::default(),
    };
    let addr = wacenter_test_support::serve(
        Router::new()
            .route("/{name}", post(scripted))
            .with_state(script.clone()),
    )
    .await;
    let c = OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: format!("http://{addr}/").parse().unwrap(),
        app_id: "a".into(),
        app_key: "b".into(),
        dev_key: "c".into(),
        policy: RetryPolicy::default(),
        rate_limit: 20,
    });
    let started = Instant::now();
    for _ in 0..6 {
        c.test("1").await.unwrap();
    }
    // 6 calls at 20/s: the last starts 250 ms after the first.
    assert!(
        started.elapsed() >= Duration::from_millis(240),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_backlog_behind_the_rate_limiter_is_never_sent_after_exp() {
    let script = Script {
        answers: Arc::new(vec![Answer::Json(OK)]),
        arrivals: Arc::default(),
    };
    let addr = wacenter_test_support::serve(
        Router::new()
            .route("/{name}", post(scripted))
            .with_state(script.clone()),
    )
    .await;
    let c = OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: format!("http://{addr}/").parse().unwrap(),
        app_id: "a".into(),
        app_key: "b".into(),
        dev_key: "c".into(),
        policy: RetryPolicy::default(),
        rate_limit: 2,
    });
    // Ten messages at 2/s with about 2 s of life each: only the first few can leave in time.
    let exp = Utc::now() + chrono::Duration::milliseconds(2600);
    let req = InsertInboxRequest::whatsapp("S5.0812.1234", "", "628123456789", 1, exp);
    let deadline = chrono::DateTime::parse_from_rfc3339(&req.exp)
        .unwrap()
        .with_timezone(&Utc);
    let started = Utc::now();
    let calls = (0..10).map(|_| {
        let (c, req) = (c.clone(), req.clone());
        tokio::spawn(async move { c.insert_inbox(&req).await })
    });
    let mut expired = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => {}
            Err(OtomaxError::Expired { last: None }) => expired += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let arrivals = script.arrivals.lock().unwrap().clone();
    for (_, at) in &arrivals {
        assert!(*at < deadline, "sent at {at}, after _exp {deadline}");
    }
    assert_eq!(arrivals.len() + expired, 10, "each one sent or expired");
    // `_exp` has whole seconds, so the messages had 1.6 to 2.6 s of life: at 2 a second, at
    // most one slot per half second of it (and the first at once) could leave in time.
    let life_ms = (deadline - started).num_milliseconds().max(0);
    let slots = usize::try_from(life_ms / 500).unwrap_or(0) + 1;
    assert!(
        arrivals.len() <= slots && expired > 0,
        "{expired} expired, {} sent with {life_ms} ms of life ({slots} slots)",
        arrivals.len()
    );
}

#[tokio::test]
async fn a_password_in_the_base_url_never_shows_in_errors() {
    let port = wacenter_test_support::free_port();
    let policy = RetryPolicy {
        max_retries: 0,
        ..Default::default()
    };
    let c = client(&format!("http://user:hunter2@127.0.0.1:{port}/"), policy);
    let err = c.test("1").await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!c
        .history()
        .last_error
        .unwrap_or_default()
        .contains("hunter2"));
}
