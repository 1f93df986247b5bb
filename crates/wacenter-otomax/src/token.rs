//! The OtomaX request token (reference §1).
//!
//! `token = clean(b64({"id":"<APP_ID>"})) + "." + clean(b64(HMAC(first, body)))` where
//! `first = b64(HMAC(dev_key, app_key))` with padding and *not* cleaned. Only the body is signed,
//! so the bytes signed must be exactly the bytes sent.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs request bodies for one set of credentials. The per-credential parts (`metadata` and
/// `first`) are computed once; signing a body is then one HMAC.
#[derive(Clone)]
pub struct Signer {
    metadata: String,
    first: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `first` is derived from both keys: it is as secret as they are.
        f.debug_struct("Signer")
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(app_id: &str, app_key: &str, dev_key: &str) -> Self {
        let id_json = serde_json::json!({ "id": app_id }).to_string();
        let metadata = URL_SAFE_NO_PAD.encode(id_json.as_bytes());
        let first = STANDARD.encode(hmac(dev_key.as_bytes(), app_key.as_bytes()));
        Self { metadata, first }
    }

    /// The `metadata` part (base64url of `{"id":"<APP_ID>"}`), public by design.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// The token for exactly these body bytes.
    pub fn token(&self, body: &[u8]) -> String {
        let second = URL_SAFE_NO_PAD.encode(hmac(self.first.as_bytes(), body));
        let mut token = String::with_capacity(self.metadata.len() + 1 + second.len());
        token.push_str(&self.metadata);
        token.push('.');
        token.push_str(&second);
        token
    }

    /// Checks a presented token in constant time (used by the simulator).
    pub fn verify(&self, body: &[u8], presented: &str) -> bool {
        let expected = self.token(body);
        constant_time_eq(expected.as_bytes(), presented.as_bytes())
    }

    #[cfg(test)]
    fn first(&self) -> &str {
        &self.first
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Signer {
        Signer::new("OtomaX.Addon", "demoKey", "YAR.OtomaX.OpenApi.App")
    }

    #[test]
    fn intermediate_values_match_the_reference() {
        let s = demo();
        assert_eq!(s.metadata(), "eyJpZCI6Ik90b21hWC5BZGRvbiJ9");
        assert_eq!(s.first(), "I7n657wJxZTVbUqURWX18dI5s3MH885735fmLg0jwmA=");
    }

    #[test]
    fn reference_vectors() {
        let s = demo();
        let cases: &[(&str, &str)] = &[
            (
                r#"{"kode":"yusuf"}"#,
                "eyJpZCI6Ik90b21hWC5BZGRvbiJ9.aC2oX9iN94WqXGEbxdd_ilAPiqqXZlzElLqQBIH8QGI",
            ),
            (
                r#"{"phone":"08123456789"}"#,
                "eyJpZCI6Ik90b21hWC5BZGRvbiJ9.IWHE7KCWxXE1srdZ0HPPPYJWB_95Efb9EPfTQwyv5rA",
            ),
            (
                "{}",
                "eyJpZCI6Ik90b21hWC5BZGRvbiJ9.mQMFh6OxI-slvRQu7k2yP9B4J-vb-rsZxJ8kwkJdY-4",
            ),
            (
                r#"{"pesan":"Hello World","kode_reseller":"","pengirim":"6285219898489","tipe_pengirim":"W","kode_terminal":2,"_exp":"2025-10-18T20:30:05Z"}"#,
                "eyJpZCI6Ik90b21hWC5BZGRvbiJ9.toLcoIrpHVuEssutKf3Wv4f5PiSJKxLDwVaON7AHe8s",
            ),
        ];
        for (body, token) in cases {
            assert_eq!(s.token(body.as_bytes()), *token, "body {body}");
            assert!(s.verify(body.as_bytes(), token));
        }
    }

    /// Independent re-implementation of §1 written out step by step, to cross-check bodies that
    /// the reference has no vectors for.
    fn by_the_book(app_id: &str, app_key: &str, dev_key: &str, body: &[u8]) -> String {
        let clean = |s: String| s.replace('=', "").replace('/', "_").replace('+', "-");
        let metadata = clean(STANDARD.encode(format!("{{\"id\":\"{app_id}\"}}")));
        let first = STANDARD.encode(hmac(dev_key.as_bytes(), app_key.as_bytes()));
        let second = clean(STANDARD.encode(hmac(first.as_bytes(), body)));
        format!("{metadata}.{second}")
    }

    #[test]
    fn non_ascii_markup_and_long_bodies() {
        let s = demo();
        let bodies = [
            r#"{"pesan":"Terima kasih 🙏 — saldo Rp 10.000","pengirim":"628123"}"#.to_string(),
            r#"{"pesan":"<b>a & b</b> \u003c escaped \u003e","kode_reseller":"R&D<1>"}"#
                .to_string(),
            format!(r#"{{"pesan":"{}"}}"#, "x".repeat(200_000)),
            format!(r#"{{"pesan":"{}"}}"#, "Ä".repeat(10_000)),
        ];
        for body in &bodies {
            let t = s.token(body.as_bytes());
            assert_eq!(
                t,
                by_the_book(
                    "OtomaX.Addon",
                    "demoKey",
                    "YAR.OtomaX.OpenApi.App",
                    body.as_bytes()
                )
            );
            assert!(!t.contains(['=', '+', '/']), "token must be url-safe: {t}");
        }
    }

    #[test]
    fn whitespace_changes_the_token() {
        let s = demo();
        assert_ne!(
            s.token(br#"{"kode":"yusuf"}"#),
            s.token(br#"{ "kode": "yusuf" }"#)
        );
    }

    #[test]
    fn app_id_is_json_escaped_in_metadata() {
        let s = Signer::new("we\"ird", "k", "d");
        let decoded = URL_SAFE_NO_PAD.decode(s.metadata()).unwrap();
        assert_eq!(decoded, br#"{"id":"we\"ird"}"#);
    }

    #[test]
    fn verify_rejects_tampering() {
        let s = demo();
        let token = s.token(b"{}");
        assert!(!s.verify(br#"{"a":1}"#, &token));
        assert!(!s.verify(b"{}", &token[..token.len() - 1]));
        assert!(
            !Signer::new("OtomaX.Addon", "other", "YAR.OtomaX.OpenApi.App").verify(b"{}", &token)
        );
    }

    #[test]
    fn debug_does_not_show_key_material() {
        let s = demo();
        let shown = format!("{s:?}");
        assert!(!shown.contains(s.first()));
    }
}
