//! Processes inside host namespaces: started with `ip netns exec`, output appended to a log
//! file, stopped on drop (SIGTERM, then SIGKILL), and optionally supervised the way systemd's
//! `Restart=on-failure` would: a process that dies by a signal or with a non-zero exit is
//! started again after a short delay, one that exits 0 stays down.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Result, RigError};

/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// systemd's default `RestartSec=` is 100 ms.
pub const RESTART_DELAY: Duration = Duration::from_millis(100);

/// Starts `cmd` with stdout and stderr appended to `log`.
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(RigError::io(format!("opening log {}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(RigError::io("duplicating a log handle"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err));
    cmd.spawn().map_err(|source| RigError::Spawn {
        command: format!("{cmd:?}"),
        source,
    })
}

fn signal(child: &Child, sig: Signal) {
    let _ = kill(Pid::from_raw(child.id() as i32), sig);
}

/// SIGTERM, wait up to the grace period, then SIGKILL. Returns how it ended.
fn stop_child(child: &mut Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    signal(child, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "camrig-rig: pid {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
        child.id()
    );
    let _ = child.kill();
    child.wait().ok()
}

/// Whether systemd's `Restart=on-failure` restarts after this exit: any non-zero exit code,
/// or death by a signal other than the clean-exit ones (HUP, INT, TERM, PIPE).
pub fn restart_on_failure(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code != 0,
        (None, Some(sig)) => ![1, 2, 13, 15].contains(&sig),
        (None, None) => true,
    }
}

/// A process that is stopped when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(cmd: Command, log: PathBuf) -> Result<Process> {
        Ok(Process {
            child: spawn_logged(cmd, &log)?,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn stop(&mut self) -> Option<ExitStatus> {
        stop_child(&mut self.child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

type Starter = Box<dyn Fn() -> Result<Child> + Send>;

struct Supervision {
    child: Mutex<Option<Child>>,
    stopping: AtomicBool,
    restarts: AtomicU32,
    last_exit: Mutex<Option<ExitStatus>>,
}

/// A process restarted on failure, like a systemd service with `Restart=on-failure`.
pub struct Supervised {
    shared: Arc<Supervision>,
    watcher: Option<JoinHandle<()>>,
    pub log: PathBuf,
}

impl std::fmt::Debug for Supervised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("pid", &self.pid())
            .field("restarts", &self.restarts())
            .finish()
    }
}

impl Supervised {
    /// Starts the process now; `make` builds its command again for every restart.
    pub fn start(make: impl Fn() -> Command + Send + 'static, log: PathBuf) -> Result<Supervised> {
        let log_for_start = log.clone();
        let starter: Starter = Box::new(move || spawn_logged(make(), &log_for_start));
        let shared = Arc::new(Supervision {
            child: Mutex::new(Some(starter()?)),
            stopping: AtomicBool::new(false),
            restarts: AtomicU32::new(0),
            last_exit: Mutex::new(None),
        });
        let s = shared.clone();
        let watcher = std::thread::spawn(move || watch(&s, &starter));
        Ok(Supervised {
            shared,
            watcher: Some(watcher),
            log,
        })
    }

    /// The current process's pid, if one runs.
    pub fn pid(&self) -> Option<u32> {
        self.shared
            .child
            .lock()
            .expect("supervision lock")
            .as_ref()
            .map(Child::id)
    }

    /// How many times the supervisor has restarted the process.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// How the most recent run ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        *self.shared.last_exit.lock().expect("supervision lock")
    }

    /// Sends a signal to the current process (e.g. SIGKILL to simulate a crash).
    pub fn signal(&self, sig: Signal) {
        if let Some(child) = self.shared.child.lock().expect("supervision lock").as_ref() {
            signal(child, sig);
        }
    }

    /// Waits until the supervisor has restarted the process at least `n` times.
    pub fn wait_restarts(&self, n: u32, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.restarts() < n {
            if Instant::now() > deadline {
                return Err(RigError::Timeout {
                    what: format!("{n} restart(s) by the supervisor"),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops the process for good (SIGTERM, then SIGKILL) and ends supervision.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let status = self
            .shared
            .child
            .lock()
            .expect("supervision lock")
            .as_mut()
            .and_then(stop_child);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        status
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(s: &Supervision, starter: &Starter) {
    loop {
        std::thread::sleep(Duration::from_millis(10));
        if s.stopping.load(Ordering::SeqCst) {
            return;
        }
        let status = {
            let mut guard = s.child.lock().expect("supervision lock");
            match guard.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    *guard = None;
                    status
                }
                Some(Ok(None)) => continue,
                _ => return,
            }
        };
        *s.last_exit.lock().expect("supervision lock") = Some(status);
        if !restart_on_failure(&status) {
            return;
        }
        std::thread::sleep(RESTART_DELAY);
        let mut guard = s.child.lock().expect("supervision lock");
        if s.stopping.load(Ordering::SeqCst) {
            return;
        }
        match starter() {
            Ok(child) => {
                *guard = Some(child);
                s.restarts.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                eprintln!("camrig-rig: supervisor could not restart: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn restart_policy_matches_systemd_on_failure() {
        // Raw wait statuses: exit code in the high byte, terminating signal in the low bits.
        assert!(!restart_on_failure(&ExitStatus::from_raw(0)));
        assert!(restart_on_failure(&ExitStatus::from_raw(1 << 8)));
        assert!(restart_on_failure(&ExitStatus::from_raw(9))); // SIGKILL
        assert!(restart_on_failure(&ExitStatus::from_raw(6))); // SIGABRT
        assert!(!restart_on_failure(&ExitStatus::from_raw(15))); // SIGTERM
    }

    #[test]
    fn a_killed_process_is_restarted_and_a_clean_exit_is_not() {
        let dir = std::env::temp_dir().join(crate::netns::unique_stem());
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("runs");
        let m = marker.clone();
        // Each run appends a line, then sleeps; the second run exits 0 after its line.
        let mut sup = Supervised::start(
            move || {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!(
                    "echo run >> {0}; [ $(wc -l < {0}) -ge 2 ] && exit 0; sleep 30",
                    m.display()
                ));
                c
            },
            dir.join("log"),
        )
        .unwrap();
        let first = sup.pid().unwrap();
        crate::wait::until("the first run", Duration::from_secs(10), || {
            std::fs::metadata(&marker).ok().filter(|m| m.len() > 0)
        })
        .unwrap();
        sup.signal(Signal::SIGKILL);
        sup.wait_restarts(1, Duration::from_secs(10)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sup.last_exit().map(|s| s.code()) != Some(Some(0)) {
            assert!(Instant::now() < deadline, "second run did not exit 0");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(RESTART_DELAY * 3);
        assert_eq!(sup.restarts(), 1, "a clean exit must not be restarted");
        assert_ne!(sup.pid(), Some(first));
        sup.stop();
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
