//! Verifying a node's files while the rest are still in transit. rsync writes each file under
//! a temporary name and renames it into the staging directory once it is whole, so a rename
//! into staging (inotify `IN_MOVED_TO`) means "this file is complete": the verifier checks
//! its sha256 against the manifest and sorts it at once, on its own thread. Hashing and
//! fsync of one file then overlap the transfer of the next instead of all waiting for the
//! last byte; after the last file only that file's check is left.
//!
//! When rsync has transferred everything, the files that never arrived by a rename (already
//! sorted and skipped via `--compare-dest`, or missing on the node) are checked exactly as
//! before. After a failed transfer the verifier stops: what it verified stays verified and
//! sorted, the rest is fetched again by the next download.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camrig_protocol::manifest::FileEntry;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc::UnboundedSender;

use crate::sorting::verify_and_sort;

/// One file checked: its name, size and what the check said.
#[derive(Debug)]
pub struct Verified {
    pub name: String,
    pub bytes: u64,
    pub outcome: Result<(), String>,
}

/// Where the time went, for the download's timing log line.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifierStats {
    /// Time spent hashing, fsyncing and linking (overlapped with the transfer).
    pub checking: Duration,
    /// When rsync created its first file in staging: ssh and rsync are connected and the
    /// file list is through.
    pub first_data: Option<Instant>,
}

/// A running verifier for one node's staging directory.
pub struct Verifier {
    /// Closing it (or writing [`TRANSFERRED`]) tells the thread rsync is done.
    done: UnixStream,
    thread: JoinHandle<VerifierStats>,
}

const TRANSFERRED: u8 = 1;

impl Verifier {
    /// Starts watching `staging`; every entry of `pending` is reported on `results` exactly
    /// once, unless the transfer fails first.
    pub fn start(
        staging: PathBuf,
        sorted: PathBuf,
        pending: Vec<FileEntry>,
        results: UnboundedSender<Verified>,
    ) -> std::io::Result<Verifier> {
        let (done, done_rx) = UnixStream::pair()?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // Watch before looking, so a file completed in between is seen by one or the other.
        inotify.add_watch(
            &staging,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CREATE,
        )?;
        let worker = Worker {
            staging,
            sorted,
            pending: pending.into_iter().map(|f| (f.name.clone(), f)).collect(),
            results,
            stats: VerifierStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name("download-verify".into())
            .spawn(move || worker.run(inotify, done_rx))?;
        Ok(Verifier { done, thread })
    }

    /// Says how the transfer ended: after a complete one the files still pending are
    /// checked, after a failed one they are left for the next download. The results
    /// channel closes when the verifier is done.
    pub fn finish(mut self, transferred: bool) -> JoinHandle<VerifierStats> {
        if transferred {
            // A failed write means the thread is gone already; joining tells the rest.
            let _ = self.done.write_all(&[TRANSFERRED]);
        }
        drop(self.done);
        self.thread
    }
}

struct Worker {
    staging: PathBuf,
    sorted: PathBuf,
    pending: HashMap<String, FileEntry>,
    results: UnboundedSender<Verified>,
    stats: VerifierStats,
}

impl Worker {
    fn run(mut self, inotify: Inotify, mut done: UnixStream) -> VerifierStats {
        // Whole files left in staging by an earlier, interrupted download.
        let present: Vec<String> = self
            .pending
            .keys()
            .filter(|n| self.staging.join(n).is_file())
            .cloned()
            .collect();
        for name in present {
            self.check(&name);
        }
        let transferred = loop {
            let (events_ready, done_ready) = {
                let mut fds = [
                    PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
                    PollFd::new(done.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::warn!("download verifier cannot wait for files: {e}");
                        break wait_for_end(&mut done);
                    }
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if events_ready {
                for event in inotify.read_events().unwrap_or_default() {
                    if event.mask.contains(AddWatchFlags::IN_CREATE) {
                        self.stats.first_data.get_or_insert_with(Instant::now);
                    }
                    if event.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                        if let Some(name) = event.name.and_then(|n| n.into_string().ok()) {
                            self.check(&name);
                        }
                    }
                }
            }
            if done_ready {
                break wait_for_end(&mut done);
            }
        };
        if transferred {
            let rest: Vec<String> = self.pending.keys().cloned().collect();
            for name in rest {
                self.check(&name);
            }
        }
        self.stats
    }

    /// Verifies and sorts `name` if it is still pending; reports the outcome.
    fn check(&mut self, name: &str) {
        let Some(entry) = self.pending.remove(name) else {
            return;
        };
        let t = Instant::now();
        let outcome = verify_and_sort(&self.staging.join(name), &self.sorted.join(name), &entry);
        self.stats.checking += t.elapsed();
        let _ = self.results.send(Verified {
            name: entry.name,
            bytes: entry.bytes,
            outcome,
        });
    }
}

/// Reads how the transfer ended: [`TRANSFERRED`], or end of stream for a failure.
fn wait_for_end(done: &mut UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(done.read(&mut b), Ok(1) if b[0] == TRANSFERRED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sorting::tests::entry;

    fn recv(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Verified>) -> Verified {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.try_recv() {
                Ok(v) => return v,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no verification result: {e}"),
            }
        }
    }

    #[test]
    fn a_file_renamed_into_staging_is_verified_before_the_transfer_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, sorted) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&sorted).unwrap();
        // Left whole by an earlier run.
        std::fs::write(staging.join("early"), b"early").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let v = Verifier::start(
            staging.clone(),
            sorted.clone(),
            vec![
                entry("early", b"early"),
                entry("a", b"first file"),
                entry("late", b"late"),
            ],
            tx,
        )
        .unwrap();
        let first = recv(&mut rx);
        assert_eq!(first.name, "early");
        assert!(first.outcome.is_ok());

        // As rsync does it: a temporary name, then a rename when whole.
        std::fs::write(staging.join(".a.XyZ123"), b"first file").unwrap();
        std::fs::rename(staging.join(".a.XyZ123"), staging.join("a")).unwrap();
        let a = recv(&mut rx);
        assert_eq!((a.name.as_str(), a.bytes), ("a", 10));
        assert!(a.outcome.is_ok(), "{:?}", a.outcome);
        assert_eq!(std::fs::read(sorted.join("a")).unwrap(), b"first file");
        assert!(!staging.join("a").exists());

        // "late" never arrives: after a complete transfer it is reported missing.
        let stats = v.finish(true);
        let late = recv(&mut rx);
        assert_eq!(late.name, "late");
        assert!(late.outcome.unwrap_err().contains("not transferred"));
        let stats = stats.join().unwrap();
        assert!(stats.first_data.is_some());
        assert!(
            rx.blocking_recv().is_none(),
            "the channel closes at the end"
        );
    }

    #[test]
    fn after_a_failed_transfer_pending_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, sorted) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&sorted).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let v = Verifier::start(staging, sorted, vec![entry("b", b"bee")], tx).unwrap();
        v.finish(false).join().unwrap();
        assert!(rx.blocking_recv().is_none());
    }
}
