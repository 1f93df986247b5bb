//! Each service's configuration, parsed once from [`Settings`] at start: URLs are `Url`s,
//! durations are durations, lists are lists, secrets stay [`Secret`]s, and what a service does not
//! need is not there. A value that cannot be parsed stops start-up with one line naming the
//! setting; after that, nothing is checked again.

use std::time::Duration;

use url::Url;
use wacenter_proto::ExpWindow;

use crate::settings::{check_url, require};
use crate::{ConfigError, IpNet, Secret, Settings, WaProvider};
use crate::{Lanes, RoutingTable};

/// A user and password (`user:pass`), the password a [`Secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

/// NATS as every service connects to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// One URL or a comma-separated list (a cluster).
    pub url: String,
    /// Replicas of each stream and bucket.
    pub stream_replicas: usize,
    /// How long the message trail is kept (`TRAIL_RETENTION_DAYS`); zero: no trail.
    pub trail_retention: Duration,
}

impl NatsConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let urls: Vec<&str> = s
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ConfigError::new(
                "NATS_URL",
                "missing; e.g. nats://127.0.0.1:4222",
            ));
        }
        for url in &urls {
            check_url("NATS_URL", url, &["nats", "tls", "ws", "wss"])?;
        }
        if !(1..=5).contains(&s.nats_stream_replicas) {
            return Err(ConfigError::new(
                "NATS_STREAM_REPLICAS",
                "must be between 1 and 5",
            ));
        }
        if s.trail_retention_days > 90 {
            return Err(ConfigError::new(
                "TRAIL_RETENTION_DAYS",
                "must be between 0 (no trail) and 90 days",
            ));
        }
        Ok(Self {
            url: urls.join(","),
            stream_replicas: s.nats_stream_replicas,
            trail_retention: Duration::from_secs(u64::from(s.trail_retention_days) * 24 * 3600),
        })
    }
}

/// One OtomaX server: where it is, how to sign for it, how to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtomaxConfig {
    pub api_url: Url,
    pub app_id: String,
    pub app_key: Secret,
    pub dev_key: Secret,
    /// `kode_reseller` of every InsertInbox.
    pub default_reseller: String,
    /// `kode_terminal` of every InsertInbox.
    pub default_kode_terminal: i64,
    /// `_exp` = WhatsApp message time + this.
    pub exp: ExpWindow,
    /// One attempt's timeout (never past `_exp`).
    pub attempt_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Also retry attempts that may have arrived.
    pub retry_ambiguous: bool,
    /// Requests per second per process, 0 = unlimited.
    pub rate_limit: u32,
}

impl OtomaxConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let api_url = check_url("OTOMAX_API_URL", &s.otomax_api_url, &["http", "https"])?;
        require(
            "OTOMAX_APP_ID",
            &s.otomax_app_id,
            "the OtomaX App ID is needed to sign requests",
        )?;
        require(
            "OTOMAX_APP_KEY",
            s.otomax_app_key.expose(),
            "the OtomaX App Key is needed to sign requests",
        )?;
        require(
            "OTOMAX_DEV_KEY",
            s.otomax_dev_key.expose(),
            "the OtomaX Dev Key is needed to sign requests",
        )?;
        let exp = ExpWindow::from_secs(s.otomax_exp_seconds)
            .map_err(|m| ConfigError::new("OTOMAX_EXP_SECONDS", m))?;
        if s.otomax_timeout_seconds == 0 {
            return Err(ConfigError::new(
                "OTOMAX_TIMEOUT_SECONDS",
                "must be at least 1",
            ));
        }
        if s.otomax_max_retries > 10 {
            return Err(ConfigError::new("OTOMAX_MAX_RETRIES", "must be 10 or less"));
        }
        Ok(Self {
            api_url,
            app_id: s.otomax_app_id.clone(),
            app_key: s.otomax_app_key.clone(),
            dev_key: s.otomax_dev_key.clone(),
            default_reseller: s.otomax_default_reseller.clone(),
            default_kode_terminal: s.otomax_default_kode_terminal,
            exp,
            attempt_timeout: Duration::from_secs(s.otomax_timeout_seconds),
            max_retries: s.otomax_max_retries,
            retry_ambiguous: s.otomax_retry_ambiguous,
            rate_limit: s.otomax_rate_limit,
        })
    }
}

/// The seed's forwarding flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardingFlags {
    /// `OTOMAX_ENABLED`.
    pub enabled: bool,
    pub incoming: bool,
    pub outgoing: bool,
    pub groups: bool,
    pub media: bool,
}

impl ForwardingFlags {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            enabled: s.otomax_enabled,
            incoming: s.otomax_forward_incoming,
            outgoing: s.otomax_forward_outgoing,
            groups: s.otomax_forward_groups,
            media: s.otomax_forward_media,
        }
    }
}

/// The country code that replaces a national number's leading `0` (`62`).
fn country_code(s: &Settings) -> Result<String, ConfigError> {
    let cc = &s.wa_default_country_code;
    if cc.is_empty() || !cc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            "WA_DEFAULT_COUNTRY_CODE",
            "must be digits, e.g. 62",
        ));
    }
    Ok(cc.to_string())
}

fn port(setting: &str, port: u16) -> Result<u16, ConfigError> {
    if port == 0 {
        return Err(ConfigError::new(
            setting,
            "must be a port number between 1 and 65535",
        ));
    }
    Ok(port)
}

fn nonzero(setting: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        return Err(ConfigError::new(setting, "must be at least 1"));
    }
    Ok(n)
}

/// The WhatsApp webhooks ingress accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    pub nats: NatsConfig,
    pub port: u16,
    /// `WA_WEBHOOK_SECRET`: `/webhook/gowa` is enabled when set.
    pub gowa_webhook_secret: Option<Secret>,
    /// `META_APP_SECRET` and `META_VERIFY_TOKEN`: `/webhook/meta` is enabled when set.
    pub meta_webhook: Option<MetaWebhook>,
    pub country_code: String,
    /// Which server's lane each account's messages are published in.
    pub lanes: Lanes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaWebhook {
    pub app_secret: Secret,
    pub verify_token: Secret,
}

impl IngressConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        common(s)?;
        let gowa_webhook_secret = Some(s.wa_webhook_secret.clone()).filter(|x| !x.is_empty());
        let meta_webhook = match (s.meta_app_secret.is_empty(), s.meta_verify_token.is_empty()) {
            (true, _) => None,
            (false, true) => {
                return Err(ConfigError::new(
                    "META_VERIFY_TOKEN",
                    "required with META_APP_SECRET for Meta's webhook handshake",
                ))
            }
            (false, false) => Some(MetaWebhook {
                app_secret: s.meta_app_secret.clone(),
                verify_token: s.meta_verify_token.clone(),
            }),
        };
        if gowa_webhook_secret.is_none() && meta_webhook.is_none() {
            return Err(ConfigError::new(
                "WA_WEBHOOK_SECRET",
                "no provider enabled: set WA_WEBHOOK_SECRET (GOWA webhooks) and/or META_APP_SECRET (Meta webhooks)",
            ));
        }
        Ok(Self {
            nats: NatsConfig::from_settings(s)?,
            port: port("INGRESS_PORT", s.ingress_port)?,
            gowa_webhook_secret,
            meta_webhook,
            country_code: country_code(s)?,
            lanes: Lanes::from_settings(s)?,
        })
    }
}

/// The forwarder: where messages go and what it does with OtomaX's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderConfig {
    pub nats: NatsConfig,
    pub port: u16,
    /// The OtomaX servers and the accounts that route to them; `None` when `OTOMAX_ENABLED` is
    /// off (every message is skipped, counted).
    pub routing: Option<RoutingTable>,
    pub flags: ForwardingFlags,
    pub auto_reply: bool,
    /// `WA_QUOTE_REPLIES`: auto-replies and notices quote the message they answer.
    pub quote_replies: bool,
    /// What a sender is told once when OtomaX never processed the command; each `None` when
    /// turned off.
    pub notices: Notices,
    pub concurrency: usize,
}

impl ForwarderConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        common(s)?;
        Ok(Self {
            nats: NatsConfig::from_settings(s)?,
            port: port("FORWARDER_PORT", s.forwarder_port)?,
            routing: s
                .otomax_enabled
                .then(|| RoutingTable::from_settings(s))
                .transpose()?,
            flags: ForwardingFlags::from_settings(s),
            auto_reply: s.otomax_auto_reply_enabled,
            quote_replies: s.wa_quote_replies,
            notices: Notices {
                expired: notice(&s.otomax_expired_reply),
                auth_failed: notice(&s.otomax_auth_failed_reply),
                rejected: notice(&s.otomax_rejected_reply),
            },
            concurrency: nonzero("FORWARDER_CONCURRENCY", s.forwarder_concurrency)?,
        })
    }
}

/// The notices a sender gets when their command ended without OtomaX processing it, one text per
/// class (`None`: turned off).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notices {
    /// `OTOMAX_EXPIRED_REPLY`: OtomaX could not be reached before `_exp` (or at all).
    pub expired: Option<String>,
    /// `OTOMAX_AUTH_FAILED_REPLY`: OtomaX refused wacenter's credentials.
    pub auth_failed: Option<String>,
    /// `OTOMAX_REJECTED_REPLY`: OtomaX refused the command.
    pub rejected: Option<String>,
}

fn notice(text: &str) -> Option<String> {
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// How the reply service sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendConfig {
    Gowa {
        url: Url,
        basic_auth: Option<Credentials>,
        /// The device for messages with no known account ("" = GOWA's only device).
        device_id: String,
    },
    Meta {
        graph_url: Url,
        access_token: Secret,
        /// The number for messages with no known account.
        phone_number_id: String,
    },
}

impl SendConfig {
    pub fn provider(&self) -> WaProvider {
        match self {
            Self::Gowa { .. } => WaProvider::Gowa,
            Self::Meta { .. } => WaProvider::Meta,
        }
    }
}

/// The reply service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyConfig {
    pub nats: NatsConfig,
    pub port: u16,
    pub send: SendConfig,
    /// The OtomaX servers outbox deliveries are reported to (`UpdateStatusOutbox`, each row to
    /// the server it came from); `None` when OtomaX or `OTOMAX_OUTBOX_ACK` is off.
    pub outbox_ack: Option<RoutingTable>,
    /// `OTOMAX_FORWARD_OUTGOING` (with OtomaX on): echoes of our sends reach the forwarder, so
    /// each send is fingerprinted before it leaves and its provider id recorded after; off, the
    /// forwarder never looks, and neither is written.
    pub record_own_sends: bool,
    /// Every server's lane: the reply service consumes each with its own `concurrency`. Also
    /// each account's own `send_rate`.
    pub lanes: Lanes,
    /// `WA_SEND_RATE`: messages per second each account may send (0 = unlimited).
    pub send_rate: u32,
    pub concurrency: usize,
}

impl ReplyConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        common(s)?;
        let send = match s.wa_provider {
            WaProvider::Gowa => SendConfig::Gowa {
                url: check_url("GOWA_URL", &s.gowa_url, &["http", "https"])?,
                basic_auth: s.gowa_basic_auth()?,
                device_id: s.gowa_device_id.clone(),
            },
            WaProvider::Meta => {
                let graph_url = check_url("META_GRAPH_URL", &s.meta_graph_url, &["http", "https"])?;
                let why = "needed to send through Meta (WA_PROVIDER=meta)";
                require("META_ACCESS_TOKEN", s.meta_access_token.expose(), why)?;
                require("META_PHONE_NUMBER_ID", &s.meta_phone_number_id, why)?;
                SendConfig::Meta {
                    graph_url,
                    access_token: s.meta_access_token.clone(),
                    phone_number_id: s.meta_phone_number_id.clone(),
                }
            }
        };
        let outbox_ack = (s.otomax_enabled && s.otomax_outbox_ack)
            .then(|| RoutingTable::from_settings(s))
            .transpose()?;
        Ok(Self {
            nats: NatsConfig::from_settings(s)?,
            port: port("REPLY_PORT", s.reply_port)?,
            send,
            outbox_ack,
            record_own_sends: s.otomax_enabled && s.otomax_forward_outgoing,
            lanes: Lanes::from_settings(s)?,
            send_rate: s.wa_send_rate,
            concurrency: nonzero("REPLY_CONCURRENCY", s.reply_concurrency)?,
        })
    }
}

/// The callback service: OtomaX's outbox callback and the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    pub nats: NatsConfig,
    pub port: u16,
    /// The OtomaX servers and accounts; `None` when `OTOMAX_ENABLED` is off (the REST routes
    /// answer so; callbacks are still taken, for the server `default`).
    pub routing: Option<RoutingTable>,
    /// What each server presents on `/otomax/callback/<name>` (`/otomax/callback` is `default`).
    pub callback_secrets: Vec<(String, Secret)>,
    /// Every server's lane, for the consumer lag `/otomax/health` reports.
    pub lanes: Lanes,
    /// Networks allowed to post callbacks; empty = any.
    pub allow_ips: Vec<IpNet>,
    /// Users of the admin routes; empty = the routes are locked.
    pub basic_auth: Vec<Credentials>,
    /// This service's public base URL, for `set-callback` without a body.
    pub public_url: Option<Url>,
    pub country_code: String,
    /// GOWA, for the console's account health (`GET /app/status` per device); `None` when
    /// `WA_PROVIDER` is not `gowa` or `GOWA_URL` is not a usable URL.
    pub gowa: Option<GowaStatusConfig>,
}

/// Where the callback service asks GOWA whether each device is logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GowaStatusConfig {
    pub url: Url,
    pub basic_auth: Option<Credentials>,
    /// `GOWA_DEVICE_ID` ("" = GOWA's only device).
    pub default_device: String,
}

impl CallbackConfig {
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        common(s)?;
        let routing = s
            .otomax_enabled
            .then(|| RoutingTable::from_settings(s))
            .transpose()?;
        // The servers of a routing table bring their own secrets; otherwise `/otomax/callback`
        // takes this one.
        if routing.is_none() || s.otomax.is_empty() {
            require(
                "OTOMAX_CALLBACK_SECRET",
                s.otomax_callback_secret.expose(),
                "required: OtomaX must present it on /otomax/callback (set a long random value)",
            )?;
        }
        let callback_secrets = match &routing {
            Some(table) => table
                .servers()
                .iter()
                .map(|server| (server.name.to_string(), server.callback_secret.clone()))
                .collect(),
            None => vec![(
                crate::DEFAULT_SERVER.to_string(),
                s.otomax_callback_secret.clone(),
            )],
        };
        Ok(Self {
            nats: NatsConfig::from_settings(s)?,
            port: port("APP_PORT", s.app_port)?,
            lanes: match &routing {
                Some(table) => table.lanes(),
                None => Lanes::from_settings(s)?,
            },
            routing,
            callback_secrets,
            allow_ips: s.callback_allow_list()?,
            basic_auth: s.basic_auth_users()?,
            public_url: public_url(s)?,
            country_code: country_code(s)?,
            gowa: match s.wa_provider {
                WaProvider::Gowa => Some(GowaStatusConfig {
                    url: check_url("GOWA_URL", &s.gowa_url, &["http", "https"])?,
                    basic_auth: s.gowa_basic_auth()?,
                    default_device: s.gowa_device_id.clone(),
                }),
                WaProvider::Meta => None,
            },
        })
    }

    /// The secret server `name` presents on its callback URL; `None` for a name not served.
    pub fn callback_secret(&self, name: &str) -> Option<&Secret> {
        self.callback_secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, secret)| secret)
    }
}

fn public_url(s: &Settings) -> Result<Option<Url>, ConfigError> {
    if s.public_url.trim().is_empty() {
        return Ok(None);
    }
    check_url("PUBLIC_URL", s.public_url.trim(), &["http", "https"]).map(Some)
}

/// What every service checks whether it uses it or not, so that a mistake anywhere in a shared
/// configuration shows at the first start rather than when another service meets it.
fn common(s: &Settings) -> Result<(), ConfigError> {
    NatsConfig::from_settings(s)?;
    for (name, value) in [
        ("INGRESS_PORT", s.ingress_port),
        ("FORWARDER_PORT", s.forwarder_port),
        ("REPLY_PORT", s.reply_port),
        ("APP_PORT", s.app_port),
    ] {
        port(name, value)?;
    }
    public_url(s)?;
    if !s.otel_exporter_otlp_endpoint.is_empty() {
        check_url(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &s.otel_exporter_otlp_endpoint,
            &["http", "https"],
        )?;
    }
    country_code(s)?;
    s.basic_auth_users()?;
    s.callback_allow_list()?;
    Ok(())
}

/// Checks the settings of the tools: NATS for the dead-letter tools, OtomaX for `wacenter otomax`.
pub(crate) fn common_checks(s: &Settings) -> Result<(), ConfigError> {
    common(s)
}
