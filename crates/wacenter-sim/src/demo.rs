//! The demo's credentials and numbers, in one place: `scripts/dev`, the end-to-end tests, the
//! services' own tests and the bench use these (a test holds `scripts/dev` to them). The OtomaX
//! credentials are the ones the Open API add-on's author publishes for trying it out.

use std::time::Duration;

use wacenter_config::{Secret, Settings};

use crate::otomax::{Faults, OtomaxSimConfig, SimReseller};

pub const APP_ID: &str = "OtomaX.Addon";
pub const APP_KEY: &str = "demoKey";
pub const DEV_KEY: &str = "YAR.OtomaX.OpenApi.App";
/// GOWA's webhook secret (`WA_WEBHOOK_SECRET`): the WhatsApp simulator signs with it.
pub const WEBHOOK_SECRET: &str = "dev-webhook-secret";
/// What OtomaX presents on `/otomax/callback` (`OTOMAX_CALLBACK_SECRET`).
pub const CALLBACK_SECRET: &str = "dev-callback-secret";
/// The admin routes' user (`APP_BASIC_AUTH`).
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin";
/// Our WhatsApp number, as GOWA names the device (`GOWA_DEVICE_ID`).
pub const DEVICE: &str = "628987654321@s.whatsapp.net";
/// A reseller the OtomaX simulator knows, and its code.
pub const RESELLER_PHONE: &str = "628123456789";
pub const RESELLER_CODE: &str = "R001";

/// The OtomaX simulator with the demo credentials and these resellers.
pub fn otomax(resellers: Vec<SimReseller>, result_delay: Duration) -> OtomaxSimConfig {
    OtomaxSimConfig {
        app_id: APP_ID.into(),
        app_key: APP_KEY.into(),
        dev_key: DEV_KEY.into(),
        resellers,
        result_delay,
        faults: Faults::default(),
    }
}

/// Settings for services talking to NATS at `nats_url` with the demo credentials (OtomaX,
/// webhook and callback secrets, admin user, device); everything else at its default.
pub fn settings(nats_url: &str) -> Settings {
    Settings {
        nats_url: nats_url.into(),
        otomax_app_id: APP_ID.into(),
        otomax_app_key: Secret::new(APP_KEY),
        otomax_dev_key: Secret::new(DEV_KEY),
        otomax_callback_secret: Secret::new(CALLBACK_SECRET),
        wa_webhook_secret: Secret::new(WEBHOOK_SECRET),
        app_basic_auth: Secret::new(format!("{ADMIN_USER}:{ADMIN_PASSWORD}")),
        gowa_device_id: DEVICE.into(),
        ..Settings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scripts/dev` exports the demo's settings as shell variables: they must be these.
    #[test]
    fn scripts_dev_uses_the_demo_credentials() {
        let script = include_str!("../../../scripts/dev");
        let exported: std::collections::BTreeMap<&str, &str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let demo = settings("nats://unused").to_env();
        for name in [
            "OTOMAX_APP_ID",
            "OTOMAX_APP_KEY",
            "OTOMAX_DEV_KEY",
            "OTOMAX_CALLBACK_SECRET",
            "WA_WEBHOOK_SECRET",
            "APP_BASIC_AUTH",
            "GOWA_DEVICE_ID",
        ] {
            let expected = demo
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            assert_eq!(
                exported.get(name).copied(),
                expected,
                "scripts/dev's {name} is not the demo's"
            );
        }
    }
}
