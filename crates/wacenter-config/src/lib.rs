//! wacenter settings.
//!
//! Layers, later wins: built-in defaults < TOML file (`--config PATH` or `WACENTER_CONFIG`) <
//! environment (exactly the seed's names, e.g. `OTOMAX_APP_KEY`) < command-line flags (the seed's
//! flags, e.g. `--otomax-app-key`). In the TOML file each setting is its environment name in lower
//! case (`otomax_app_id = "…"`). Every binary flattens [`SettingsArgs`] into its command line, so
//! `--help` lists every setting with its environment name and default.

mod de;
mod routing;
mod secret;
mod services;
mod settings;

pub use routing::{
    Account, AccountTable, Lanes, OtomaxServer, RoutingTable, ServerName, ServerTable,
    DEFAULT_SERVER,
};
pub use secret::Secret;
pub use services::{
    CallbackConfig, Credentials, ForwarderConfig, ForwardingFlags, GowaStatusConfig, IngressConfig,
    MetaWebhook, NatsConfig, Notices, OtomaxConfig, ReplyConfig, SendConfig,
};
pub use settings::{
    IpNet, LogFormat, Settings, SettingsArgs, WaProvider, DEFAULT_AUTH_FAILED_REPLY,
    DEFAULT_EXPIRED_REPLY, DEFAULT_REJECTED_REPLY, DOCUMENTED_DEFAULTS, ENV_NAMES,
};

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

/// A setting that stops start-up: the message names the setting and says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

/// Which service is starting: decides which settings are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingress,
    Forwarder,
    Reply,
    Callback,
    /// The operator's OtomaX tools (`wacenter otomax …`).
    OtomaxTool,
    /// Only NATS is needed (dead-letter tools).
    NatsTool,
}

/// Loads the settings from every layer and validates them for `role`.
pub fn load(
    args: &SettingsArgs,
    config_file: Option<&Path>,
    role: Role,
) -> Result<Settings, ConfigError> {
    let settings = load_unvalidated(args, config_file)?;
    settings.validate(role)?;
    Ok(settings)
}

/// Loads without role checks (for tools that want to show settings).
pub fn load_unvalidated(
    args: &SettingsArgs,
    config_file: Option<&Path>,
) -> Result<Settings, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    let file: Option<PathBuf> = config_file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("WACENTER_CONFIG").map(PathBuf::from));
    let file = file.filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = &file {
        if !path.is_file() {
            return Err(ConfigError::new(
                "WACENTER_CONFIG / --config",
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(EnvVars).merge(Serialized::defaults(args));
    let mut settings = figment.extract::<Settings>().map_err(figment_error)?;
    settings.config_file = file;
    Ok(settings)
}

/// The environment layer: exactly the seed's variable names. Text settings stay text (`0012`
/// keeps its zeros); the others are parsed the way figment parses environment values.
struct EnvVars;

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for name in ENV_NAMES {
            let Ok(raw) = std::env::var(name) else {
                continue;
            };
            let value = if settings::TEXT_SETTINGS.contains(name) {
                Value::from(raw)
            } else {
                raw.trim()
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(raw))
            };
            dict.insert(name.to_ascii_lowercase(), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn figment_error(err: figment::Error) -> ConfigError {
    // Name the setting as the user wrote it: the environment name, upper case, or the routing
    // table's entry (`[[otomax]] #2 app_key`).
    let setting = match err.path.as_slice() {
        [table, index, rest @ ..] if table == "otomax" || table == "account" => {
            let n = index.parse::<usize>().map_or(0, |i| i + 1);
            let key = rest.first().map(|k| format!(" {k}")).unwrap_or_default();
            format!("[[{table}]] #{n}{key}")
        }
        [table] if table == "otomax" || table == "account" => {
            format!("[[{table}]] (each a table, written [[{table}]])")
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "configuration".into(),
    };
    let source = err
        .metadata
        .as_ref()
        .map(|m| format!(" (from {})", m.name))
        .unwrap_or_default();
    let kind = err.kind.to_string();
    // Never echo a secret's value back: figment's message quotes the value it could not parse.
    let secret_like = ["KEY", "SECRET", "TOKEN", "AUTH", "PASS"]
        .iter()
        .any(|w| setting.to_ascii_uppercase().contains(w));
    let message = if secret_like {
        "has a value of the wrong type".to_string()
    } else {
        kind
    };
    ConfigError::new(setting, format!("{message}{source}"))
}

#[cfg(test)]
mod deploy_tests;
#[cfg(test)]
mod tests;
