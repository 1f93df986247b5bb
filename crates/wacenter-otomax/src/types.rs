//! Request and response types of the OtomaX endpoints wacenter uses (reference §2–§3).
//!
//! Responses decode leniently: unknown fields are kept in `extra` so REST callers see everything
//! OtomaX said, and numbers are accepted as strings too.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lenient;

/// InsertInbox request. Field order is the reference's and is part of the wire format (the token
/// signs these exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsertInboxRequest {
    pub pesan: String,
    pub kode_reseller: String,
    pub pengirim: String,
    pub tipe_pengirim: String,
    pub kode_terminal: i64,
    #[serde(rename = "_exp")]
    pub exp: String,
}

impl InsertInboxRequest {
    /// A WhatsApp (`tipe_pengirim = "W"`) inbox row expiring at `exp`.
    pub fn whatsapp(
        pesan: impl Into<String>,
        kode_reseller: impl Into<String>,
        pengirim: impl Into<String>,
        kode_terminal: i64,
        exp: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            pesan: pesan.into(),
            kode_reseller: kode_reseller.into(),
            pengirim: pengirim.into(),
            tipe_pengirim: "W".into(),
            kode_terminal,
            exp: crate::format_exp(exp),
        }
    }
}

/// InsertInbox result: `{"kode_inbox":218223,"status":21,"statusDesc":"…","pesan":"…"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InsertInboxResult {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub kode_inbox: Option<i64>,
    #[serde(default, deserialize_with = "lenient::i64_or_zero")]
    pub status: i64,
    #[serde(rename = "statusDesc", default, deserialize_with = "lenient::string")]
    pub status_desc: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub pesan: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What wacenter answers the WhatsApp sender after an InsertInbox (reference §6).
impl InsertInboxResult {
    pub fn auto_reply_text(&self) -> Option<&str> {
        let text = match self.status {
            21 if !self.pesan.trim().is_empty() => self.pesan.as_str(),
            21 | 41 | 42 => self.status_desc.as_str(),
            _ => return None,
        };
        (!text.trim().is_empty()).then_some(text)
    }
}

/// `{"kode":"<reseller>"}`: GetRs and GetSaldoRs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResellerRequest {
    pub kode: String,
}

/// GetRs result. Only `kode` and `nama` are modelled; everything else stays in `extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reseller {
    #[serde(default, deserialize_with = "lenient::string")]
    pub kode: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub nama: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// GetSaldoRs result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Balance {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub saldo: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub saldo_minimal: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"trxid":4522967}`: GetTrx.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrxRequest {
    pub trxid: i64,
}

/// GetTrx result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Transaction {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub kode: Option<i64>,
    #[serde(default, deserialize_with = "lenient::string")]
    pub kode_produk: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub tujuan: String,
    #[serde(default, deserialize_with = "lenient::string")]
    pub kode_reseller: String,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub harga: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub harga_beli: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub status: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"phone":"08123456789"}`: Test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRequest {
    pub phone: String,
}

/// `{"url":"https://…"}`: SetOutboxCallback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackUrl {
    pub url: String,
}

/// `{"kode":9047353,"status":20}`: UpdateStatusOutbox.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct UpdateStatusOutboxRequest {
    pub kode: i64,
    pub status: i64,
}

/// Outbox status codes OtomaX understands in UpdateStatusOutbox.
pub mod outbox_status {
    pub const DELIVERED: i64 = 20;
    pub const FAILED: i64 = 40;
    pub const CANCELLED: i64 = 50;
}

/// Inbox status codes (reference §3) with their Indonesian descriptions.
pub fn inbox_status_desc(code: i64) -> Option<&'static str> {
    Some(match code {
        20 => "Sukses",
        21 => "Sukses Masuk Outbox",
        22 => "Sukses Masuk Transaksi",
        40 => "Gagal",
        41 => "Bukan Reseller",
        42 => "Format Salah",
        43 => "Saldo Tidak Cukup",
        44 => "Produk Salah",
        45 => "Stok Kosong",
        46 => "Transaksi Dobel",
        47 => "Produk Gangguan",
        49 => "Pin Salah",
        50 => "Dibatalkan",
        52 => "Tujuan Salah",
        56 => "Nomor Blacklist",
        64 => "Diabaikan",
        65 => "Unit Tidak Cukup",
        69 => "Cutoff",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn insert_inbox_serializes_in_reference_order() {
        let exp = chrono::Utc
            .with_ymd_and_hms(2025, 10, 18, 20, 30, 5)
            .unwrap();
        let req = InsertInboxRequest {
            kode_terminal: 2,
            ..InsertInboxRequest::whatsapp("Hello World", "", "6285219898489", 2, exp)
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"pesan":"Hello World","kode_reseller":"","pengirim":"6285219898489","tipe_pengirim":"W","kode_terminal":2,"_exp":"2025-10-18T20:30:05Z"}"#
        );
    }

    #[test]
    fn insert_result_is_lenient_and_keeps_unknown_fields() {
        let r: InsertInboxResult = serde_json::from_value(json!({
            "kode_inbox": "218223", "status": "21", "statusDesc": "Sukses Masuk Outbox", "pesan": null, "x": 1
        }))
        .unwrap();
        assert_eq!(r.kode_inbox, Some(218223));
        assert_eq!(r.status, 21);
        assert_eq!(r.pesan, "");
        assert_eq!(r.extra["x"], json!(1));
    }

    #[test]
    fn auto_reply_rule() {
        let r = |status, desc: &str, pesan: &str| InsertInboxResult {
            status,
            status_desc: desc.into(),
            pesan: pesan.into(),
            ..Default::default()
        };
        assert_eq!(
            r(21, "Sukses Masuk Outbox", "TRX OK").auto_reply_text(),
            Some("TRX OK")
        );
        assert_eq!(
            r(21, "Sukses Masuk Outbox", " ").auto_reply_text(),
            Some("Sukses Masuk Outbox")
        );
        assert_eq!(
            r(41, "Bukan Reseller", "ignored").auto_reply_text(),
            Some("Bukan Reseller")
        );
        assert_eq!(
            r(42, "Format Salah", "").auto_reply_text(),
            Some("Format Salah")
        );
        assert_eq!(r(20, "Sukses", "x").auto_reply_text(), None);
        assert_eq!(r(43, "Saldo Tidak Cukup", "x").auto_reply_text(), None);
        assert_eq!(
            r(41, "", "").auto_reply_text(),
            None,
            "nothing to say, say nothing"
        );
    }
}
