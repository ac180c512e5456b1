//! `camrig-provision`: the provisioning commands on their own (the `camrig` CLI offers the
//! same as `camrig provision …`).
//!
//! Exit codes: 0 done; 1 failed; 2 the site file was refused (nothing written); 3 the
//! target was refused as unsafe or in use; 4 a flashed card did not read back what was
//! written; 64 bad command line.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "camrig-provision",
    version,
    about = "One site file to one flashable card per Pi"
)]
struct Cli {
    #[command(subcommand)]
    command: camrig_provision::Command,
}

fn main() -> ExitCode {
    let cli = match camrig_identity::command_line::parse::<Cli>() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match camrig_provision::run_provision(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camrig-provision: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
