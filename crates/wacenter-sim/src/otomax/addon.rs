//! The endpoints OtomaX's Open API add-on has beside those wacenter calls: `TesPinRs`,
//! `GetFormatRequest`, `GetVersiOtomaX`, `TambahSaldo`, `QueryProduk`, `QueryOperator`. Each
//! answers with OtomaX's envelope: `{"ok":true,"result":{…}}`, or `{"ok":false,"desc":…}` (HTTP
//! 200) for what the simulator does not know, as OtomaX does.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

use super::commands::price;
use super::routes::{fail, ok};
use super::OtomaxSim;
use wacenter_otomax::lenient::{value_as_i64, value_as_string};

/// What `GetVersiOtomaX` reports.
pub const VERSION: &str = "OtomaX simulator (wacenter) 1.0";

/// The products the simulator lists (`QueryProduk`, `QueryOperator`): code, name, operator. A
/// purchase of any other product code is still accepted (priced by the digits in its code).
const PRODUCTS: &[(&str, &str, &str)] = &[
    ("S5", "Telkomsel 5.000", "TSEL"),
    ("S10", "Telkomsel 10.000", "TSEL"),
    ("S20", "Telkomsel 20.000", "TSEL"),
    ("S50", "Telkomsel 50.000", "TSEL"),
    ("X10", "XL 10.000", "XL"),
    ("X25", "XL 25.000", "XL"),
    ("I10", "Indosat 10.000", "ISAT"),
    ("PLN20", "Token PLN 20.000", "PLN"),
    ("PLN50", "Token PLN 50.000", "PLN"),
    ("BYROMNI", "Bayar tagihan Omni", "PPOB"),
];

const OPERATORS: &[(&str, &str)] = &[
    ("TSEL", "Telkomsel"),
    ("XL", "XL Axiata"),
    ("ISAT", "Indosat Ooredoo"),
    ("PLN", "PLN Prabayar"),
    ("PPOB", "Pembayaran tagihan (PPOB)"),
];

/// The request formats resellers are told (`GetFormatRequest`): name, format, description.
const FORMATS: &[(&str, &str, &str)] = &[
    (
        "tiketdeposit",
        "TIKET.<nominal>.<pin>",
        "Tiket deposit saldo (nominal 10.000 sampai 100.000.000)",
    ),
    ("ceksaldo", "S.<pin>", "Cek saldo"),
    (
        "transaksi",
        "<kode produk>.<nomor tujuan>.<pin>",
        "Pembelian produk",
    ),
];

fn product_json(kode: &str, nama: &str, operator: &str) -> Value {
    // A bill payment's price is its admin fee.
    let harga = if operator == "PPOB" {
        2_500
    } else {
        price(kode)
    };
    json!({"kode": kode, "nama": nama, "kode_operator": operator, "harga": harga, "aktif": 1})
}

fn field(req: &Value, key: &str) -> String {
    req.get(key).map(value_as_string).unwrap_or_default()
}

/// Answers one of the add-on's endpoints; `None` for a name that is not one of them.
pub(crate) fn answer(sim: &OtomaxSim, endpoint: &str, req: &Value) -> Option<Response> {
    Some(match endpoint {
        "tespinrs" => tes_pin(sim, req),
        "getformatrequest" => {
            let nama = field(req, "nama");
            match FORMATS
                .iter()
                .find(|(n, ..)| n.eq_ignore_ascii_case(nama.trim()))
            {
                Some((n, format, keterangan)) => {
                    ok(json!({"nama": n, "format": format, "keterangan": keterangan}))
                }
                None => fail(
                    StatusCode::OK,
                    format!("Format request {nama} tidak ditemukan"),
                ),
            }
        }
        "getversiotomax" => ok(json!({"versi": VERSION})),
        "tambahsaldo" => tambah_saldo(sim, req),
        "queryproduk" => {
            let kode = field(req, "kode");
            match PRODUCTS
                .iter()
                .find(|(k, ..)| k.eq_ignore_ascii_case(kode.trim()))
            {
                Some((k, nama, operator)) => ok(product_json(k, nama, operator)),
                None => fail(StatusCode::OK, format!("Produk {kode} tidak ditemukan")),
            }
        }
        "queryoperator" => {
            let kode = field(req, "kode");
            match OPERATORS
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(kode.trim()))
            {
                Some((k, nama)) => {
                    let produk: Vec<Value> = PRODUCTS
                        .iter()
                        .filter(|(_, _, op)| op == k)
                        .map(|(p, n, op)| product_json(p, n, op))
                        .collect();
                    ok(json!({"kode": k, "nama": nama, "produk": produk}))
                }
                None => fail(StatusCode::OK, format!("Operator {kode} tidak ditemukan")),
            }
        }
        _ => return None,
    })
}

/// `TesPinRs {"kode","pin_hash"}`: whether `pin_hash` matches the reseller's PIN. The add-on
/// sends the PIN hashed and base64-encoded; the simulator takes the base64 of its SHA-256 (and,
/// leniently, of the PIN itself). A reseller without a PIN has none to test.
fn tes_pin(sim: &OtomaxSim, req: &Value) -> Response {
    let kode = field(req, "kode");
    let pin_hash = field(req, "pin_hash");
    if pin_hash.trim().is_empty() {
        return fail(StatusCode::OK, "pin_hash wajib diisi");
    }
    let Some(reseller) = sim.reseller(&kode) else {
        return fail(StatusCode::OK, format!("Reseller {kode} tidak ditemukan"));
    };
    let Some(pin) = reseller.pin.as_deref() else {
        return fail(
            StatusCode::OK,
            format!("Reseller {} tidak memakai PIN", reseller.code),
        );
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let matches = [
        b64.encode(sha2::Sha256::digest(pin.as_bytes())),
        b64.encode(pin.as_bytes()),
    ]
    .iter()
    .any(|h| h == pin_hash.trim());
    if matches {
        ok(json!({"kode": reseller.code, "valid": true}))
    } else {
        fail(StatusCode::OK, "PIN salah")
    }
}

/// `TambahSaldo {"kode_reseller","jumlah","saldo","keterangan"}`: adds `jumlah` to the reseller's
/// balance. `saldo`, when given, is the balance the caller believes the reseller has: a
/// different one refuses the top-up (so a repeated request cannot add twice).
fn tambah_saldo(sim: &OtomaxSim, req: &Value) -> Response {
    let kode = field(req, "kode_reseller");
    let Some(jumlah) = req.get("jumlah").and_then(value_as_i64) else {
        return fail(StatusCode::OK, "jumlah wajib diisi (angka)");
    };
    if jumlah == 0 {
        return fail(StatusCode::OK, "jumlah tidak boleh 0");
    }
    let expected = req.get("saldo").and_then(value_as_i64);
    let keterangan = field(req, "keterangan");
    let mut inner = sim.lock();
    let Some(r) = inner
        .resellers
        .iter_mut()
        .find(|r| r.code.eq_ignore_ascii_case(kode.trim()))
    else {
        return fail(StatusCode::OK, format!("Reseller {kode} tidak ditemukan"));
    };
    if let Some(expected) = expected.filter(|s| *s != r.saldo) {
        return fail(
            StatusCode::OK,
            format!(
                "Saldo tidak sesuai: saldo {} sekarang {}, bukan {expected}",
                r.code, r.saldo
            ),
        );
    }
    let Some(saldo_akhir) = r.saldo.checked_add(jumlah).filter(|s| *s >= 0) else {
        return fail(StatusCode::OK, "Saldo tidak cukup");
    };
    let saldo_awal = r.saldo;
    r.saldo = saldo_akhir;
    ok(json!({
        "kode_reseller": r.code,
        "jumlah": jumlah,
        "saldo_awal": saldo_awal,
        "saldo_akhir": saldo_akhir,
        "keterangan": keterangan,
    }))
}
