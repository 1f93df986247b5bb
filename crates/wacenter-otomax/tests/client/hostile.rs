//! Hostile answers from "OtomaX": any status and any body decode to a value or a distinct error.

use proptest::prelude::*;
use wacenter_otomax::client::decode_envelope;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_answer_decodes_or_errs(status in 100u16..600, body in prop::collection::vec(any::<u8>(), 0..256)) {
        match decode_envelope(status, &body) {
            Ok(v) => prop_assert_eq!(v.get("ok"), Some(&serde_json::Value::Bool(true))),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn lenient_results_never_panic(v in prop::collection::btree_map("[a-zA-Z_]{1,10}", ".{0,10}", 0..8)) {
        let obj: serde_json::Map<String, serde_json::Value> = v.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        let _ = serde_json::from_value::<wacenter_otomax::InsertInboxResult>(serde_json::Value::Object(obj.clone()));
        let _ = serde_json::from_value::<wacenter_otomax::Balance>(serde_json::Value::Object(obj));
    }
}
