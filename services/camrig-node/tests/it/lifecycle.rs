//! The process's life: systemd notifications, SIGTERM mid-take, kill -9 and recovery,
//! the standalone recorder.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use camrig_protocol::api::NodeState;
use camrig_protocol::manifest::{ManifestState, StopReason, TakeManifest};
use nix::sys::signal::Signal;

use crate::harness::{ffprobe_frames, read_timestamps, tree, Node};
use crate::verify;

#[test]
fn notify_socket_gets_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut node = Node::builder()
        .env("NOTIFY_SOCKET", sock_path.to_str().unwrap())
        .env("WATCHDOG_USEC", "1000000")
        .start();
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(15);
    let has = |seen: &[String], p: &str| seen.iter().any(|m| m.lines().any(|l| l.starts_with(p)));
    while !(has(&seen, "READY=1") && has(&seen, "WATCHDOG=1") && has(&seen, "STATUS=idle")) {
        assert!(Instant::now() < deadline, "got only {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let status = seen.iter().find(|m| m.starts_with("STATUS=")).unwrap();
    assert!(
        status.contains("cam1")
            && status.contains("fps")
            && status.contains("disk")
            && status.contains("clock"),
        "{status}"
    );
    node.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !has(&seen, "STOPPING=1") {
        assert!(Instant::now() < deadline, "no STOPPING=1 in {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert_eq!(node.wait_exit(Duration::from_secs(15)), Some(0));
}

#[test]
fn sigterm_mid_take_closes_everything() {
    let mut node = Node::builder()
        .cameras(2)
        .codec("h264")
        .recording("segment_seconds = 1")
        .start();
    node.start_take("t1", Duration::from_millis(300));
    node.wait_status("1.5 s recorded", Duration::from_secs(20), |s| {
        s.segment >= Some(1)
    });
    node.signal(Signal::SIGTERM);
    assert_eq!(
        node.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        node.log_text()
    );
    let dir = node.recordings().join("t1");
    let m = manifest_on_disk(&dir);
    assert_eq!(m.state, ManifestState::Complete);
    assert_eq!(m.stop_reason, Some(StopReason::Shutdown));
    assert!(m.clock_at_stop.is_some());
    verify::take_on_disk(&dir, &m);
    assert!(m
        .cameras
        .iter()
        .all(|c| c.segments.len() >= 2 && c.segments.iter().all(|s| s.closed_cleanly)));
}

pub fn manifest_on_disk(dir: &std::path::Path) -> TakeManifest {
    let name = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with("_manifest.json"))
        .expect("a manifest");
    TakeManifest::parse(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

/// Starts `take`, lets `segments` of its segments close, and kills the node (-9) mid-take.
fn kill_mid_take(node: &mut Node, take: &str, segments: u32) {
    node.start_take(take, Duration::from_millis(300));
    node.wait_status(
        &format!("{segments} segments closed"),
        Duration::from_secs(20),
        |s| s.segment >= Some(segments),
    );
    node.signal(Signal::SIGKILL);
    node.wait_exit(Duration::from_secs(10));
}

fn kill_and_recover(codec: &str) {
    let mut node = Node::builder()
        .cameras(2)
        .codec(codec)
        .recording("segment_seconds = 1")
        .start();
    kill_mid_take(&mut node, "crash1", 2);

    // What the dead node left: closed segments listed, intact, hashes right.
    let dir = node.recordings().join("crash1");
    let m = manifest_on_disk(&dir);
    assert_eq!(m.state, ManifestState::Recording);
    let closed: usize = m.cameras.iter().map(|c| c.segments.len()).sum();
    assert!(closed >= 2, "{m:?}");
    verify::take_on_disk(&dir, &m);

    node.restart();
    let s = node.status();
    assert_eq!(s.recovered_takes.len(), 1);
    assert_eq!(s.recovered_takes[0].as_str(), "crash1");
    let r = node.manifest("crash1");
    assert_eq!(r.state, ManifestState::Recovered);
    assert_eq!(r.stop_reason, Some(StopReason::Crashed));
    for (before, after) in m.cameras.iter().zip(&r.cameras) {
        assert_eq!(
            &after.segments[..before.segments.len()],
            &before.segments[..],
            "closed segments unchanged"
        );
        // The segment being written when the node died is listed as not closed cleanly; there
        // is none when the kill fell between one segment's close and the next frame.
        let recovered = &after.segments[before.segments.len()..];
        assert!(
            recovered.len() <= 1,
            "one open segment at most: {recovered:?}"
        );
        assert!(recovered.iter().all(|s| !s.closed_cleanly), "{recovered:?}");
    }
    verify::take_on_disk(&dir, &r);
    // A second restart finds nothing more to do.
    node.signal(Signal::SIGTERM);
    node.wait_exit(Duration::from_secs(15));
    node.restart();
    assert!(node.status().recovered_takes.is_empty());
}

/// START writes the markers file without syncing it (nothing is marked yet), so a power cut
/// can leave it empty: recovery renders it again from the manifest.
#[test]
fn a_markers_file_a_power_cut_emptied_is_rendered_again() {
    let mut node = Node::builder().recording("segment_seconds = 1").start();
    kill_mid_take(&mut node, "cut1", 1);
    let dir = node.recordings().join("cut1");
    let markers = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("_markers.txt"))
        .expect("a markers file from START");
    std::fs::File::create(&markers).unwrap();

    node.restart();
    assert_eq!(node.status().recovered_takes.len(), 1);
    let text = std::fs::read_to_string(&markers).unwrap();
    assert!(text.contains("take cut1, node"), "{text}");
    let r = node.manifest("cut1");
    verify::take_on_disk(&dir, &r);
}

#[test]
fn kill_9_mid_take_then_recovery_mjpeg() {
    kill_and_recover("mjpeg");
}

#[test]
fn kill_9_mid_take_then_recovery_h264() {
    kill_and_recover("h264");
}

#[test]
fn standalone_records_from_start_until_sigterm() {
    let mut node = Node::builder().cameras(2).top("standalone = true").start();
    node.wait_status("recording", Duration::from_secs(10), |s| {
        s.state == NodeState::Recording && s.cameras.iter().all(|c| c.take_frames > 20)
    });
    // Standalone cameras lock to the grid too: each its own loop.
    node.wait_status("both cameras phase-locked", Duration::from_secs(10), |s| {
        s.cameras.iter().all(|c| {
            c.phase
                .as_ref()
                .is_some_and(|p| p.state == camrig_protocol::phase::LockState::Locked)
        })
    });
    node.signal(Signal::SIGTERM);
    assert_eq!(
        node.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        node.log_text()
    );
    node.restart();
    node.wait_status("recording again", Duration::from_secs(10), |s| {
        s.cameras.iter().all(|c| c.take_frames > 5)
    });
    node.signal(Signal::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));

    let dirs: Vec<String> = std::fs::read_dir(node.recordings())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 2, "a new directory per start: {dirs:?}");
    for d in dirs {
        assert!(d.len() >= 15 && d.as_bytes()[8] == b'_', "{d}");
        let dir = node.recordings().join(&d);
        assert_eq!(
            tree(&dir),
            vec![
                "camera1.mjpeg",
                "camera1_timestamps.bin",
                "camera2.mjpeg",
                "camera2_timestamps.bin"
            ]
        );
        for cam in 1..=2 {
            let ts = read_timestamps(&dir.join(format!("camera{cam}_timestamps.bin")));
            assert!(ts.len() > 5);
            assert_eq!(
                ffprobe_frames(&dir.join(format!("camera{cam}.mjpeg"))),
                ts.len() as u64
            );
        }
    }
}

#[test]
fn bad_configs_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_camrig-node"))
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("missing.toml");
    let (code, err) = run(&["--config", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "token = \"t\"\n[recording]\nsegment_secs = 5\n").unwrap();
    let (code, err) = run(&["--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("segment_secs"), "{err}");

    let no_token = dir.path().join("no-token.toml");
    std::fs::write(&no_token, "[camera]\nsource = \"synthetic\"\n").unwrap();
    let (code, err) = run(&["--config", no_token.to_str().unwrap(), "--synthetic", "3"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("camera.count"), "{err}");
}
