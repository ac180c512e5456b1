//! Network namespaces: creating and deleting them, running commands and threads inside them,
//! and removing what a killed earlier run left behind.
//!
//! Every namespace and scratch directory of one rig is named `camrig-rig-<pid>-<seq>-...`, so
//! rigs of parallel tests never collide and a later run can tell an abandoned rig (its pid is
//! gone) from a live one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Result, RigError};

/// Prefix of every namespace and scratch directory the harness creates.
pub const PREFIX: &str = "camrig-rig-";

const NETNS_DIR: &str = "/run/netns";

/// A fresh `camrig-rig-<pid>-<seq>` stem, unique within this machine while this process lives.
pub fn unique_stem() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command to completion; a non-zero exit becomes [`RigError::Command`] with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| RigError::Spawn {
            command: program.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(RigError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails unless the harness runs as root.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(RigError::NotRoot)
    }
}

/// One named network namespace (`ip netns add`), deleted on drop together with every process
/// still inside it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        // Loopback is down in a new namespace; services bind and probe it.
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec` execs it, so the
    /// child's pid is the program's own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(&self.name, program)
    }

    /// Moves the calling thread into this namespace. Only this thread (and threads it spawns
    /// afterwards) is affected; sockets it opens belong to the namespace.
    pub fn enter_current_thread(&self) -> Result<()> {
        enter(&self.name)
    }

    /// Runs `f` on a new thread inside the namespace and waits for its result.
    pub fn run_inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R> {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&self.name)?;
                Ok(f())
            })
            .join()
            .expect("thread inside a namespace panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

pub(crate) fn enter(name: &str) -> Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    let file = File::open(&path).map_err(RigError::io(format!("opening {}", path.display())))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
        RigError::Setns {
            name: name.to_owned(),
            source,
        }
    })
}

/// A `Command` running `program` inside the namespace called `name`.
pub fn command_in(name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", name]).arg(program);
    c
}

/// Kills whatever still runs in the namespace, then deletes it. Best effort: teardown must go
/// on even when one step fails.
fn delete_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = run("ip", &["netns", "del", name]) {
        eprintln!("camrig-rig: could not delete namespace {name}: {e}");
    }
}

/// The pid encoded in a harness name (`camrig-rig-<pid>-...`), if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Deletes namespaces and scratch directories left by harness processes that no longer run
/// (a test binary killed mid-rig cannot run its drop guards).
pub fn remove_leftovers(scratch_root: &Path) {
    let dead = |name: &str| {
        owner_pid(name).is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
    };
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                delete_namespace(&name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(scratch_root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Where rigs keep their scratch directories.
pub fn scratch_root() -> PathBuf {
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_only_harness_names() {
        assert_eq!(owner_pid("camrig-rig-1234-0-sw"), Some(1234));
        assert_eq!(owner_pid("camrig-rig-77-3"), Some(77));
        assert_eq!(owner_pid("camrig-rig-x-3"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
    }

    #[test]
    fn stems_are_unique_and_carry_our_pid() {
        let a = unique_stem();
        let b = unique_stem();
        assert_ne!(a, b);
        assert_eq!(owner_pid(&a), Some(std::process::id()));
    }
}
