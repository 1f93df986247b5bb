//! The outbox pusher: rows posted to the registered callback URL until it answers 2xx.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use super::state::*;
use super::OtomaxSim;

impl OtomaxSim {
    /// Adds an outbox row for `penerima` and delivers it to the callback URL (spec: OtomaX pushes
    /// transaction results and notices through its outbox).
    pub(crate) fn push_outbox(
        &self,
        penerima: &str,
        pesan: &str,
        kode_inbox: Option<i64>,
        kode_transaksi: Option<i64>,
        kode_reseller: &str,
        kode_terminal: i64,
    ) -> Value {
        let (kode, generation, row) = {
            let mut inner = self.lock();
            inner.next_outbox += 1;
            let kode = inner.next_outbox;
            let row = json!({
                "kode": kode,
                "tgl_entri": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "penerima": penerima,
                "tipe_penerima": "W",
                "pesan": pesan,
                "status": 0,
                "tgl_status": Value::Null,
                "kode_inbox": kode_inbox,
                "kode_transaksi": kode_transaksi,
                "kode_reseller": kode_reseller,
                "pengirim": penerima,
                "kode_terminal": kode_terminal,
                "is_perintah": 0,
            });
            let idx = inner.outbox.len();
            inner.outbox.push(OutboxEntry {
                row: row.clone(),
                state: "pending",
                attempts: 0,
                last_error: None,
                delivered_at: None,
                update_status: None,
                update_status_at: None,
            });
            inner.outbox_index.insert(kode, idx);
            (kode, inner.generation, row)
        };
        let sim = self.clone();
        let body = row.clone();
        tokio::spawn(async move { sim.deliver(kode, generation, body).await });
        row
    }

    /// Posts one outbox row to the callback URL until it gets a 2xx.
    pub(crate) async fn deliver(self, kode: i64, generation: u64, row: Value) {
        tokio::time::sleep(self.shared.result_delay).await;
        let mut backoff = Duration::from_millis(100);
        loop {
            let url = {
                let inner = self.lock();
                if inner.generation != generation {
                    return;
                }
                inner.callback_url.clone()
            };
            let outcome = match &url {
                None => Err("no callback URL registered (SetOutboxCallback)".to_string()),
                Some(url) => match self
                    .shared
                    .http
                    .post(url)
                    .json(&row)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(e.without_url().to_string()),
                },
            };
            {
                let mut inner = self.lock();
                if inner.generation != generation {
                    return;
                }
                let Some(&idx) = inner.outbox_index.get(&kode) else {
                    return;
                };
                let entry = &mut inner.outbox[idx];
                if url.is_some() {
                    entry.attempts += 1;
                }
                match outcome {
                    Ok(()) => {
                        entry.state = "delivered";
                        entry.delivered_at = Some(Utc::now());
                        entry.last_error = None;
                        return;
                    }
                    Err(e) => entry.last_error = Some(e),
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
