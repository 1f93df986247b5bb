//! Every OtomaX client call against the OtomaX simulator, and the simulator's own behaviour:
//! tokens, `_exp`, the InsertInbox statuses, outbox callbacks, faults and bad input.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use wacenter_otomax::{ClientConfig, InsertInboxRequest, OtomaxClient, OtomaxError, RetryPolicy};
use wacenter_sim::otomax::{Faults, OtomaxSim, OtomaxSimConfig, SimReseller};
use wacenter_test_support::eventually;

const APP_ID: &str = "OtomaX.Addon";
const APP_KEY: &str = "demoKey";
const DEV_KEY: &str = "YAR.OtomaX.OpenApi.App";

struct TestSim {
    base: String,
    client: OtomaxClient,
    http: reqwest::Client,
}

async fn start_sim() -> TestSim {
    start_sim_with(Duration::from_millis(50)).await
}

async fn start_sim_with(result_delay: Duration) -> TestSim {
    let sim = OtomaxSim::new(OtomaxSimConfig {
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        resellers: vec![
            SimReseller::parse_arg("628123456789=R001").unwrap(),
            SimReseller {
                phone: "628555".into(),
                code: "R002".into(),
                name: "Toko Dua".into(),
                saldo: 3000,
                pin: Some("9999".into()),
            },
        ],
        result_delay,
        faults: Faults::default(),
    });
    let addr = sim.spawn(0).await.unwrap();
    let base = format!("http://{addr}/");
    TestSim {
        client: client_for(&base, DEV_KEY),
        base,
        http: wacenter_otomax::client::shared_http_client(),
    }
}

fn client_for(base: &str, dev_key: &str) -> OtomaxClient {
    OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: base.parse().unwrap(),
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: dev_key.into(),
        policy: RetryPolicy {
            max_retries: 0,
            ..Default::default()
        },
        rate_limit: 0,
    })
}

impl TestSim {
    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn inbox(text: &str, sender: &str) -> InsertInboxRequest {
    InsertInboxRequest::whatsapp(
        text,
        "",
        sender,
        1,
        Utc::now() + chrono::Duration::seconds(30),
    )
}

#[tokio::test]
async fn test_call() {
    let sim = start_sim().await;
    let r = sim.client.test("08123456789").await.unwrap();
    assert_eq!(r.raw["ok"], json!(true));
    assert_eq!(r.result["phone"], json!("08123456789"));
}

#[tokio::test]
async fn insert_inbox_statuses() {
    let sim = start_sim().await;
    let unknown = sim
        .client
        .insert_inbox(&inbox("S5.08123456789.1234", "6280000"))
        .await
        .unwrap()
        .result;
    assert_eq!(
        (unknown.status, unknown.status_desc.as_str()),
        (41, "Bukan Reseller")
    );
    assert_eq!(unknown.auto_reply_text(), Some("Bukan Reseller"));

    let malformed = sim
        .client
        .insert_inbox(&inbox("halo kak", "628123456789"))
        .await
        .unwrap()
        .result;
    assert_eq!(
        (malformed.status, malformed.status_desc.as_str()),
        (42, "Format Salah")
    );

    let purchase = sim
        .client
        .insert_inbox(&inbox("s5.08123456789.1234", "628123456789"))
        .await
        .unwrap()
        .result;
    assert_eq!(purchase.status, 21);
    assert!(
        purchase.pesan.contains("S5.08123456789"),
        "{}",
        purchase.pesan
    );
    assert!(purchase.kode_inbox.is_some());

    let balance = sim
        .client
        .insert_inbox(&inbox("S.1234", "628123456789"))
        .await
        .unwrap()
        .result;
    assert_eq!(balance.status, 21);
    assert!(balance.pesan.contains("Saldo"), "{}", balance.pesan);

    let ticket = sim
        .client
        .insert_inbox(&inbox("TIKET.100000.1234", "628123456789"))
        .await
        .unwrap()
        .result;
    assert_eq!(ticket.status, 21);
    assert!(ticket.pesan.contains("100.000"), "{}", ticket.pesan);

    let wrong_pin = sim
        .client
        .insert_inbox(&inbox("S.1111", "628555"))
        .await
        .unwrap()
        .result;
    assert_eq!(wrong_pin.status, 49);
    assert_eq!(wrong_pin.auto_reply_text(), None);

    let poor = sim
        .client
        .insert_inbox(&inbox("S5.08123456789.9999", "628555"))
        .await
        .unwrap()
        .result;
    assert_eq!(poor.status, 43, "saldo 3000 < 5150");

    let listed = sim.get("_sim/inbox").await;
    assert_eq!(listed.as_array().unwrap().len(), 7);
    assert_eq!(listed[0]["body"]["pesan"], json!("S5.08123456789.1234"));
    assert!(listed[0]["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        sim.get("_sim/inbox?since=6")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(sim.get("_sim/stats").await["received"], json!(7));
}

#[tokio::test]
async fn reseller_balance_and_transaction() {
    let sim = start_sim().await;
    let rs = sim.client.get_rs("R002").await.unwrap();
    assert_eq!(rs.result.nama, "Toko Dua");
    assert_eq!(
        rs.result.extra["saldo"],
        json!(3000),
        "unmodelled fields pass through"
    );
    let saldo = sim.client.get_saldo_rs("r001").await.unwrap().result;
    assert_eq!(saldo.saldo, Some(1_000_000));
    let missing = sim.client.get_rs("NOPE").await.unwrap_err();
    assert!(
        matches!(missing, OtomaxError::Rejected { ref desc } if desc.contains("NOPE")),
        "{missing}"
    );

    sim.client
        .insert_inbox(&inbox("S10.08123456789.1234", "628123456789"))
        .await
        .unwrap();
    let outbox = eventually(Duration::from_secs(5), "outbox row", || async {
        sim.get("_sim/outbox")
            .await
            .as_array()
            .filter(|a| !a.is_empty())
            .cloned()
    })
    .await;
    let trxid = outbox[0]["row"]["kode_transaksi"].as_i64().unwrap();
    let trx = sim.client.get_trx(trxid).await.unwrap().result;
    assert_eq!(trx.kode_produk, "S10");
    assert_eq!(trx.tujuan, "08123456789");
    assert_eq!(trx.harga, Some(10_150));
    assert_eq!(
        sim.client.get_saldo_rs("R001").await.unwrap().result.saldo,
        Some(1_000_000 - 10_150)
    );
}

#[tokio::test]
async fn outbox_callback_is_delivered_until_2xx_and_acknowledged() {
    let sim = start_sim().await;
    // A callback receiver that fails twice, then accepts.
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    let receiver = Router::new().route(
        "/otomax/callback",
        post(move |Json(body): Json<Value>| {
            let seen = seen2.clone();
            async move {
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push(body);
                    s.len()
                };
                if n < 3 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let addr = wacenter_test_support::serve(receiver).await;
    let url = format!("http://{addr}/otomax/callback?secret=s3cret");
    sim.client.set_outbox_callback(&url).await.unwrap();
    assert_eq!(
        sim.client.get_outbox_callback().await.unwrap().result["url"],
        json!(url)
    );

    sim.client
        .insert_inbox(&inbox("S5.08123456789.1234", "628123456789"))
        .await
        .unwrap();
    let row = eventually(Duration::from_secs(10), "delivered outbox row", || async {
        sim.get("_sim/outbox")
            .await
            .as_array()
            .and_then(|a| a.first().cloned())
            .filter(|r| r["state"] == json!("delivered"))
    })
    .await;
    assert_eq!(row["attempts"], json!(3));
    let posted = seen.lock().unwrap()[0].clone();
    assert_eq!(posted["penerima"], json!("628123456789"));
    assert_eq!(posted["tipe_penerima"], json!("W"));
    assert!(posted["pesan"]
        .as_str()
        .unwrap()
        .starts_with("SUKSES S5.08123456789"));

    let kode = row["row"]["kode"].as_i64().unwrap();
    sim.client.update_status_outbox(kode, 20).await.unwrap();
    let row = sim.get("_sim/outbox").await[0].clone();
    assert_eq!(row["update_status"], json!(20));
    assert!(
        sim.client.update_status_outbox(1, 20).await.is_err(),
        "unknown outbox kode"
    );
}

#[tokio::test]
async fn bad_token_and_expired_exp() {
    let sim = start_sim().await;
    let wrong = client_for(&sim.base, "another dev key");
    let err = wrong.test("1").await.unwrap_err();
    assert!(matches!(err, OtomaxError::Auth { .. }), "{err}");

    let r = sim
        .http
        .post(format!("{}Test", sim.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], json!(false));
    assert!(body["desc"].as_str().unwrap().contains("token"));

    // A body signed correctly but already expired: sent raw, bypassing the client's own check.
    let exp = wacenter_otomax::format_exp(Utc::now() - chrono::Duration::seconds(5));
    let body = format!(
        r#"{{"pesan":"S.1234","kode_reseller":"","pengirim":"628123456789","tipe_pengirim":"W","kode_terminal":1,"_exp":"{exp}"}}"#
    );
    let signed = sim.client.sign("InsertInbox", body.into_bytes()).unwrap();
    let err = sim
        .client
        .send_once(&signed, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, OtomaxError::Rejected { ref desc } if desc.contains("expired")),
        "{err}"
    );
    assert_eq!(
        sim.get("_sim/stats").await["received"],
        json!(0),
        "expired rows are not inserted"
    );
}

#[tokio::test]
async fn malformed_and_wrong_content_get_otomax_error_shape() {
    let sim = start_sim().await;
    let signer = wacenter_otomax::Signer::new(APP_ID, APP_KEY, DEV_KEY);
    for (path, body, status) in [
        ("InsertInbox", "{not json", 400),
        ("InsertInbox", "[1,2]", 400),
        ("InsertInbox", r#"{"pesan":"x"}"#, 200),
        ("GetTrx", r#"{"trxid":"abc"}"#, 200),
        ("NoSuchEndpoint", "{}", 404),
    ] {
        let token = signer.token(body.as_bytes());
        let r = sim
            .http
            .post(format!("{}{path}?token={token}", sim.base))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path} {body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["ok"], json!(false), "{path} {body}");
        assert!(!v["desc"].as_str().unwrap().is_empty());
    }
    // Still serving.
    sim.client.test("1").await.unwrap();
}

#[tokio::test]
async fn api_prefix_and_case_insensitive_names() {
    let sim = start_sim().await;
    let signer = wacenter_otomax::Signer::new(APP_ID, APP_KEY, DEV_KEY);
    let body = r#"{"kode":"R001"}"#;
    for path in ["api/getSaldoRs", "GETSALDORS", "api/GetSaldoRs"] {
        let r = sim
            .http
            .post(format!(
                "{}{path}?token={}",
                sim.base,
                signer.token(body.as_bytes())
            ))
            .body(body)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["result"]["saldo"], json!(1_000_000), "{path}");
    }
    // A base URL ending in /api/ works too.
    let via_api = client_for(&format!("{}api/", sim.base), DEV_KEY);
    via_api.get_saldo_rs("R001").await.unwrap();
}

#[tokio::test]
async fn faults_at_run_time() {
    let sim = start_sim().await;
    let (status, f) = sim
        .post("_sim/faults", json!({"down_for_seconds": 1.0}))
        .await;
    assert_eq!(status, 200);
    assert!(f["down_for_seconds"].as_f64().unwrap() > 0.5);
    let err = sim.client.test("1").await.unwrap_err();
    assert!(
        matches!(err, OtomaxError::Status { status: 503, .. }),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sim.client.test("1").await.unwrap();

    sim.post("_sim/faults", json!({"error_rate": 1.0})).await;
    // A 500 may come after OtomaX acted: the client reports it as uncertain, not sent again.
    let err = sim.client.test("1").await.unwrap_err();
    assert!(
        matches!(&err, OtomaxError::Uncertain { last } if matches!(**last, OtomaxError::Status { status: 500, .. })),
        "{err}"
    );
    sim.post("_sim/faults", json!({"error_rate": 0.0, "latency_ms": 300}))
        .await;
    let r = sim.client.test("1").await.unwrap();
    assert!(r.elapsed >= Duration::from_millis(300));

    let (status, _) = sim.post("_sim/faults", json!({"error_rate": 7})).await;
    assert_eq!(status, 400);
    let (status, _) = sim.post("_sim/reset", json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn client_retries_through_a_short_outage() {
    let sim = start_sim().await;
    sim.post("_sim/faults", json!({"down_for_seconds": 1.5}))
        .await;
    let c = OtomaxClient::new(ClientConfig {
        server: "default".into(),
        base_url: sim.base.parse().unwrap(),
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        policy: RetryPolicy::default(),
        rate_limit: 0,
    });
    let r = c
        .insert_inbox(&inbox("S.1234", "628123456789"))
        .await
        .unwrap();
    // Down at 0 s and at the 1 s retry; back for the retry at 3 s.
    assert_eq!(r.attempts, 3);
}

mod whatsapp_devices {
    use serde_json::json;
    use wacenter_sim::inspect::SimClient;
    use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};

    const FIRST: &str = "628111000001@s.whatsapp.net";
    const SECOND: &str = "628111000002@s.whatsapp.net";

    /// With several linked numbers, a send must name its device, as GOWA v8+ requires.
    #[tokio::test]
    async fn several_devices_need_x_device_id() {
        let sim = WhatsappSim::new(WhatsappSimConfig {
            device_id: FIRST.into(),
            other_devices: vec![SECOND.into()],
            ..Default::default()
        });
        let base = format!("http://{}", sim.spawn(0).await.unwrap());
        let http = reqwest::Client::new();
        let send = |device: Option<&str>| {
            let mut r = http
                .post(format!("{base}/send/message"))
                .json(&json!({"phone": "628123456789@s.whatsapp.net", "message": "hi"}));
            if let Some(d) = device {
                r = r.header("X-Device-Id", d);
            }
            r.send()
        };
        let r = send(None).await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains("DEVICE_ID_REQUIRED"));
        let r = send(Some("628999@s.whatsapp.net")).await.unwrap();
        assert_eq!(r.status(), 404);
        assert!(r.text().await.unwrap().contains("DEVICE_NOT_FOUND"));
        let r = send(Some(SECOND)).await.unwrap();
        assert_eq!(r.status(), 200);
        let sent = SimClient::new(&base, http.clone())
            .list("outbox")
            .await
            .unwrap();
        assert_eq!(sent.len(), 1, "refused sends are not recorded");
        assert_eq!(sent[0]["device_id"], json!(SECOND));
    }
}

/// The add-on's own requests, as its author publishes them, signed with the add-on's demo
/// credentials: each is answered with OtomaX's envelope, as OtomaX would (`ok:false` with a
/// reason for what the simulator does not have), never "unknown endpoint".
#[tokio::test]
async fn the_open_api_add_on_s_fourteen_requests_are_answered_as_otomax_would() {
    let sim = OtomaxSim::new(OtomaxSimConfig {
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        resellers: vec![SimReseller {
            phone: "62812996000".into(),
            code: "yusuf".into(),
            name: "Yusuf".into(),
            saldo: 275_380,
            pin: Some("1234".into()),
        }],
        result_delay: Duration::from_millis(50),
        faults: Faults::default(),
    });
    let base = format!("http://{}/", sim.spawn(0).await.unwrap());
    let client = client_for(&base, DEV_KEY);
    use base64::Engine;
    use sha2::Digest;
    let pin_hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"1234"));
    let requests: Vec<(&str, String)> = vec![
        ("Test", r#"{"phone":"08123456789"}"#.into()),
        ("InsertInbox", r#"{"pesan":"tiket.100000.1234","kode_reseller":"yusuf","pengirim":"0812996000","tipe_pengirim":"W"}"#.into()),
        ("GetTrx", r#"{"trxid":4522967}"#.into()),
        ("GetRs", r#"{"kode":"yusuf"}"#.into()),
        ("GetSaldoRs", r#"{"kode":"yusuf"}"#.into()),
        ("TesPinRs", format!(r#"{{"kode":"yusuf","pin_hash":"{pin_hash}"}}"#)),
        ("GetFormatRequest", r#"{"nama":"tiketdeposit"}"#.into()),
        ("GetVersiOtomaX", "{}".into()),
        ("UpdateStatusOutbox", r#"{"kode":9047353,"status":20}"#.into()),
        ("TambahSaldo", r#"{"kode_reseller":"yusuf","jumlah":1000,"saldo":275380,"keterangan":"tes tambah"}"#.into()),
        ("GetOutboxCallback", "{}".into()),
        ("SetOutboxCallback", r#"{"url":"https://wacenter.example/otomax/callback?secret=s"}"#.into()),
        ("QueryProduk", r#"{"kode":"BYROMNI"}"#.into()),
        ("QueryOperator", r#"{"kode":"PPOB"}"#.into()),
    ];
    assert_eq!(requests.len(), 14);
    let mut answers = std::collections::BTreeMap::new();
    for (endpoint, body) in requests {
        let signed = client.sign(endpoint, body.into_bytes()).unwrap();
        let r = reqwest::Client::new()
            .post(signed.url.clone())
            .header("content-type", "application/json")
            .body(signed.body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{endpoint}");
        let answer: Value = r.json().await.unwrap();
        let desc = answer["desc"].as_str().unwrap_or_default();
        assert!(
            answer["ok"].is_boolean() && !desc.contains("unknown endpoint"),
            "{endpoint}: {answer}"
        );
        answers.insert(endpoint, answer);
    }
    let ok = |e: &str| answers[e]["ok"] == json!(true);
    let result = |e: &str| answers[e]["result"].clone();
    assert!(ok("Test"));
    // The add-on's InsertInbox carries neither kode_terminal nor _exp; its sender is written
    // 08…, which OtomaX does not know as yusuf's 628…: 41, unknown sender.
    assert!(ok("InsertInbox"));
    assert_eq!(result("InsertInbox")["status"], json!(41));
    assert!(!ok("GetTrx"), "no such transaction: {}", answers["GetTrx"]);
    assert_eq!(result("GetRs")["kode"], json!("yusuf"));
    assert_eq!(result("GetSaldoRs")["saldo"], json!(275_380));
    assert_eq!(result("TesPinRs")["valid"], json!(true));
    assert_eq!(
        result("GetFormatRequest")["format"],
        json!("TIKET.<nominal>.<pin>")
    );
    assert!(result("GetVersiOtomaX")["versi"].is_string());
    assert!(!ok("UpdateStatusOutbox"), "no such outbox row");
    assert_eq!(result("TambahSaldo")["saldo_akhir"], json!(276_380));
    assert!(ok("GetOutboxCallback"));
    assert_eq!(
        result("SetOutboxCallback")["url"],
        json!("https://wacenter.example/otomax/callback?secret=s")
    );
    assert_eq!(result("QueryProduk")["kode_operator"], json!("PPOB"));
    assert_eq!(
        result("QueryOperator")["produk"][0]["kode"],
        json!("BYROMNI")
    );

    // What the simulator does not have, and a wrong PIN or balance: ok:false with the reason.
    for (endpoint, body, reason) in [
        (
            "TesPinRs",
            r#"{"kode":"yusuf","pin_hash":"AAAA"}"#,
            "PIN salah",
        ),
        (
            "GetFormatRequest",
            r#"{"nama":"voucher"}"#,
            "tidak ditemukan",
        ),
        ("QueryProduk", r#"{"kode":"ZZ9"}"#, "tidak ditemukan"),
        ("QueryOperator", r#"{"kode":"MARS"}"#, "tidak ditemukan"),
        (
            "TambahSaldo",
            r#"{"kode_reseller":"yusuf","jumlah":1000,"saldo":275380}"#,
            "Saldo tidak sesuai",
        ),
    ] {
        let e = client
            .call_raw(endpoint, body.as_bytes().to_vec(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, OtomaxError::Rejected { .. }) && e.to_string().contains(reason),
            "{endpoint}: {e}"
        );
    }
}
