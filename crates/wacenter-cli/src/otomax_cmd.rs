//! `wacenter otomax sign|call`.

use std::process::ExitCode;

use clap::Subcommand;
use wacenter_config::{Role, RoutingTable, Settings};
use wacenter_otomax::{ClientConfig, OtomaxClient, OtomaxError};

use crate::{Common, EXIT_USAGE};

#[derive(Subcommand)]
pub enum OtomaxCommand {
    /// Print the token and the full request URL for exactly this body (to verify an HMAC
    /// implementation against wacenter's).
    Sign {
        /// The exact JSON body; whitespace matters, it is signed byte for byte.
        #[arg(long, value_name = "JSON")]
        body: String,
        /// Endpoint for the URL.
        #[arg(long, default_value = "InsertInbox", value_name = "NAME")]
        endpoint: String,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        common: Common,
    },
    /// Sign and send one call (Test, InsertInbox, GetRs, GetSaldoRs, GetTrx, SetOutboxCallback,
    /// GetOutboxCallback, UpdateStatusOutbox, TesPinRs, GetFormatRequest, GetVersiOtomaX,
    /// TambahSaldo, QueryProduk, QueryOperator, or any other endpoint name). Prints OtomaX's JSON;
    /// exits 0 on ok:true, 1 with a one-line reason otherwise. Transient failures are retried
    /// (1 s, 2 s, 4 s), never past the body's `_exp`.
    Call {
        /// Endpoint name, e.g. GetSaldoRs.
        endpoint: String,
        /// The JSON body, sent byte for byte.
        #[arg(long, default_value = "{}", value_name = "JSON")]
        body: String,
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        common: Common,
    },
}

/// Which OtomaX server of the routing table to talk to.
#[derive(clap::Args)]
pub struct ServerArg {
    /// The server's name in the routing table (`[[otomax]]` in the config file); without
    /// tables the only server is `default`, made of the OTOMAX_* settings.
    #[arg(long = "otomax", default_value = wacenter_config::DEFAULT_SERVER, value_name = "NAME")]
    name: String,
}

/// The settings (for logging) and the OtomaX client they configure, or the exit code after a
/// clear line naming the bad setting.
fn load(common: &Common, server: &ServerArg) -> Result<(Settings, OtomaxClient), ExitCode> {
    let usage = |e: wacenter_config::ConfigError| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    };
    let settings =
        wacenter_config::load(&common.settings, common.config.as_deref(), Role::OtomaxTool)
            .map_err(usage)?;
    let table = RoutingTable::from_settings(&settings).map_err(usage)?;
    let Some(found) = table.server(&server.name) else {
        eprintln!(
            "error: --otomax {:?}: no such server in the routing table (servers: {})",
            server.name,
            table.names().join(", ")
        );
        return Err(ExitCode::from(EXIT_USAGE));
    };
    let client = OtomaxClient::new(ClientConfig::for_server(&server.name, &found.otomax));
    Ok((settings, client))
}

fn check_json(body: &str) -> Result<(), ExitCode> {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|_| ())
        .map_err(|e| {
            eprintln!("error: --body is not JSON ({e}); nothing was sent");
            ExitCode::from(EXIT_USAGE)
        })
}

pub async fn run(command: OtomaxCommand) -> anyhow::Result<ExitCode> {
    match command {
        OtomaxCommand::Sign {
            body,
            endpoint,
            server,
            common,
        } => {
            if let Err(code) = check_json(&body) {
                return Ok(code);
            }
            let client = match load(&common, &server) {
                Ok((_, client)) => client,
                Err(code) => return Ok(code),
            };
            match client.sign(&endpoint, body.into_bytes()) {
                Ok(req) => {
                    println!("token: {}", req.token);
                    println!("url:   {}", req.url);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_USAGE))
                }
            }
        }
        OtomaxCommand::Call {
            endpoint,
            body,
            server,
            common,
        } => {
            if let Err(code) = check_json(&body) {
                return Ok(code);
            }
            let (settings, client) = match load(&common, &server) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            wacenter_telemetry::init_logging(&settings);
            // A body with `_exp` is never sent after it.
            let deadline = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("_exp").and_then(|e| e.as_str()).map(str::to_string))
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            match client
                .call_raw(&endpoint, body.into_bytes(), deadline)
                .await
            {
                Ok(resp) => {
                    println!("{}", serde_json::to_string_pretty(&resp.raw)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {endpoint}: {}", one_line(&e));
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn one_line(e: &OtomaxError) -> String {
    e.to_string().replace('\n', " ")
}
