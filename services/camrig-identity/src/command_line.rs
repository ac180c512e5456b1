//! The command-line convention of the provisioning tools (`camrig-identity` and
//! `camrig-provision`, which builds on this crate): clap's message for a bad command line,
//! then exit code 64 (EX_USAGE); `--help` and `--version` print and exit 0.

use std::process::ExitCode;

/// Parses this process's arguments as `C`, or prints clap's message and gives the exit code.
pub fn parse<C: clap::Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(64)
        } else {
            ExitCode::SUCCESS
        }
    })
}
