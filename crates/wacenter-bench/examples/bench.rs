//! `cargo run --release -p wacenter-bench --example bench -- --quick`: the bench without the
//! `wacenter` CLI (which wires the same `run` as `wacenter bench`).

use clap::Parser;

#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(flatten)]
    args: wacenter_bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(wacenter_bench::run(cli.args))
}
