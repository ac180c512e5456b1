//! `rig-bench`: builds virtual rigs of real camrig processes and prints one JSON object of
//! measurements (start spread, arm and mark latency, download ratio, phase lock) on stdout; progress goes
//! to stderr. Needs root and the workspace's binaries next to it (`ci/rig-bench` does both).

use camrig_rig::bench::Part;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Measure a virtual camrig rig and print the numbers as JSON")]
struct Args {
    /// Takes per measurement (start spread, arm latency).
    #[arg(long, default_value_t = 20)]
    takes: usize,
    /// Nodes for the start-spread and mark measurements.
    #[arg(long, default_value_t = 10)]
    spread_nodes: usize,
    /// Rig sizes for the arm-latency measurement.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    arm_nodes: Vec<usize>,
    /// Seconds recorded for the download measurement.
    #[arg(long, default_value_t = 30.0)]
    download_seconds: f64,
    /// Nodes for the phase-lock measurement.
    #[arg(long, default_value_t = 10)]
    phase_nodes: usize,
    /// Seconds recorded per phase-lock mode (with the loop, free-running).
    #[arg(long, default_value_t = 60.0)]
    phase_seconds: f64,
    /// Only these measurements (spread, arm, download, phase; comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = Part::parse)]
    only: Vec<Part>,
    /// Only the download measurement (same as `--only download`).
    #[arg(long)]
    download_only: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = camrig_rig::bench::BenchOptions {
        takes: args.takes,
        spread_nodes: args.spread_nodes,
        arm_nodes: args.arm_nodes,
        download_take_secs: args.download_seconds,
        phase_nodes: args.phase_nodes,
        phase_take_secs: args.phase_seconds,
        parts: if args.download_only {
            vec![Part::Download]
        } else if args.only.is_empty() {
            Part::ALL.to_vec()
        } else {
            args.only
        },
        ..Default::default()
    };
    let result = camrig_rig::bench::run(&options, &mut |line| eprintln!("rig-bench: {line}"))?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    Ok(())
}
