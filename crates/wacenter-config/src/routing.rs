//! The routing table (spec §3a): which OtomaX servers this deployment serves (`[[otomax]]`) and
//! which WhatsApp accounts (numbers) belong to which server and terminal (`[[account]]`), from
//! the TOML config file. Without `[[otomax]]` tables the seed's settings (`OTOMAX_API_URL`, …)
//! make one server named `default`: a one-number business configures nothing new.
//!
//! ```toml
//! [[otomax]]
//! name = "jaya"
//! api_url = "https://otomax.jaya.example/"
//! app_id = "…"
//! app_key = "…"
//! dev_key = "…"
//! callback_secret = "…"
//!
//! [[account]]
//! id = "628111222333@s.whatsapp.net"   # GOWA device id, or Meta phone_number_id
//! provider = "gowa"
//! otomax = "jaya"
//! kode_terminal = 3
//! ```
//!
//! A mistake stops start-up with one line naming the table, its line in the file and the problem.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::services::OtomaxConfig;
use crate::{ConfigError, Secret, Settings, WaProvider};

/// The name of the server the seed's settings make, and where unknown accounts go when the table
/// has a server of that name.
pub const DEFAULT_SERVER: &str = wacenter_proto::names::DEFAULT_LANE;

/// One `[[otomax]]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTable {
    pub name: String,
    pub api_url: String,
    pub app_id: String,
    #[serde(default)]
    pub app_key: Secret,
    #[serde(default)]
    pub dev_key: Secret,
    #[serde(default)]
    pub callback_secret: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_reseller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_kode_terminal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
}

/// One `[[account]]` table as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTable {
    pub id: String,
    pub provider: WaProvider,
    pub otomax: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kode_terminal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_rate: Option<u32>,
}

/// A server's name: `[a-z0-9-]`, 1 to 32 characters; used in URLs, subjects and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(format!(
                "name {name:?} must be 1 to 32 of a-z, 0-9 and - (it appears in URLs and metrics)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One OtomaX server of the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtomaxServer {
    pub name: ServerName,
    pub otomax: OtomaxConfig,
    /// What this server presents on `/otomax/callback/<name>`.
    pub callback_secret: Secret,
    /// Messages in flight per forwarder replica for this server.
    pub concurrency: usize,
}

/// One WhatsApp account (number) and where its messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// GOWA device id (JID) or Meta `phone_number_id`.
    pub id: String,
    pub provider: WaProvider,
    pub server: ServerName,
    pub kode_terminal: i64,
    /// Messages per second this account may send; `None`: `WA_SEND_RATE`.
    pub send_rate: Option<u32>,
}

/// The servers and accounts of a deployment, checked: every account names a server, no account
/// twice, no terminal of a server claimed by two accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    servers: Vec<OtomaxServer>,
    accounts: Vec<Account>,
}

impl RoutingTable {
    /// The table of `settings`: its `[[otomax]]` and `[[account]]` tables, or the seed's
    /// settings as the one server `default` when there are no `[[otomax]]` tables.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        // Naming a table's line reads the file again: only when there is a mistake to report.
        let file = settings.config_file.as_deref();
        let servers = if settings.otomax.is_empty() {
            vec![OtomaxServer {
                name: ServerName(DEFAULT_SERVER.into()),
                otomax: OtomaxConfig::from_settings(settings)?,
                callback_secret: settings.otomax_callback_secret.clone(),
                concurrency: settings.forwarder_concurrency,
            }]
        } else {
            let mut servers: Vec<OtomaxServer> = Vec::new();
            for (i, table) in settings.otomax.iter().enumerate() {
                let mistake = |m| table_error(file, "otomax", i, m);
                let server = server_of(settings, table).map_err(mistake)?;
                if servers.iter().any(|s| s.name == server.name) {
                    return Err(mistake(format!(
                        "a second server named {:?}",
                        server.name.as_str()
                    )));
                }
                servers.push(server);
            }
            servers
        };
        let refs: Vec<ServerRef> = servers
            .iter()
            .map(|s| ServerRef {
                name: s.name.clone(),
                default_kode_terminal: s.otomax.default_kode_terminal,
            })
            .collect();
        let accounts = accounts_of(settings, &refs)?;
        Ok(Self { servers, accounts })
    }

    pub fn servers(&self) -> &[OtomaxServer] {
        &self.servers
    }

    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    pub fn server(&self, name: &str) -> Option<&OtomaxServer> {
        self.servers.iter().find(|s| s.name.as_str() == name)
    }

    /// Where a message received by `account` of `provider` goes: its server and terminal. An
    /// account not in the table goes to the server `default` (with that server's default
    /// terminal) when there is one; `None` otherwise.
    pub fn inbound(&self, provider: WaProvider, account: &str) -> Option<(&OtomaxServer, i64)> {
        match self
            .accounts
            .iter()
            .find(|a| a.provider == provider && a.id == account)
        {
            Some(a) => self.server(a.server.as_str()).map(|s| (s, a.kode_terminal)),
            None => self
                .server(DEFAULT_SERVER)
                .map(|s| (s, s.otomax.default_kode_terminal)),
        }
    }

    /// The account an outbox row of `server` with `kode_terminal` goes out through: the one on
    /// that terminal, else the server's first account; `None` when the server has no account
    /// (the provider's configured default account sends it).
    pub fn outbound(&self, server: &str, kode_terminal: Option<i64>) -> Option<&Account> {
        let mut of_server = self.accounts.iter().filter(|a| a.server.as_str() == server);
        let first = of_server.clone().next();
        kode_terminal
            .and_then(|k| of_server.find(|a| a.kode_terminal == k))
            .or(first)
    }

    /// The server names, for messages that list them.
    pub fn names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// The lanes of this table's servers and accounts.
    pub fn lanes(&self) -> Lanes {
        Lanes::new(
            self.servers.iter().map(|s| s.name.clone()).collect(),
            &self.accounts,
        )
    }
}

/// What the services that never call OtomaX need of the routing table: the lane each account's
/// messages travel in (its server's own subjects and consumers, spec §3a isolation), with no
/// server's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lanes {
    /// `default` first (always there: messages of unknown accounts travel in it), then every
    /// other server of the table.
    names: Vec<ServerName>,
    accounts: std::collections::HashMap<(WaProvider, String), ServerName>,
    /// The accounts with a `send_rate` of their own.
    send_rates: std::collections::HashMap<(WaProvider, String), u32>,
}

impl Default for Lanes {
    /// A deployment without tables: the one lane `default`.
    fn default() -> Self {
        Self::new(Vec::new(), &[])
    }
}

impl Lanes {
    fn new(servers: Vec<ServerName>, accounts: &[Account]) -> Self {
        let mut names = vec![ServerName(DEFAULT_SERVER.into())];
        names.extend(servers.into_iter().filter(|s| s.as_str() != DEFAULT_SERVER));
        let key = |a: &Account| (a.provider, a.id.clone());
        Self {
            names,
            accounts: accounts
                .iter()
                .map(|a| (key(a), a.server.clone()))
                .collect(),
            send_rates: accounts
                .iter()
                .filter_map(|a| Some((key(a), a.send_rate?)))
                .collect(),
        }
    }

    /// The lanes of `settings`' tables: the server names and which server each account names,
    /// checked as the services that call OtomaX check them (valid and distinct names, an
    /// account's server one of the table's, no account twice, no terminal of a server claimed
    /// twice), without needing any server's credentials.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let file = settings.config_file.as_deref();
        let mut servers: Vec<ServerRef> = Vec::new();
        for (i, table) in settings.otomax.iter().enumerate() {
            let mistake = |m| table_error(file, "otomax", i, m);
            let name = ServerName::parse(&table.name).map_err(mistake)?;
            if servers.iter().any(|s| s.name == name) {
                return Err(mistake(format!(
                    "a second server named {:?}",
                    name.as_str()
                )));
            }
            servers.push(ServerRef {
                name,
                default_kode_terminal: table
                    .default_kode_terminal
                    .unwrap_or(settings.otomax_default_kode_terminal),
            });
        }
        if servers.is_empty() {
            servers.push(ServerRef {
                name: ServerName(DEFAULT_SERVER.into()),
                default_kode_terminal: settings.otomax_default_kode_terminal,
            });
        }
        let accounts = accounts_of(settings, &servers)?;
        Ok(Self::new(
            servers.into_iter().map(|s| s.name).collect(),
            &accounts,
        ))
    }

    /// The lane of messages `account` of `provider` receives: its server's, or `default`'s for
    /// an account not in the table (the forwarder sends those to `default`, or dead-letters
    /// them `unknown_account`).
    pub fn of(&self, provider: WaProvider, account: &str) -> &str {
        self.accounts
            .get(&(provider, account.to_string()))
            .map_or(DEFAULT_SERVER, ServerName::as_str)
    }

    /// The `send_rate` of `account`'s own table, if it has one.
    pub fn send_rate(&self, provider: WaProvider, account: &str) -> Option<u32> {
        self.send_rates
            .get(&(provider, account.to_string()))
            .copied()
    }

    /// Every lane: `default`, then the table's other servers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(ServerName::as_str)
    }

    /// Every account of the table: provider, id and server, sorted.
    pub fn accounts(&self) -> Vec<(WaProvider, &str, &str)> {
        let mut all: Vec<_> = self
            .accounts
            .iter()
            .map(|((provider, id), server)| (*provider, id.as_str(), server.as_str()))
            .collect();
        all.sort_by(|a, b| (a.0 as u8, a.1).cmp(&(b.0 as u8, b.1)));
        all
    }
}

fn unknown_server(name: &str, servers: &[ServerName]) -> String {
    let known: Vec<&str> = servers.iter().map(ServerName::as_str).collect();
    format!(
        "otomax {name:?} is not a server of this table (servers: {})",
        known.join(", ")
    )
}

fn server_of(settings: &Settings, table: &ServerTable) -> Result<OtomaxServer, String> {
    let name = ServerName::parse(&table.name)?;
    // The table's own values over the shared ones (`OTOMAX_EXP_SECONDS`, retries, …), checked
    // by the same rules as the seed's settings.
    let own = Settings {
        otomax_api_url: table.api_url.clone(),
        otomax_app_id: table.app_id.clone(),
        otomax_app_key: table.app_key.clone(),
        otomax_dev_key: table.dev_key.clone(),
        otomax_default_reseller: table.default_reseller.clone().unwrap_or_default(),
        otomax_default_kode_terminal: table
            .default_kode_terminal
            .unwrap_or(settings.otomax_default_kode_terminal),
        otomax_rate_limit: table.rate_limit.unwrap_or(settings.otomax_rate_limit),
        otomax: Vec::new(),
        account: Vec::new(),
        ..settings.clone()
    };
    let otomax = OtomaxConfig::from_settings(&own).map_err(|e| {
        // `OTOMAX_APP_KEY` → `app_key`: the table's own key names.
        let key = e
            .setting
            .strip_prefix("OTOMAX_")
            .unwrap_or(&e.setting)
            .replace("API_URL", "api_url")
            .to_ascii_lowercase();
        format!("{key}: {}", e.message)
    })?;
    if table.callback_secret.expose().trim().is_empty() {
        return Err(
            "callback_secret: missing; the server presents it on /otomax/callback/<name> (set a long random value)"
                .into(),
        );
    }
    let concurrency = table.concurrency.unwrap_or(settings.forwarder_concurrency);
    if concurrency == 0 {
        return Err("concurrency: must be at least 1".into());
    }
    Ok(OtomaxServer {
        name,
        otomax,
        callback_secret: table.callback_secret.clone(),
        concurrency,
    })
}

/// A server as its accounts need it: its name and the terminal of accounts without their own.
struct ServerRef {
    name: ServerName,
    default_kode_terminal: i64,
}

/// The `[[account]]` tables of `settings`, checked against `servers`: each names one of them, no
/// account twice, no terminal of a server claimed by two accounts.
fn accounts_of(settings: &Settings, servers: &[ServerRef]) -> Result<Vec<Account>, ConfigError> {
    let file = settings.config_file.as_deref();
    let mut accounts: Vec<Account> = Vec::new();
    for (i, table) in settings.account.iter().enumerate() {
        let mistake = |m| table_error(file, "account", i, m);
        let account = account_of(table, servers).map_err(mistake)?;
        if accounts
            .iter()
            .any(|a| a.id == account.id && a.provider == account.provider)
        {
            return Err(mistake(format!("account {:?} is listed twice", account.id)));
        }
        if let Some(other) = accounts
            .iter()
            .find(|a| a.server == account.server && a.kode_terminal == account.kode_terminal)
        {
            return Err(mistake(format!(
                "terminal {} of server {:?} is already account {:?}'s: outbox rows of a terminal must go out through one number",
                account.kode_terminal,
                account.server.as_str(),
                other.id
            )));
        }
        accounts.push(account);
    }
    Ok(accounts)
}

fn account_of(table: &AccountTable, servers: &[ServerRef]) -> Result<Account, String> {
    if table.send_rate == Some(0) {
        return Err(
            "send_rate: must be a positive number of messages per second (leave it out to use the deployment's rate)"
                .into(),
        );
    }
    if table.id.trim().is_empty() {
        return Err("id: missing; the GOWA device id (JID) or the Meta phone_number_id".into());
    }
    let Some(server) = servers.iter().find(|s| s.name.as_str() == table.otomax) else {
        let names: Vec<ServerName> = servers.iter().map(|s| s.name.clone()).collect();
        return Err(unknown_server(&table.otomax, &names));
    };
    Ok(Account {
        id: table.id.trim().to_string(),
        provider: table.provider,
        server: server.name.clone(),
        kode_terminal: table.kode_terminal.unwrap_or(server.default_kode_terminal),
        send_rate: table.send_rate,
    })
}

/// A mistake in the `index`-th `[[kind]]` table, named with its line in the config file:
/// `[[account]] #2 (line 14)`.
fn table_error(file: Option<&Path>, kind: &str, index: usize, message: String) -> ConfigError {
    let header = format!("[[{kind}]]");
    let line = file
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| l.trim().starts_with(&header))
                .nth(index)
                .map(|(n, _)| n + 1)
        });
    let at = match line {
        Some(line) => format!("{header} #{} (line {line})", index + 1),
        None => format!("{header} #{}", index + 1),
    };
    ConfigError::new(at, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::with_env;
    use crate::{load_unvalidated, SettingsArgs};

    const JAYA: &str = r#"
[[otomax]]
name = "jaya"
api_url = "https://otomax.jaya.example/"
app_id = "JayaApp"
app_key = "jaya-key"
dev_key = "jaya-dev"
callback_secret = "jaya-callback"
default_kode_terminal = 2

[[otomax]]
name = "makmur"
api_url = "http://10.0.0.7:5000/"
app_id = "MakmurApp"
app_key = "makmur-key"
dev_key = "makmur-dev"
callback_secret = "makmur-callback"
rate_limit = 5
"#;

    const ACCOUNTS: &str = r#"
[[account]]
id = "628111000001@s.whatsapp.net"
provider = "gowa"
otomax = "jaya"
kode_terminal = 3

[[account]]
id = "628111000002@s.whatsapp.net"
provider = "gowa"
otomax = "jaya"

[[account]]
id = "106540352242922"
provider = "meta"
otomax = "makmur"
send_rate = 2
"#;

    /// The routing table of a config file with `text` (and the seed's credentials in the
    /// environment, which a table must not need).
    fn table(text: &str) -> Result<RoutingTable, ConfigError> {
        with_file(text, RoutingTable::from_settings)
    }

    /// The lanes (what ingress reads) of a config file with `text`.
    fn lanes(text: &str) -> Result<Lanes, ConfigError> {
        with_file(text, Lanes::from_settings)
    }

    /// `read` of the settings of a config file with `text`, the file still there (a mistake's
    /// line is read from it).
    fn with_file<T>(
        text: &str,
        read: impl FnOnce(&Settings) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wacenter.toml");
        std::fs::write(&file, text).unwrap();
        let settings = with_env(&[], || {
            load_unvalidated(&SettingsArgs::default(), Some(&file))
        })?;
        read(&settings)
    }

    #[test]
    fn servers_and_accounts_route_both_ways() {
        let t = table(&format!("{JAYA}{ACCOUNTS}")).unwrap();
        assert_eq!(t.names(), ["jaya", "makmur"]);
        let jaya = t.server("jaya").unwrap();
        assert_eq!(jaya.otomax.api_url.as_str(), "https://otomax.jaya.example/");
        assert_eq!(jaya.otomax.app_key.expose(), "jaya-key");
        assert_eq!(jaya.callback_secret.expose(), "jaya-callback");
        assert_eq!(t.server("makmur").unwrap().otomax.rate_limit, 5);

        // Inbound: the receiving account decides server and terminal.
        let (s, k) = t
            .inbound(WaProvider::Gowa, "628111000001@s.whatsapp.net")
            .unwrap();
        assert_eq!((s.name.as_str(), k), ("jaya", 3));
        let (s, k) = t
            .inbound(WaProvider::Gowa, "628111000002@s.whatsapp.net")
            .unwrap();
        assert_eq!(
            (s.name.as_str(), k),
            ("jaya", 2),
            "the server's default terminal"
        );
        let (s, _) = t.inbound(WaProvider::Meta, "106540352242922").unwrap();
        assert_eq!(s.name.as_str(), "makmur");
        assert!(
            t.inbound(WaProvider::Gowa, "628999@s.whatsapp.net")
                .is_none(),
            "no server named default: an unknown account has nowhere to go"
        );
        assert!(t
            .inbound(WaProvider::Meta, "628111000001@s.whatsapp.net")
            .is_none());

        // Outbound: the row's terminal picks the account, else the server's first.
        assert_eq!(
            t.outbound("jaya", Some(2)).unwrap().id,
            "628111000002@s.whatsapp.net"
        );
        assert_eq!(
            t.outbound("jaya", Some(3)).unwrap().id,
            "628111000001@s.whatsapp.net"
        );
        assert_eq!(
            t.outbound("jaya", Some(9)).unwrap().id,
            "628111000001@s.whatsapp.net"
        );
        assert_eq!(
            t.outbound("jaya", None).unwrap().id,
            "628111000001@s.whatsapp.net"
        );
        assert_eq!(t.outbound("makmur", Some(1)).unwrap().send_rate, Some(2));
    }

    #[test]
    fn without_tables_the_seed_settings_are_the_server_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wacenter.toml");
        std::fs::write(&file, "otomax_default_kode_terminal = 4\n").unwrap();
        let settings = with_env(
            &[
                ("OTOMAX_APP_ID", "SeedApp"),
                ("OTOMAX_APP_KEY", "seed-key"),
                ("OTOMAX_DEV_KEY", "seed-dev"),
                ("OTOMAX_CALLBACK_SECRET", "seed-callback"),
            ],
            || load_unvalidated(&SettingsArgs::default(), Some(&file)),
        )
        .unwrap();
        let t = RoutingTable::from_settings(&settings).unwrap();
        assert_eq!(t.names(), [DEFAULT_SERVER]);
        let (s, k) = t
            .inbound(WaProvider::Gowa, "anything@s.whatsapp.net")
            .unwrap();
        assert_eq!((s.name.as_str(), k), (DEFAULT_SERVER, 4));
        assert_eq!(s.otomax.app_id, "SeedApp");
        assert_eq!(s.callback_secret.expose(), "seed-callback");
        assert!(
            t.outbound(DEFAULT_SERVER, Some(4)).is_none(),
            "no accounts: the provider's default sends"
        );
    }

    #[test]
    fn mistakes_name_the_table_its_line_and_the_problem() {
        let cases: [(String, &str, &str); 7] = [
            (
                format!("{JAYA}{ACCOUNTS}[[account]]\nid = \"x@s.whatsapp.net\"\nprovider = \"gowa\"\notomax = \"jayaa\"\n"),
                "[[account]] #4 (line 36)",
                "otomax \"jayaa\" is not a server of this table (servers: jaya, makmur)",
            ),
            (
                format!("{JAYA}{ACCOUNTS}[[account]]\nid = \"106540352242922\"\nprovider = \"meta\"\notomax = \"jaya\"\nkode_terminal = 7\n"),
                "[[account]] #4",
                "account \"106540352242922\" is listed twice",
            ),
            (
                format!("{JAYA}{ACCOUNTS}[[account]]\nid = \"628111000003@s.whatsapp.net\"\nprovider = \"gowa\"\notomax = \"jaya\"\nkode_terminal = 3\n"),
                "[[account]] #4",
                "terminal 3 of server \"jaya\" is already account \"628111000001@s.whatsapp.net\"'s",
            ),
            (
                JAYA.replace("callback_secret = \"makmur-callback\"\n", ""),
                "[[otomax]] #2 (line 11)",
                "callback_secret: missing",
            ),
            (
                JAYA.replace("dev_key = \"jaya-dev\"\n", ""),
                "[[otomax]] #1 (line 2)",
                "dev_key: missing",
            ),
            (
                JAYA.replace("name = \"makmur\"", "name = \"jaya\""),
                "[[otomax]] #2",
                "a second server named \"jaya\"",
            ),
            (
                JAYA.replace("name = \"makmur\"", "name = \"Makmur Jaya\""),
                "[[otomax]] #2",
                "name \"Makmur Jaya\" must be 1 to 32 of a-z, 0-9 and -",
            ),
        ];
        for (text, at, problem) in cases {
            let e = table(&text).expect_err(problem);
            assert!(e.setting.starts_with(at), "{e} (expected it at {at})");
            assert!(e.message.contains(problem), "{e} (expected: {problem})");
            for secret in ["jaya-key", "jaya-dev", "jaya-callback", "makmur-key"] {
                assert!(!e.to_string().contains(secret), "{e} shows a secret");
            }
            // Ingress and the reply service, which need no credentials, stop on the same
            // mistakes of names and accounts with the same line.
            if !problem.ends_with(": missing") {
                let e = lanes(&text).expect_err(problem);
                assert!(
                    e.setting.starts_with(at),
                    "lanes: {e} (expected it at {at})"
                );
                assert!(
                    e.message.contains(problem),
                    "lanes: {e} (expected: {problem})"
                );
            }
        }
        let lanes = lanes(&format!("{JAYA}{ACCOUNTS}")).unwrap();
        assert_eq!(
            lanes.names().collect::<Vec<_>>(),
            ["default", "jaya", "makmur"]
        );
        assert_eq!(lanes.of(WaProvider::Meta, "106540352242922"), "makmur");
        assert_eq!(lanes.of(WaProvider::Gowa, "106540352242922"), "default");
    }

    /// With OtomaX off the table's secrets are not served: `/otomax/callback` still needs its own.
    #[test]
    fn with_otomax_off_the_callback_still_needs_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wacenter.toml");
        std::fs::write(&file, format!("otomax_enabled = false\n{JAYA}")).unwrap();
        let settings = with_env(&[], || {
            load_unvalidated(&SettingsArgs::default(), Some(&file))
        })
        .unwrap();
        let e = crate::CallbackConfig::from_settings(&settings).unwrap_err();
        assert_eq!(e.setting, "OTOMAX_CALLBACK_SECRET", "{e}");
        let with_tables = table(JAYA).map(drop);
        assert!(with_tables.is_ok(), "{with_tables:?}");
    }

    #[test]
    fn unknown_keys_and_bad_urls_stop_start_up() {
        let e = table(&JAYA.replace(
            "api_url = \"http://10.0.0.7:5000/\"",
            "api_ulr = \"http://10.0.0.7:5000/\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("api_ulr"), "{e}");
        assert!(e.setting.contains("otomax"), "{e}");
        let e = table(&JAYA.replace("http://10.0.0.7:5000/", "not a url")).unwrap_err();
        assert!(e.setting.starts_with("[[otomax]] #2"), "{e}");
        assert!(e.message.starts_with("api_url:"), "{e}");
        let e = table(&format!(
            "{JAYA}[[account]]\nid = \"x\"\nprovider = \"telegram\"\notomax = \"jaya\"\n"
        ))
        .unwrap_err();
        assert!(e.setting.contains("account"), "{e}");
    }

    /// A send rate is messages per second: one that is not a positive number names the account.
    #[test]
    fn a_send_rate_that_is_not_a_positive_number_stops_start_up() {
        for bad in ["0", "-1", "\"fast\"", "2.5"] {
            let text = format!(
                "{JAYA}[[account]]\nid = \"628111000009@s.whatsapp.net\"\nprovider = \"gowa\"\notomax = \"jaya\"\nsend_rate = {bad}\n"
            );
            let e = table(&text).expect_err(bad);
            assert!(e.setting.contains("account"), "send_rate = {bad}: {e}");
            assert!(
                e.to_string().contains("send_rate"),
                "send_rate = {bad}: {e}"
            );
            let e = lanes(&text).expect_err(bad);
            assert!(
                e.to_string().contains("send_rate"),
                "lanes, send_rate = {bad}: {e}"
            );
        }
    }
}
