//! Hostile configuration: any TOML file and any value for any setting gives settings or one
//! clear error naming a setting, never a panic.

use proptest::prelude::*;
use wacenter_config::{load_unvalidated, SettingsArgs, ENV_NAMES};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_config_file(content in ".{0,200}", key in prop::sample::select(ENV_NAMES), value in ".{0,30}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wacenter.toml");
        std::fs::write(&path, &content).unwrap();
        let _ = load_unvalidated(&SettingsArgs::default(), Some(&path));
        let line = format!("{} = {value}\n", key.to_ascii_lowercase());
        std::fs::write(&path, line).unwrap();
        if let Err(e) = load_unvalidated(&SettingsArgs::default(), Some(&path)) {
            prop_assert!(!e.setting.is_empty() && !e.message.is_empty());
        }
    }
}
