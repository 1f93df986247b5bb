//! `wacenter dlq list|replay`.

use std::process::ExitCode;

use clap::Subcommand;
use wacenter_bus::deadletters::{self, Selector};
use wacenter_bus::{Bus, Topology};
use wacenter_config::Role;

use crate::{Common, EXIT_USAGE};

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first: sequence, time, reason, id, error.
    List {
        /// Print JSON lines (the full letters) instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many letters.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Publish dead letters again to their original subject (clearing their idempotency record)
    /// and remove them from the dead-letter stream.
    Replay {
        /// A letter's id or stream sequence (see `wacenter dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Replay every dead letter.
        #[arg(long)]
        all: bool,
        /// Give replayed inbound messages a new timestamp, hence a new _exp (to re-drive messages
        /// that expired, knowingly).
        #[arg(long)]
        fresh: bool,
        /// Replay `uncertain` letters too. OtomaX (or the recipient) may already have them: check
        /// there first, or the same purchase may be made twice.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// Connects to the NATS of `common`'s settings, failing fast when it is not there.
pub(crate) async fn connect(common: &Common) -> Result<(Bus, wacenter_config::Settings), ExitCode> {
    let settings =
        wacenter_config::load(&common.settings, common.config.as_deref(), Role::NatsTool).map_err(
            |e| {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_USAGE)
            },
        )?;
    let topology = Topology {
        trail_retention: std::time::Duration::from_secs(
            u64::from(settings.trail_retention_days) * 24 * 3600,
        ),
        ..Topology::default()
    };
    let bus = Bus::connect(&settings.nats_url, "cli", topology)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(1)
        })?;
    // Fail fast instead of waiting forever for a NATS that is not there.
    for _ in 0..50 {
        if bus.is_connected() {
            return Ok((bus, settings));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "error: cannot reach NATS at {} (set NATS_URL)",
        settings.nats_url
    );
    Err(ExitCode::from(1))
}

pub async fn run(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List {
            json,
            limit,
            common,
        } => {
            let (bus, _) = match connect(&common).await {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            let letters = deadletters::list(&bus, limit).await?;
            if json {
                for l in &letters {
                    println!(
                        "{}",
                        serde_json::json!({"sequence": l.sequence, "letter": l.letter})
                    );
                }
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>6}  {:<20}  {:<17}  {:<50}  error",
                    "seq", "failed_at", "reason", "id"
                );
                for l in &letters {
                    println!(
                        "{:>6}  {:<20}  {:<17}  {:<50}  {}",
                        l.sequence,
                        l.letter.failed_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        l.letter.reason.as_str(),
                        l.letter.id,
                        l.letter.error
                    );
                }
            }
            bus.drain().await;
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            id,
            all,
            fresh,
            force,
            common,
        } => {
            let (bus, settings) = match connect(&common).await {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            let selector = if all {
                Selector::All
            } else {
                Selector::One(id.unwrap_or_default())
            };
            let options = deadletters::ReplayOptions { fresh, force };
            let country_code = settings.wa_default_country_code.clone();
            let lanes = match wacenter_config::Lanes::from_settings(&settings) {
                Ok(lanes) => lanes,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            let reparse = move |provider, body: &[u8]| {
                wacenter_ingress::messages_of(provider, body, &country_code, &lanes)
            };
            let done = deadletters::replay(&bus, &selector, options, Some(&reparse)).await?;
            bus.drain().await;
            if done.is_empty() {
                eprintln!("error: no dead letter matched (see wacenter dlq list)");
                return Ok(ExitCode::from(1));
            }
            let mut all_replayed = true;
            for r in &done {
                if r.outcome == deadletters::ReplayOutcome::Replayed {
                    println!("replayed {} (seq {}) to {}", r.id, r.sequence, r.subject);
                } else {
                    all_replayed = false;
                    eprintln!(
                        "not replayed {} (seq {}): {}",
                        r.id,
                        r.sequence,
                        r.outcome.explain()
                    );
                }
            }
            Ok(if all_replayed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
