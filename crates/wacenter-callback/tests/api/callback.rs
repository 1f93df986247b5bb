//! `POST /otomax/callback` basics (the end-to-end suite covers delivery): the secret, one
//! queued message per `kode`, and a row too large for NATS.

use serde_json::json;
use wacenter_proto::names;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_row_is_queued_once_per_kode() {
    let h = Harness::start().await;
    let row = json!({"kode": 9047001, "penerima": "0812-3456-789", "tipe_penerima": "W", "pesan": "SUKSES"});
    let first = answer(
        h.http
            .post(h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}")))
            .json(&row),
    )
    .await;
    first.expect(200, "SUCCESS");
    assert_eq!(
        first.body["results"],
        json!({"id": "outbox:9047001", "to": RESELLER_PHONE, "duplicate": false})
    );
    // OtomaX repeating the callback (this time with the header and a string kode).
    let again = json!({"kode": "9047001", "penerima": RESELLER_PHONE, "pesan": "SUKSES"});
    let second = answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&again),
    )
    .await;
    second.expect(200, "SUCCESS");
    assert_eq!(second.body["results"]["duplicate"], json!(true));
    assert_eq!(second.message(), "already queued");
    assert_eq!(
        h.bus.stream_messages(names::OUTBOUND_STREAM).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_without_kode_repeated_by_otomax_is_queued_once() {
    let h = Harness::start().await;
    let url = h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}"));
    let row = json!({"penerima": RESELLER_PHONE, "pesan": "Saldo Anda Rp 10.000"});
    let first = answer(h.http.post(&url).json(&row)).await;
    first.expect(200, "SUCCESS");
    let id = first.body["results"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("outbox:sha256:"), "{id}");
    let second = answer(h.http.post(&url).json(&row)).await;
    second.expect(200, "SUCCESS");
    assert_eq!(second.body["results"]["duplicate"], json!(true));
    assert_eq!(
        h.bus.stream_messages(names::OUTBOUND_STREAM).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn form_encoded_rows_and_skipped_rows() {
    let h = Harness::start().await;
    let url = h.url(&format!("/otomax/callback?secret={CALLBACK_SECRET}"));
    let a = answer(
        h.http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("kode=5&penerima=628123456789&pesan=halo+kak"),
    )
    .await;
    a.expect(200, "SUCCESS");
    assert_eq!(a.body["results"]["id"], json!("outbox:5"));
    let a = answer(
        h.http
            .post(&url)
            .json(&json!({"kode": 6, "penerima": "628123", "tipe_penerima": "S", "pesan": "sms"})),
    )
    .await;
    a.expect(200, "SUCCESS");
    assert_eq!(
        a.body["results"],
        json!({"skipped": true, "reason": "other_channel"})
    );
    assert_eq!(
        h.bus.stream_messages(names::OUTBOUND_STREAM).await.unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_is_401_and_the_query_wins_over_the_header() {
    let h = Harness::start().await;
    let row = json!({"kode": 1, "penerima": RESELLER_PHONE, "pesan": "x"});
    answer(
        h.http
            .post(h.url("/otomax/callback?secret=nope"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&row),
    )
    .await
    .expect(401, "UNAUTHORIZED");
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", "nope")
            .json(&row),
    )
    .await
    .expect(401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_too_large_for_nats_is_413_not_retry_later() {
    let h = Harness::start().await;
    // Under the 1 MiB body limit, but the queued message (with its envelope fields) is not
    // under NATS's 1 MiB max_payload.
    let pesan = "a".repeat(wacenter_callback::BODY_LIMIT - 200);
    let row = json!({"kode": 3, "penerima": RESELLER_PHONE, "pesan": pesan});
    assert!(row.to_string().len() <= wacenter_callback::BODY_LIMIT);
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&row),
    )
    .await
    .expect(413, "PAYLOAD_TOO_LARGE")
    .mentions(&["max_payload"]);
    // The connection survived: the next row is queued.
    let row = json!({"kode": 4, "penerima": RESELLER_PHONE, "pesan": "short"});
    answer(
        h.http
            .post(h.url("/otomax/callback"))
            .header("x-callback-secret", CALLBACK_SECRET)
            .json(&row),
    )
    .await
    .expect(200, "SUCCESS");
}
