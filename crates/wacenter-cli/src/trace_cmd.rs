//! `wacenter trace <query>`: one message's timeline from the trail.

use std::process::ExitCode;

use clap::Args;
use wacenter_bus::trail::{self, Lookup};

use crate::Common;

#[derive(Args)]
pub struct TraceArgs {
    /// A WhatsApp message id, a phone number (its messages of the last --hours), a kode_inbox or
    /// an outbox kode.
    query: String,
    /// How far back a phone number's messages are looked for, in hours.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    hours: u64,
    /// At most this many messages (the newest).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print the timelines as JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn run(args: TraceArgs) -> anyhow::Result<ExitCode> {
    let (bus, settings) = match crate::dlq_cmd::connect(&args.common).await {
        Ok(connected) => connected,
        Err(code) => return Ok(code),
    };
    let lookup = Lookup {
        phone_window: std::time::Duration::from_secs(args.hours.max(1) * 3600),
        limit: args.limit,
        ..Lookup::default()
    };
    let found = trail::find(&bus, &args.query, &settings.wa_default_country_code, lookup).await?;
    if found.is_empty() {
        eprintln!(
            "not found: no message on the trail matches {:?} (a WhatsApp message id, a phone number of the last {} h, a kode_inbox or an outbox kode; the trail keeps TRAIL_RETENTION_DAYS = {} days)",
            args.query, args.hours, settings.trail_retention_days
        );
        return Ok(ExitCode::from(1));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    for timeline in &found {
        println!(
            "{}  from {}  (first seen {})",
            timeline.id,
            if timeline.phone.is_empty() {
                "?"
            } else {
                &timeline.phone
            },
            timeline.started.format("%Y-%m-%d %H:%M:%S UTC")
        );
        for step in &timeline.steps {
            println!(
                "  {}  {:<16} {}",
                step.at.format("%H:%M:%S%.3f"),
                step.step.as_str(),
                trail::describe(step)
            );
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
