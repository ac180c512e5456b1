//! `rig-bench`: builds virtual rigs and prints one JSON object of measurements.

fn main() -> anyhow::Result<()> {
    Ok(())
}
