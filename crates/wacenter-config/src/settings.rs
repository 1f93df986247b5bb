//! The settings table: one line per setting gives its field, type, default, environment name and
//! help text; the struct, its defaults, the command-line flags and the list of environment names
//! are all generated from it so they cannot disagree.

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Credentials, Role, Secret};

/// Which WhatsApp provider outbound messages are sent through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WaProvider {
    #[default]
    Gowa,
    Meta,
}

impl From<wacenter_proto::Provider> for WaProvider {
    fn from(p: wacenter_proto::Provider) -> Self {
        match p {
            wacenter_proto::Provider::Gowa => Self::Gowa,
            wacenter_proto::Provider::Meta => Self::Meta,
        }
    }
}

impl std::str::FromStr for WaProvider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gowa" => Ok(Self::Gowa),
            "meta" => Ok(Self::Meta),
            other => Err(format!("{other:?} is not a provider; use gowa or meta")),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not a log format; use text or json")),
        }
    }
}

/// `OTOMAX_EXPIRED_REPLY`'s default: what a reseller reads when the command expired unprocessed.
pub const DEFAULT_EXPIRED_REPLY: &str =
    "Maaf, pesan Anda belum dapat diproses. Silakan kirim ulang.";

/// `OTOMAX_AUTH_FAILED_REPLY`'s default: OtomaX refused wacenter's credentials, so it never saw
/// the command.
pub const DEFAULT_AUTH_FAILED_REPLY: &str =
    "Maaf, layanan sedang gangguan dan pesan Anda belum diproses. Silakan coba lagi nanti.";

/// `OTOMAX_REJECTED_REPLY`'s default: OtomaX refused the command itself.
pub const DEFAULT_REJECTED_REPLY: &str =
    "Maaf, pesan Anda ditolak dan tidak diproses. Silakan hubungi admin.";

macro_rules! text_setting {
    ($env:literal, String) => {
        $env
    };
    ($env:literal, Secret) => {
        $env
    };
    ($env:literal, $other:ident) => {
        ""
    };
}

macro_rules! secret_setting {
    ($env:literal, Secret) => {
        $env
    };
    ($env:literal, $other:ident) => {
        ""
    };
}

macro_rules! settings {
    ($( $(#[$fattr:meta])* $field:ident : $ty:ident = $default:expr, $default_doc:literal, $env:literal, $help:literal $(, [$($arg:tt)*])? ; )*) => {
        /// Every wacenter setting, after all layers are merged.
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Settings {
            $( #[doc = $help] $(#[$fattr])* pub $field: $ty, )*
            /// The `[[otomax]]` tables of the config file: the deployment's OtomaX servers
            /// (spec §3a; see [`crate::RoutingTable`]).
            #[serde(skip_serializing_if = "Vec::is_empty")]
            pub otomax: Vec<crate::routing::ServerTable>,
            /// The `[[account]]` tables of the config file: its WhatsApp numbers.
            #[serde(skip_serializing_if = "Vec::is_empty")]
            pub account: Vec<crate::routing::AccountTable>,
            /// The config file the settings were read from, to name its lines in errors.
            #[serde(skip)]
            pub config_file: Option<std::path::PathBuf>,
        }

        impl Default for Settings {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    otomax: Vec::new(),
                    account: Vec::new(),
                    config_file: None,
                }
            }
        }

        /// The environment variable of every setting, in table order.
        pub const ENV_NAMES: &[&str] = &[$($env),*];

        /// Every setting's environment variable with the default its `--help` states.
        pub const DOCUMENTED_DEFAULTS: &[(&str, &str)] = &[$(($env, $default_doc)),*];

        /// Settings whose values are secrets (never logged, kept out of ConfigMaps).
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) const SECRET_SETTINGS: &[&str] = &[$( secret_setting!($env, $ty) ),*];

        /// Settings whose values are text even when they look like numbers (`0012`, `12345`).
        pub(crate) const TEXT_SETTINGS: &[&str] = &[$( text_setting!($env, $ty) ),*];

        /// Command-line flags: one per setting, each optional (unset flags leave lower layers alone).
        #[derive(Debug, Clone, Default, Serialize, clap::Args)]
        #[command(next_help_heading = "Settings (flag > environment > config file > default)")]
        pub struct SettingsArgs {
            $(
                #[arg(long, help = concat!($help, " [env: ", $env, "] [default: ", $default_doc, "]") $(, $($arg)*)?)]
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

settings! {
    otomax_enabled: bool = true, "true", "OTOMAX_ENABLED", "Forward WhatsApp messages to OtomaX", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    #[serde(deserialize_with = "crate::de::text")] otomax_api_url: String = "http://127.0.0.1:5000/".into(), "http://127.0.0.1:5000/", "OTOMAX_API_URL", "Base URL of the OtomaX Open API", [value_name = "URL"];
    #[serde(deserialize_with = "crate::de::text")] otomax_app_id: String = String::new(), "", "OTOMAX_APP_ID", "OtomaX App ID", [value_name = "ID"];
    otomax_app_key: Secret = Secret::default(), "", "OTOMAX_APP_KEY", "OtomaX App Key (secret)", [value_name = "KEY"];
    otomax_dev_key: Secret = Secret::default(), "", "OTOMAX_DEV_KEY", "OtomaX Dev Key (secret)", [value_name = "KEY"];
    #[serde(deserialize_with = "crate::de::text")] otomax_default_reseller: String = String::new(), "", "OTOMAX_DEFAULT_RESELLER", "kode_reseller sent with every InsertInbox", [value_name = "CODE"];
    otomax_default_kode_terminal: i64 = 1, "1", "OTOMAX_DEFAULT_KODE_TERMINAL", "kode_terminal sent with every InsertInbox", [value_name = "N"];
    otomax_forward_incoming: bool = true, "true", "OTOMAX_FORWARD_INCOMING", "Forward messages other people send to us", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    otomax_forward_outgoing: bool = false, "false", "OTOMAX_FORWARD_OUTGOING", "Forward messages our own number sends (never wacenter's own replies)", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    otomax_forward_groups: bool = false, "false", "OTOMAX_FORWARD_GROUPS", "Forward messages from group chats", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    otomax_forward_media: bool = false, "false", "OTOMAX_FORWARD_MEDIA", "Forward media messages (their caption as text)", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    otomax_auto_reply_enabled: bool = true, "true", "OTOMAX_AUTO_REPLY_ENABLED", "Send OtomaX's immediate answer back to the sender", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    debug: bool = false, "false", "DEBUG", "Debug logging (secrets stay hidden)", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    otomax_exp_seconds: u64 = 30, "30", "OTOMAX_EXP_SECONDS", "_exp = WhatsApp message time + this many seconds", [value_name = "SECONDS"];
    otomax_timeout_seconds: u64 = 30, "30", "OTOMAX_TIMEOUT_SECONDS", "Timeout of one OtomaX attempt (never past _exp)", [value_name = "SECONDS"];
    otomax_max_retries: u32 = 3, "3", "OTOMAX_MAX_RETRIES", "Retries after the first attempt (1 s, 2 s, 4 s ...)", [value_name = "N"];
    otomax_retry_ambiguous: bool = false, "false", "OTOMAX_RETRY_AMBIGUOUS", "Also retry OtomaX attempts that may have arrived (timeouts, lost answers, HTTP 500/504); can insert a purchase twice", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    #[serde(deserialize_with = "crate::de::text")] otomax_expired_reply: String = DEFAULT_EXPIRED_REPLY.into(), "Maaf, pesan Anda belum dapat diproses. Silakan kirim ulang.", "OTOMAX_EXPIRED_REPLY", "Told once to a sender whose command expired unprocessed (empty = off)", [value_name = "TEXT"];
    wa_send_rate: u32 = 0, "0", "WA_SEND_RATE", "Messages per second each WhatsApp account may send, shared by every reply replica (0 = unlimited); an [[account]]'s send_rate overrides it", [value_name = "PER_SECOND"];
    wa_quote_replies: bool = true, "true", "WA_QUOTE_REPLIES", "Auto-replies quote the reseller's message (GOWA reply_message_id, Meta context.message_id)", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    #[serde(deserialize_with = "crate::de::text")] otomax_auth_failed_reply: String = DEFAULT_AUTH_FAILED_REPLY.into(), "Maaf, layanan sedang gangguan dan pesan Anda belum diproses. Silakan coba lagi nanti.", "OTOMAX_AUTH_FAILED_REPLY", "Told once to a sender whose command OtomaX never saw because it refused wacenter's credentials (empty = off)", [value_name = "TEXT"];
    #[serde(deserialize_with = "crate::de::text")] otomax_rejected_reply: String = DEFAULT_REJECTED_REPLY.into(), "Maaf, pesan Anda ditolak dan tidak diproses. Silakan hubungi admin.", "OTOMAX_REJECTED_REPLY", "Told once to a sender whose command OtomaX refused (ok:false or another 4xx; empty = off)", [value_name = "TEXT"];
    otomax_rate_limit: u32 = 0, "0", "OTOMAX_RATE_LIMIT", "OtomaX requests per second per process, 0 = unlimited", [value_name = "PER_SECOND"];
    otomax_callback_secret: Secret = Secret::default(), "", "OTOMAX_CALLBACK_SECRET", "Shared secret OtomaX presents on /otomax/callback (required by the callback service)", [value_name = "SECRET"];
    #[serde(deserialize_with = "crate::de::text")] otomax_callback_allow_ips: String = String::new(), "", "OTOMAX_CALLBACK_ALLOW_IPS", "Comma-separated CIDRs allowed to call /otomax/callback (empty = any)", [value_name = "CIDRS"];
    otomax_outbox_ack: bool = true, "true", "OTOMAX_OUTBOX_ACK", "Report outbox delivery to OtomaX with UpdateStatusOutbox (20/40)", [value_name = "BOOL", num_args = 0..=1, default_missing_value = "true"];
    app_basic_auth: Secret = Secret::default(), "", "APP_BASIC_AUTH", "user:pass[,user:pass...] for the /otomax/* admin routes", [value_name = "USER:PASS"];
    #[serde(deserialize_with = "crate::de::text")] public_url: String = String::new(), "", "PUBLIC_URL", "Public base URL of the callback service (for set-callback)", [value_name = "URL"];
    #[serde(deserialize_with = "crate::de::text")] nats_url: String = "nats://127.0.0.1:4222".into(), "nats://127.0.0.1:4222", "NATS_URL", "NATS server(s), comma-separated", [value_name = "URL"];
    nats_stream_replicas: usize = 1, "1", "NATS_STREAM_REPLICAS", "Replicas of each JetStream stream and bucket (3 on a cluster)", [value_name = "N"];
    trail_retention_days: u32 = 7, "7", "TRAIL_RETENTION_DAYS", "Days the message trail (every step of every message, for wacenter trace and the console) is kept on NATS; 0 = no trail", [value_name = "DAYS"];
    forwarder_concurrency: usize = 64, "64", "FORWARDER_CONCURRENCY", "Messages in flight per forwarder replica", [value_name = "N"];
    reply_concurrency: usize = 64, "64", "REPLY_CONCURRENCY", "Messages in flight per reply replica", [value_name = "N"];
    wa_provider: WaProvider = WaProvider::Gowa, "gowa", "WA_PROVIDER", "Provider that sends WhatsApp messages: gowa or meta", [value_name = "gowa|meta"];
    wa_webhook_secret: Secret = Secret::default(), "", "WA_WEBHOOK_SECRET", "GOWA webhook HMAC secret (enables /webhook/gowa)", [value_name = "SECRET"];
    #[serde(deserialize_with = "crate::de::text")] wa_default_country_code: String = "62".into(), "62", "WA_DEFAULT_COUNTRY_CODE", "Country code that replaces a leading 0", [value_name = "DIGITS"];
    #[serde(deserialize_with = "crate::de::text")] gowa_url: String = "http://127.0.0.1:3100".into(), "http://127.0.0.1:3100", "GOWA_URL", "GOWA REST base URL", [value_name = "URL"];
    gowa_basic_auth: Secret = Secret::default(), "", "GOWA_BASIC_AUTH", "user:pass for GOWA's REST API", [value_name = "USER:PASS"];
    #[serde(deserialize_with = "crate::de::text")] gowa_device_id: String = String::new(), "", "GOWA_DEVICE_ID", "GOWA device for messages with no known account", [value_name = "ID"];
    meta_app_secret: Secret = Secret::default(), "", "META_APP_SECRET", "Meta app secret (enables /webhook/meta)", [value_name = "SECRET"];
    meta_verify_token: Secret = Secret::default(), "", "META_VERIFY_TOKEN", "Meta webhook verification token", [value_name = "TOKEN"];
    meta_access_token: Secret = Secret::default(), "", "META_ACCESS_TOKEN", "Meta Graph API access token", [value_name = "TOKEN"];
    #[serde(deserialize_with = "crate::de::text")] meta_phone_number_id: String = String::new(), "", "META_PHONE_NUMBER_ID", "Meta phone number id for messages with no known account", [value_name = "ID"];
    #[serde(deserialize_with = "crate::de::text")] meta_graph_url: String = "https://graph.facebook.com/v21.0".into(), "https://graph.facebook.com/v21.0", "META_GRAPH_URL", "Meta Graph API base URL with version", [value_name = "URL"];
    log_format: LogFormat = LogFormat::Text, "text", "LOG_FORMAT", "Log format: text or json", [value_name = "text|json"];
    #[serde(deserialize_with = "crate::de::text")] otel_exporter_otlp_endpoint: String = String::new(), "", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP endpoint for traces (empty = off)", [value_name = "URL"];
    ingress_port: u16 = 3001, "3001", "INGRESS_PORT", "Ingress HTTP port", [value_name = "PORT"];
    forwarder_port: u16 = 9091, "9091", "FORWARDER_PORT", "Forwarder ops port (health, metrics)", [value_name = "PORT"];
    reply_port: u16 = 9092, "9092", "REPLY_PORT", "Reply ops port (health, metrics)", [value_name = "PORT"];
    app_port: u16 = 3000, "3000", "APP_PORT", "Callback service / REST API port", [value_name = "PORT"];
}

impl Settings {
    /// Checks everything `role` needs; the first problem is returned, naming its setting. The
    /// services parse their configuration ([`crate::ForwarderConfig`] …) instead, which checks
    /// the same.
    pub fn validate(&self, role: Role) -> Result<(), ConfigError> {
        use crate::services::*;
        match role {
            Role::Ingress => IngressConfig::from_settings(self).map(drop),
            Role::Forwarder => ForwarderConfig::from_settings(self).map(drop),
            Role::Reply => ReplyConfig::from_settings(self).map(drop),
            Role::Callback => CallbackConfig::from_settings(self).map(drop),
            Role::OtomaxTool => {
                common_checks(self)?;
                // The OTOMAX_* settings, or the table's servers when there are `[[otomax]]` tables.
                crate::RoutingTable::from_settings(self).map(drop)
            }
            Role::NatsTool => common_checks(self),
        }
    }

    /// The settings as the environment a service process reads: every setting under its
    /// environment name, as text (secrets included: for starting processes, never for logs).
    pub fn to_env(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).expect("settings serialize");
        value
            .as_object()
            .expect("settings serialize as an object")
            .iter()
            .map(|(field, v)| (field.to_ascii_uppercase(), v))
            .filter(|(name, _)| ENV_NAMES.contains(&name.as_str()))
            .map(|(name, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (name, text)
            })
            .collect()
    }

    /// `APP_BASIC_AUTH` as users and passwords.
    pub fn basic_auth_users(&self) -> Result<Vec<Credentials>, ConfigError> {
        parse_user_pass_list("APP_BASIC_AUTH", self.app_basic_auth.expose())
    }

    /// `GOWA_BASIC_AUTH` as one user and password, if set.
    pub fn gowa_basic_auth(&self) -> Result<Option<Credentials>, ConfigError> {
        Ok(
            parse_user_pass_list("GOWA_BASIC_AUTH", self.gowa_basic_auth.expose())?
                .into_iter()
                .next(),
        )
    }

    /// `OTOMAX_CALLBACK_ALLOW_IPS` as networks.
    pub fn callback_allow_list(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.otomax_callback_allow_ips
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::parse(s).ok_or_else(|| {
                    ConfigError::new(
                        "OTOMAX_CALLBACK_ALLOW_IPS",
                        format!("{s:?} is not an IP address or CIDR"),
                    )
                })
            })
            .collect()
    }
}

pub(crate) fn require(setting: &str, value: &str, why: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::new(setting, format!("missing; {why}")))
    } else {
        Ok(())
    }
}

/// `value` as a URL of one of `schemes` with a host, or an error naming `setting`.
pub(crate) fn check_url(
    setting: &str,
    value: &str,
    schemes: &[&str],
) -> Result<url::Url, ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if schemes.contains(&u.scheme()) && u.has_host() => Ok(u),
        Ok(u) => Err(ConfigError::new(
            setting,
            format!(
                "{value:?} must be a {} URL with a host (got scheme {:?})",
                schemes.join("/"),
                u.scheme()
            ),
        )),
        Err(e) => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a valid URL ({e})"),
        )),
    }
}

fn parse_user_pass_list(setting: &str, value: &str) -> Result<Vec<Credentials>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(Credentials {
                user: u.to_string(),
                password: Secret::new(p),
            }),
            _ => Err(ConfigError::new(
                setting,
                "every entry must be user:password (separate several with commas)",
            )),
        })
        .collect()
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<std::net::IpAddr>().ok()?,
                Some(p.parse::<u8>().ok()?),
            ),
            None => (s.parse().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}
