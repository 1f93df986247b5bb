//! Webhook signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>`, the
//! scheme GOWA and Meta share, plus WAHA's `X-Webhook-Hmac` (hex HMAC-SHA512).
//!
//! Always verify over the raw request bytes, before any parsing: Meta escapes non-ASCII as
//! `\uXXXX`, so a re-serialized body would not match.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// The header GOWA and Meta put their signature in.
pub const HUB_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
/// The header WAHA puts its signature in.
pub const WAHA_SIGNATURE_HEADER: &str = "X-Webhook-Hmac";

/// Why a webhook signature was refused. The messages never echo the header value back: it is
/// attacker-controlled and would only help someone probing the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is malformed (expected `sha256=` followed by 64 hex digits)")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` (`sha256=<hex>`) against the raw body, in constant time.
///
/// The `sha256=` prefix and the hex digits are accepted in either case; surrounding whitespace
/// is ignored (some proxies add it). An empty secret is not rejected here: refusing to start
/// without one is the configuration's job.
pub fn verify_hub_signature(
    secret: &[u8],
    raw_body: &[u8],
    header_value: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header_value.map(str::trim).ok_or(SignatureError::Missing)?;
    if value.is_empty() {
        return Err(SignatureError::Missing);
    }
    let hex_part = strip_prefix_ignore_case(value, "sha256=").ok_or(SignatureError::Malformed)?;
    let expected = decode_hex(hex_part, 32).ok_or(SignatureError::Malformed)?;
    let mut mac = hmac_sha256(secret);
    mac.update(raw_body);
    // `verify_slice` compares in constant time, so timing reveals nothing about the right value.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The full `X-Hub-Signature-256` value for `body`: `sha256=<lowercase hex>`. Used by the
/// WhatsApp simulator to sign the webhooks it emits, and by tests.
pub fn sign_hub(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks WAHA's `X-Webhook-Hmac` (bare hex HMAC-SHA512 of the raw body), in constant time.
pub fn verify_waha_sha512(
    secret: &[u8],
    raw_body: &[u8],
    header_value: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header_value.map(str::trim).ok_or(SignatureError::Missing)?;
    if value.is_empty() {
        return Err(SignatureError::Missing);
    }
    let expected = decode_hex(value, 64).ok_or(SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(raw_body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC hashes over-long keys and pads short ones: no key length is an error.
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Hex of exactly `len` bytes, or None. Checking the length first keeps a huge header from
/// costing a huge allocation.
fn decode_hex(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.len() != len * 2 {
        return None;
    }
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const SIGNATURES: &str = include_str!("../tests/fixtures/signatures.json");

    fn fixture(name: &str) -> &'static [u8] {
        match name {
            "gowa-v7-text.json" => include_bytes!("../tests/fixtures/gowa-v7-text.json"),
            "gowa-v8-ack.json" => include_bytes!("../tests/fixtures/gowa-v8-ack.json"),
            "gowa-v8-group.json" => include_bytes!("../tests/fixtures/gowa-v8-group.json"),
            "gowa-v8-text.json" => include_bytes!("../tests/fixtures/gowa-v8-text.json"),
            "meta-status.json" => include_bytes!("../tests/fixtures/meta-status.json"),
            "meta-text.json" => include_bytes!("../tests/fixtures/meta-text.json"),
            other => panic!("signatures.json names an unknown fixture {other}"),
        }
    }

    #[test]
    fn every_fixture_in_signatures_json_verifies() {
        let cases: Vec<Value> = serde_json::from_str(SIGNATURES).unwrap();
        let mut hub = 0;
        let mut waha = 0;
        for case in &cases {
            let key = case["key"].as_str().unwrap().as_bytes();
            let value = case["value"].as_str().unwrap();
            let body: Vec<u8> = match case["file"].as_str() {
                Some(file) => fixture(file).to_vec(),
                None => case["body"].as_str().unwrap().as_bytes().to_vec(),
            };
            match case["header"].as_str().unwrap() {
                HUB_SIGNATURE_HEADER => {
                    hub += 1;
                    assert_eq!(sign_hub(key, &body), value, "{case}");
                    assert_eq!(verify_hub_signature(key, &body, Some(value)), Ok(()));
                    // One flipped byte anywhere in the body must fail.
                    let mut tampered = body.clone();
                    tampered[body.len() / 2] ^= 1;
                    assert_eq!(
                        verify_hub_signature(key, &tampered, Some(value)),
                        Err(SignatureError::Mismatch)
                    );
                    assert_eq!(
                        verify_hub_signature(b"wrong", &body, Some(value)),
                        Err(SignatureError::Mismatch)
                    );
                }
                WAHA_SIGNATURE_HEADER => {
                    waha += 1;
                    assert_eq!(case["algorithm"], "sha512");
                    assert_eq!(verify_waha_sha512(key, &body, Some(value)), Ok(()));
                    assert_eq!(
                        verify_waha_sha512(key, b"{}", Some(value)),
                        Err(SignatureError::Mismatch)
                    );
                }
                other => panic!("unexpected header {other}"),
            }
        }
        assert_eq!(hub, 6);
        assert_eq!(waha, 1);
    }

    #[test]
    fn missing_and_malformed_are_told_apart() {
        let body = b"{}";
        let good = sign_hub(b"secret", body);
        assert_eq!(
            verify_hub_signature(b"secret", body, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_hub_signature(b"secret", body, Some("")),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_hub_signature(b"secret", body, Some("  ")),
            Err(SignatureError::Missing)
        );
        for bad in [
            "sha256",
            "sha256=",
            "sha1=0123",
            "sha256=xyz",
            &good[7..],              // hex without the prefix
            &good[..good.len() - 1], // 63 digits
            &format!("{good}0"),     // 65 digits
            &format!("sha512={}", &good[7..]),
            &format!("sha256={}", "g".repeat(64)),
            &"sha256=".repeat(10_000), // huge header: no allocation, no panic
            "sha256=é",                // multi-byte character across the prefix boundary
            "é",
        ] {
            assert_eq!(
                verify_hub_signature(b"secret", body, Some(bad)),
                Err(SignatureError::Malformed),
                "{bad:.40}"
            );
        }
    }

    #[test]
    fn prefix_and_hex_case_and_whitespace_are_tolerated() {
        let body = br#"{"a":1}"#;
        let good = sign_hub(b"k", body);
        let upper = format!("SHA256={}", good[7..].to_uppercase());
        assert_eq!(verify_hub_signature(b"k", body, Some(&upper)), Ok(()));
        assert_eq!(
            verify_hub_signature(b"k", body, Some(&format!(" {good} "))),
            Ok(())
        );
    }

    #[test]
    fn signing_matches_a_known_vector() {
        // RFC 4231 test case 2.
        let value = sign_hub(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            value,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn waha_errors() {
        assert_eq!(
            verify_waha_sha512(b"k", b"", None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_waha_sha512(b"k", b"", Some("abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_waha_sha512(b"k", b"", Some(&"0".repeat(128))),
            Err(SignatureError::Mismatch)
        );
    }
}
