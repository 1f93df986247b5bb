//! `wacenter sim otomax|whatsapp`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use wacenter_config::{Role, Settings};
use wacenter_sim::otomax::{load_resellers_file, Faults, OtomaxSim, OtomaxSimConfig, SimReseller};
use wacenter_sim::whatsapp::{WhatsappSim, WhatsappSimConfig};

use crate::{Common, EXIT_USAGE};

#[derive(Subcommand)]
pub enum SimCommand {
    /// The OtomaX Open API with resellers, commands, outbox callbacks and fault knobs.
    ///
    /// Credentials are the usual OTOMAX_APP_ID / OTOMAX_APP_KEY / OTOMAX_DEV_KEY settings. The
    /// control API lives under /_sim/ (inbox, outbox, stats, reset, faults).
    Otomax {
        /// Port to listen on.
        #[arg(long, default_value_t = 5000)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// A known reseller, PHONE=CODE (repeatable), e.g. 628123456789=R001.
        #[arg(long = "reseller", value_name = "PHONE=CODE")]
        resellers: Vec<String>,
        /// TOML file with [[reseller]] tables (phone, code, name?, saldo?, pin?).
        #[arg(long, value_name = "PATH")]
        resellers_file: Option<PathBuf>,
        /// Delay before a purchase's result is pushed to the outbox callback.
        #[arg(long, default_value_t = 1500)]
        result_delay_ms: u64,
        /// Latency added to every call.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Fraction of calls answered with HTTP 500 (0..1).
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        #[command(flatten)]
        common: Common,
    },
    /// A GOWA-compatible WhatsApp gateway: POST /send/message records what arrives; POST
    /// /_sim/incoming {from, text, group?, from_me?, id?, timestamp?} emits a signed GOWA v8 webhook
    /// (key: WA_WEBHOOK_SECRET) to --webhook-url; GET /_sim/outbox lists what was sent.
    Whatsapp {
        /// Port to listen on.
        #[arg(long, default_value_t = 3100)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Where to post webhooks (wacenter-ingress's /webhook/gowa).
        #[arg(long, default_value = "http://127.0.0.1:3001/webhook/gowa")]
        webhook_url: String,
        /// A linked number's device JID (repeatable: GOWA v8+ serves several, and then every send
        /// must name its device in X-Device-Id). The first receives /_sim/incoming messages that
        /// name no device.
        #[arg(
            long = "device",
            visible_alias = "device-id",
            value_name = "JID",
            default_value = "628987654321@s.whatsapp.net",
            action = clap::ArgAction::Append
        )]
        devices: Vec<String>,
        /// Echo every sent message back as a from_me webhook, like a real gateway.
        #[arg(long)]
        echo_sent: bool,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: SimCommand) -> anyhow::Result<ExitCode> {
    match command {
        SimCommand::Otomax {
            port,
            bind,
            resellers,
            resellers_file,
            result_delay_ms,
            latency_ms,
            error_rate,
            common,
        } => {
            let settings: Settings = match wacenter_config::load(
                &common.settings,
                common.config.as_deref(),
                Role::OtomaxTool,
            ) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            if !(0.0..=1.0).contains(&error_rate) {
                eprintln!("error: --error-rate must be between 0 and 1");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            let mut known = Vec::new();
            if let Some(path) = resellers_file {
                match load_resellers_file(&path) {
                    Ok(list) => known.extend(list),
                    Err(e) => {
                        eprintln!("error: --resellers-file {e}");
                        return Ok(ExitCode::from(EXIT_USAGE));
                    }
                }
            }
            for arg in &resellers {
                match SimReseller::parse_arg(arg) {
                    Ok(r) => known.push(r),
                    Err(e) => {
                        eprintln!("error: --reseller {e}");
                        return Ok(ExitCode::from(EXIT_USAGE));
                    }
                }
            }
            wacenter_telemetry::init_logging(&settings);
            let sim = OtomaxSim::new(OtomaxSimConfig {
                app_id: settings.otomax_app_id.clone(),
                app_key: settings.otomax_app_key.expose().to_string(),
                dev_key: settings.otomax_dev_key.expose().to_string(),
                resellers: known.clone(),
                result_delay: Duration::from_millis(result_delay_ms),
                faults: Faults {
                    latency_ms,
                    error_rate,
                    ..Faults::default()
                },
            });
            let listener = match tokio::net::TcpListener::bind((bind.as_str(), port)).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {bind}:{port}: {e} (is another process using the port? try --port)");
                    return Ok(ExitCode::from(1));
                }
            };
            tracing::info!(addr = %listener.local_addr()?, resellers = known.len(), "OtomaX simulator listening");
            sim.serve(
                listener,
                wacenter_service::wait_for(wacenter_service::shutdown_on_signal()),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        SimCommand::Whatsapp {
            port,
            bind,
            webhook_url,
            devices,
            echo_sent,
            common,
        } => {
            let settings = match wacenter_config::load(
                &common.settings,
                common.config.as_deref(),
                Role::NatsTool,
            ) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            if settings.wa_webhook_secret.is_empty() {
                eprintln!(
                    "error: WA_WEBHOOK_SECRET is not set: the simulator signs its webhooks with it"
                );
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            wacenter_telemetry::init_logging(&settings);
            let mut devices = devices.into_iter();
            let sim = WhatsappSim::new(WhatsappSimConfig {
                webhook_url: Some(webhook_url.clone()),
                webhook_secret: settings.wa_webhook_secret.expose().to_string(),
                device_id: devices.next().unwrap_or_default(),
                other_devices: devices.collect(),
                basic_auth: settings
                    .gowa_basic_auth()?
                    .map(|c| (c.user, c.password.expose().to_string())),
                echo_sent,
            });
            let listener = match tokio::net::TcpListener::bind((bind.as_str(), port)).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {bind}:{port}: {e} (is another process using the port? try --port)");
                    return Ok(ExitCode::from(1));
                }
            };
            tracing::info!(addr = %listener.local_addr()?, webhook_url, "WhatsApp (GOWA) simulator listening");
            sim.serve(
                listener,
                wacenter_service::wait_for(wacenter_service::shutdown_on_signal()),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
