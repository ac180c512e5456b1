//! A take on a small tmpfs: the disk guard stops it cleanly before the disk fills, and a
//! write that hits ENOSPC anyway still ends with whole frames and a final manifest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use camrig_protocol::manifest::{ManifestState, StopReason};

use crate::harness::Node;
use crate::lifecycle::manifest_on_disk;
use crate::verify;

/// A tmpfs mounted for one test, unmounted when dropped (the tests run as root).
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m"),
                "camrig-test",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs (tests run as root)");
        Tmpfs { path, _dir: dir }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn fill(min_free_mb: u32) -> (Node, Tmpfs) {
    let fs = Tmpfs::mount(8);
    let mut node = Node::builder()
        .cameras(2)
        .size(320, 240)
        .codec("mjpeg")
        .recording("mjpeg_quality = 95")
        .recording("segment_seconds = 1")
        .recording(&format!("min_free_mb = {min_free_mb}"))
        .data_dir(fs.path())
        .start();
    node.start_take("big", Duration::from_millis(300));
    let s = node.wait_status(
        "take stopped by a full disk",
        Duration::from_secs(60),
        |s| {
            s.last_take
                .as_ref()
                .is_some_and(|t| t.stop_reason == Some(StopReason::DiskFull))
        },
    );
    assert!(s.problem.as_deref().unwrap_or("").contains("free"), "{s:?}");
    node.signal(nix::sys::signal::Signal::SIGTERM);
    node.wait_exit(Duration::from_secs(20));
    (node, fs)
}

#[test]
fn disk_guard_stops_the_take_before_the_disk_fills() {
    let (node, _fs) = fill(3);
    let dir = node.recordings().join("big");
    let m = manifest_on_disk(&dir);
    assert_eq!(m.state, ManifestState::Complete);
    assert_eq!(m.stop_reason, Some(StopReason::DiskFull));
    assert!(m.cameras.iter().all(|c| c.frames > 10));
    verify::take_on_disk(&dir, &m);
    assert!(
        !node.log_text().contains("No space left"),
        "the guard acted before ENOSPC"
    );
}

#[test]
fn enospc_mid_write_still_ends_the_take_cleanly() {
    let (node, _fs) = fill(0);
    let dir = node.recordings().join("big");
    let m = manifest_on_disk(&dir);
    assert_eq!(m.state, ManifestState::Complete);
    assert_eq!(m.stop_reason, Some(StopReason::DiskFull));
    verify::take_on_disk(&dir, &m);
}
