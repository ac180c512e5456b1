//! Running an external tool (mtools, sfdisk, ssh-keygen) for its output: the one place that
//! tells a tool that could not be started from one that ran and failed (with its command
//! line and stderr), for each caller to say in its own error.

use std::process::Command;

/// Why a tool gave no output.
#[derive(Debug)]
pub(crate) enum ToolFailure {
    /// The program could not be started (not installed, not executable).
    NotStarted(std::io::Error),
    /// It ran and exited unsuccessfully.
    Failed { command: String, stderr: String },
}

/// Runs `cmd` to its end and returns its stdout.
pub(crate) fn stdout_of(cmd: &mut Command) -> Result<String, ToolFailure> {
    let out = cmd.output().map_err(ToolFailure::NotStarted)?;
    if !out.status.success() {
        return Err(ToolFailure::Failed {
            command: format!("{cmd:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
