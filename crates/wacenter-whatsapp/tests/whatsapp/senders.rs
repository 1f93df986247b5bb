// The senders against in-test HTTP servers standing in for GOWA and the Graph API: what goes on
// the wire (method, path, headers, body) and how each kind of answer is classified.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use serde_json::{json, Value};
use url::Url;
use wacenter_whatsapp::{
    GowaSender, MetaSender, Provider, SendError, SendErrorClass, Sender, SentMessage,
};

/// One request as the fake provider saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// What the fake provider answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json")],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/plain")],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone)]
struct Fake {
    reply: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn handle(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    fake.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
    });
    tokio::time::sleep(fake.reply.delay).await;
    let mut response_headers = HeaderMap::new();
    for (name, value) in &fake.reply.headers {
        response_headers.insert(*name, value.parse().unwrap());
    }
    (
        StatusCode::from_u16(fake.reply.status).unwrap(),
        response_headers,
        fake.reply.body.clone(),
    )
}

/// A fake provider on 127.0.0.1:<random port>, answering every request with `reply`.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(handle).with_state(Fake {
            reply,
            seen: seen.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url: format!("http://{addr}"),
            seen,
        }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{path}", self.url)).unwrap()
    }

    fn only_request(&self) -> Seen {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen[0].clone()
    }
}

/// An address nothing listens on: bind a port, then let it go.
/// An address that refuses connections, reserved for the caller while it holds the socket: bound
/// but never listening. (Closing a listener instead frees the port, and a server of a test
/// running in parallel may take it and answer.)
fn closed_url() -> (Url, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (Url::parse(&format!("http://{addr}/")).unwrap(), socket)
}

fn http() -> reqwest::Client {
    // reqwest is built without a TLS provider; the services install ring the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

fn gowa_ok() -> Value {
    json!({"code": "SUCCESS", "message": "Message sent to 628123456789@s.whatsapp.net (server timestamp: 2025-01-01)",
           "results": {"message_id": "3EB0B430B6F8F1D0E053AC120E0A9E5C", "status": "sent"}})
}

fn gowa(server: &Server) -> GowaSender {
    GowaSender::new(
        server.url("/"),
        Some(("admin".into(), "s3cret".into())),
        http(),
    )
}

// ---------------------------------------------------------------------------------------------
// GOWA

#[tokio::test]
async fn gowa_success_sends_auth_device_and_reply() {
    let server = Server::start(Reply::json(200, gowa_ok())).await;
    let sent = gowa(&server)
        .send_text(
            "628123456789",
            "Saldo Anda: Rp 1.000.000",
            Some("628987654321@s.whatsapp.net"),
            Some("3EB0C127D7BACC83D6A1"),
        )
        .await
        .unwrap();
    assert_eq!(
        sent,
        SentMessage {
            provider_message_id: "3EB0B430B6F8F1D0E053AC120E0A9E5C".into()
        }
    );

    let seen = server.only_request();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/send/message");
    assert_eq!(
        header(&seen, "authorization"),
        Some("Basic YWRtaW46czNjcmV0")
    );
    assert_eq!(
        header(&seen, "x-device-id"),
        Some("628987654321@s.whatsapp.net")
    );
    assert_eq!(header(&seen, "content-type"), Some("application/json"));
    assert_eq!(
        seen.body,
        json!({"phone": "628123456789", "message": "Saldo Anda: Rp 1.000.000",
               "reply_message_id": "3EB0C127D7BACC83D6A1"})
    );
}

#[tokio::test]
async fn gowa_without_auth_device_or_reply_sends_none_of_them() {
    let server = Server::start(Reply::json(200, gowa_ok())).await;
    let sender = GowaSender::new(server.url("/"), None, http());
    sender
        .send_text("628123456789", "hi", Some(""), Some(" "))
        .await
        .unwrap();
    let seen = server.only_request();
    assert_eq!(header(&seen, "authorization"), None);
    assert_eq!(header(&seen, "x-device-id"), None);
    assert_eq!(seen.body, json!({"phone": "628123456789", "message": "hi"}));
}

#[tokio::test]
async fn gowa_behind_a_path_prefix_with_credentials_in_the_url() {
    let server = Server::start(Reply::json(200, gowa_ok())).await;
    let base = Url::parse(&server.url.replace("http://", "http://admin:s3cret@")).unwrap();
    let base = base.join("gowa/").unwrap();
    let sender = GowaSender::new(base, None, http());
    sender
        .send_text("120363025246125486@g.us", "pagi", None, None)
        .await
        .unwrap();
    let seen = server.only_request();
    assert_eq!(seen.path, "/gowa/send/message");
    assert_eq!(
        header(&seen, "authorization"),
        Some("Basic YWRtaW46czNjcmV0")
    );
    assert_eq!(seen.body["phone"], "120363025246125486@g.us");
}

#[tokio::test]
async fn gowa_429_honours_retry_after() {
    let server = Server::start(
        Reply::json(
            429,
            json!({"code": "TOO_MANY_REQUESTS", "message": "slow down"}),
        )
        .header("retry-after", "3"),
    )
    .await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        SendErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            per_recipient: false
        }
    );
    assert_eq!(err.status(), Some(429));
}

#[tokio::test]
async fn gowa_reachout_timelock_limits_one_recipient() {
    let server = Server::start(Reply::json(
        429,
        json!({"status": 429, "code": "WA_REACHOUT_TIMELOCK", "message": "WhatsApp rejected this send with error 463"}),
    ))
    .await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        SendErrorClass::RateLimited {
            retry_after: None,
            per_recipient: true
        }
    );
}

#[tokio::test]
async fn gowa_500_is_transient() {
    let server = Server::start(Reply::json(
        500,
        json!({"status": 500, "code": "INVALID_WA_CLI", "message": "your WhatsApp CLI is invalid or empty", "results": null}),
    ))
    .await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Transient);
    assert_eq!(
        err.to_string(),
        "gowa answered HTTP 500 INVALID_WA_CLI: your WhatsApp CLI is invalid or empty"
    );
}

#[tokio::test]
async fn gowa_400_is_permanent_and_numeric_codes_are_read() {
    let server = Server::start(Reply::json(
        400,
        json!({"status": 400, "code": 400, "message": "user is not registered"}),
    ))
    .await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Permanent);
    assert_eq!(
        err,
        SendError::Rejected {
            provider: Provider::Gowa,
            status: 400,
            code: Some("400".into()),
            message: "user is not registered".into(),
            retry_after: None,
        }
    );
}

#[tokio::test]
async fn gowa_401_plain_text_never_leaks_the_password() {
    let server = Server::start(Reply::text(401, "Unauthorized: admin:s3cret is wrong")).await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Permanent);
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(
        text,
        "gowa answered HTTP 401: Unauthorized: admin:[redacted] is wrong"
    );
}

#[tokio::test]
async fn gowa_success_without_json_is_ambiguous() {
    let server = Server::start(Reply::text(200, "<html>proxy page</html>")).await;
    let err = gowa(&server)
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Ambiguous);
    assert!(
        matches!(err, SendError::BadResponse { status: 200, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn gowa_timeout_after_sending_is_ambiguous() {
    let server = Server::start(Reply::json(200, gowa_ok()).delayed(Duration::from_secs(5))).await;
    let sender = gowa(&server).with_timeout(Duration::from_millis(300));
    let err = sender
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Ambiguous, "{err:?}");
    assert!(matches!(err, SendError::Timeout { .. }), "{err:?}");
    // The request did reach the server: that is exactly why it is ambiguous.
    assert_eq!(server.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn gowa_connection_refused_is_transient_and_leaks_nothing() {
    let (mut url, _reserved) = closed_url();
    url.set_username("admin").unwrap();
    url.set_password(Some("s3cret")).unwrap();
    let sender = GowaSender::new(url, None, http());
    let err = sender
        .send_text("628123456789", "hi", None, None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Transient, "{err:?}");
    assert!(matches!(err, SendError::Connect { .. }), "{err:?}");
    let text = format!("{err} {err:?} {sender:?}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn gowa_refuses_bad_input_without_sending() {
    let server = Server::start(Reply::json(200, gowa_ok())).await;
    let sender = gowa(&server);
    for (to, text, device) in [
        ("", "hi", None),
        ("+62 812", "hi", None),
        ("628123456789", "", None),
        ("628123456789", " \n ", None),
        ("628123456789", "hi", Some("bad\ndevice")),
    ] {
        let err = sender.send_text(to, text, device, None).await.unwrap_err();
        assert!(matches!(err, SendError::Invalid(_)), "{err}");
        assert_eq!(err.class(), SendErrorClass::Permanent);
    }
    assert!(server.seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Meta

const TOKEN: &str = "EAAGm0PX4ZCpsBAtest-token-1234";

fn meta(server: &Server) -> MetaSender {
    MetaSender::new(server.url("/v21.0"), TOKEN, http())
}

fn meta_error(code: i64, message: &str, details: &str) -> Value {
    json!({"error": {"message": message, "type": "OAuthException", "code": code,
                     "error_data": {"messaging_product": "whatsapp", "details": details},
                     "fbtrace_id": "AbCdEf123"}})
}

#[tokio::test]
async fn meta_success_sends_bearer_and_exact_body() {
    let server = Server::start(Reply::json(
        200,
        json!({"messaging_product": "whatsapp",
               "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
               "messages": [{"id": "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}]}),
    ))
    .await;
    let sent = meta(&server)
        .send_text(
            "106540352242922",
            "16505551234",
            "Halo 👋",
            Some("wamid.ORIGINAL"),
        )
        .await
        .unwrap();
    assert_eq!(
        sent.provider_message_id,
        "wamid.HBgLMTY1MDUwNzY1MjAVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
    );
    let seen = server.only_request();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/v21.0/106540352242922/messages");
    assert_eq!(
        header(&seen, "authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(
        seen.body,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual",
               "to": "16505551234", "type": "text", "text": {"body": "Halo 👋"},
               "context": {"message_id": "wamid.ORIGINAL"}})
    );
}

#[tokio::test]
async fn meta_without_reply_has_no_context() {
    let server = Server::start(Reply::json(200, json!({"messages": [{"id": "wamid.1"}]}))).await;
    meta(&server)
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap();
    let seen = server.only_request();
    assert!(seen.body.get("context").is_none(), "{}", seen.body);
}

#[tokio::test]
async fn meta_error_codes_are_classified() {
    let cases = [
        (
            400,
            130429,
            SendErrorClass::RateLimited {
                retry_after: None,
                per_recipient: false,
            },
        ),
        (
            400,
            131056,
            SendErrorClass::RateLimited {
                retry_after: Some(Duration::from_secs(6)),
                per_recipient: true,
            },
        ),
        (400, 131047, SendErrorClass::Permanent),
        (401, 190, SendErrorClass::Permanent),
        (400, 100, SendErrorClass::Permanent),
        (500, 131000, SendErrorClass::Transient),
        (503, 131016, SendErrorClass::Transient),
        (500, 2, SendErrorClass::Transient),
    ];
    for (status, code, want) in cases {
        let server = Server::start(Reply::json(
            status,
            meta_error(code, "Some error", "Details here"),
        ))
        .await;
        let err = meta(&server)
            .send_text("106540352242922", "16505551234", "hi", None)
            .await
            .unwrap_err();
        assert_eq!(err.class(), want, "{code}: {err}");
        let SendError::Meta {
            code: got,
            message,
            fbtrace_id,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*got, code);
        assert_eq!(message, "Some error (Details here)");
        assert_eq!(fbtrace_id.as_deref(), Some("AbCdEf123"));
    }
}

#[tokio::test]
async fn meta_131047_reads_well() {
    let server = Server::start(Reply::json(
        400,
        meta_error(
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
    ))
    .await;
    let err = meta(&server)
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Meta answered HTTP 400 with error 131047: Re-engagement message (Message failed to send because more than 24 hours have passed since the customer last replied to this number.)"
    );
}

#[tokio::test]
async fn meta_never_echoes_the_token() {
    let message = format!("Malformed access token {TOKEN}");
    let server = Server::start(Reply::json(401, meta_error(190, &message, ""))).await;
    let sender = meta(&server);
    let err = sender
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Permanent);
    let text = format!("{err} {err:?} {sender:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("Malformed access token [redacted]"), "{text}");
}

#[tokio::test]
async fn meta_http_429_without_error_object_honours_retry_after() {
    let server =
        Server::start(Reply::text(429, "Too Many Requests").header("retry-after", "11")).await;
    let err = meta(&server)
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(
        err.class(),
        SendErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(11)),
            per_recipient: false
        }
    );
    assert!(
        matches!(
            err,
            SendError::Rejected {
                provider: Provider::Meta,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn meta_timeout_is_ambiguous_and_refused_is_transient() {
    let server = Server::start(
        Reply::json(200, json!({"messages": [{"id": "wamid.1"}]})).delayed(Duration::from_secs(5)),
    )
    .await;
    let err = meta(&server)
        .with_timeout(Duration::from_millis(300))
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Ambiguous, "{err:?}");

    let (url, _reserved) = closed_url();
    let sender = MetaSender::new(url.join("v21.0").unwrap(), TOKEN, http());
    let err = sender
        .send_text("106540352242922", "16505551234", "hi", None)
        .await
        .unwrap_err();
    assert_eq!(err.class(), SendErrorClass::Transient, "{err:?}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));
}

// ---------------------------------------------------------------------------------------------
// Either

#[tokio::test]
async fn sender_dispatches_the_account() {
    let server = Server::start(Reply::json(200, gowa_ok())).await;
    let sender = Sender::Gowa(gowa(&server));
    assert_eq!(sender.provider(), Provider::Gowa);
    sender
        .send_text("dev-1", "628123456789", "hi", None)
        .await
        .unwrap();
    assert_eq!(header(&server.only_request(), "x-device-id"), Some("dev-1"));

    let server = Server::start(Reply::json(200, json!({"messages": [{"id": "wamid.9"}]}))).await;
    let sender = Sender::Meta(meta(&server));
    assert_eq!(sender.provider(), Provider::Meta);
    let sent = sender
        .send_text("111", "628123456789", "hi", None)
        .await
        .unwrap();
    assert_eq!(sent.provider_message_id, "wamid.9");
    assert_eq!(server.only_request().path, "/v21.0/111/messages");
}
