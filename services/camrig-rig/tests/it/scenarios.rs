//! The rig's fault scenarios with the real `camrig-node` and `camrig-controller` processes,
//! driven through the controller's REST API from the operator's host, as a person would.

use std::time::{Duration, Instant};

use camrig_protocol::grid::FrameGrid;
use camrig_protocol::manifest::{ManifestState, StopReason, TakeManifest};
use camrig_protocol::now_unix_ns;
use camrig_protocol::phase::LockState;
use camrig_rig::http_client::HttpClient;
use camrig_rig::rig::RIG_TOKEN;
use camrig_rig::services::NodeSettings;
use camrig_rig::ssh::KeyPair;
use camrig_rig::{Rig, Shaping};
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(30);
const DOWNLOAD: Duration = Duration::from_secs(120);

fn rig(nodes: usize) -> Rig {
    rig_with(nodes, NodeSettings::default())
}

fn rig_with(nodes: usize, settings: NodeSettings) -> Rig {
    let rig = Rig::builder()
        .nodes(nodes)
        .node_settings(settings)
        .build()
        .expect("building the rig");
    rig.wait_start_ready(READY).expect("rig ready to START");
    rig
}

/// Starts `name`, checks every node armed, and returns the scheduled start instant.
fn start(rig: &Rig, name: &str) -> i64 {
    let take = rig.start_take(name).unwrap();
    let nodes = take["nodes"].as_array().expect("take lists its nodes");
    assert_eq!(nodes.len(), rig.nodes().len(), "{take}");
    for n in nodes {
        assert!(
            n["state"] == "armed" || n["state"] == "recording",
            "node not armed: {take}"
        );
    }
    take["start_at_ns"].as_i64().expect("start_at_ns")
}

/// Lets the take run until `secs` after its start instant (recording time, not a guess).
fn record_until(start_at: i64, secs: f64) {
    let until = start_at + (secs * 1e9) as i64;
    let left = until - now_unix_ns();
    if left > 0 {
        std::thread::sleep(Duration::from_nanos(left as u64));
    }
}

fn stop(rig: &Rig, name: &str) -> Vec<TakeManifest> {
    rig.stop_take().unwrap();
    rig.wait_rig_idle(SETTLE).unwrap();
    rig.wait_manifests_final(name, SETTLE).unwrap();
    (0..rig.nodes().len())
        .map(|i| rig.manifest(i, name).unwrap())
        .collect()
}

fn take_node<'a>(take: &'a Value, rig: &Rig, i: usize) -> &'a Value {
    let ip = rig.node(i).ip.to_string();
    take["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["address"] == ip.as_str()))
        .unwrap_or_else(|| panic!("take lists no node {ip}: {take}"))
}

fn download_all_verified(rig: &Rig, name: &str) -> Value {
    rig.download_take(name).unwrap();
    let take = rig.wait_download_settled(name, DOWNLOAD).unwrap();
    for i in 0..rig.nodes().len() {
        let n = take_node(&take, rig, i);
        assert_eq!(n["download"], "verified", "node {i}: {n}");
    }
    take
}

/// Frames a camera should have kept between the two instants at 30 fps.
fn expected_frames(m: &TakeManifest) -> f64 {
    let stop = m.stop_at_ns.expect("stopped take has a stop instant");
    (stop - m.start_at_ns) as f64 / 1e9 * m.cameras[0].fps
}

#[test]
fn nodes_serve_their_api_on_the_rig_network_only_with_the_token() {
    let rig = Rig::builder()
        .nodes(2)
        .without_controller()
        .build()
        .unwrap();
    for i in 0..2 {
        let status = rig.node_get(i, "/v1/status").unwrap();
        assert_eq!(status.status, 200, "{}", status.body);
        let s = status.value();
        assert_eq!(s["node"], rig.node(i).label().as_str(), "{s}");
        assert_eq!(s["cameras"][0]["model"], "synthetic", "{s}");
        let anonymous = rig
            .operator()
            .get(&rig.node(i).api_url("/v1/status"), None)
            .unwrap();
        assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    }
}

#[test]
fn a_full_take_on_three_nodes_is_downloaded_and_sorted_file_by_file() {
    let rig = rig(3);
    let name = "rig_full_take";
    let start_at = start(&rig, name);
    record_until(start_at, 1.5);
    let mark = rig.mark_take("clapperboard").unwrap();
    assert!(mark.to_string().contains("clapperboard"), "{mark}");
    record_until(start_at, 4.5);
    let manifests = stop(&rig, name);

    let period_ns = 1e9 / 30.0;
    let grid = FrameGrid::new(30.0).unwrap();
    let mut first_slots = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        assert_eq!(m.state, ManifestState::Complete, "node {i}");
        assert_eq!(m.stop_reason, Some(StopReason::Requested), "node {i}");
        assert_eq!(m.node, rig.node(i).label());
        let cam = &m.cameras[0];
        let first = cam.first_frame_ns.expect("a first frame");
        // Every camera is phase-locked (START waited for it) and START sits half a period
        // between grid instants: the first frame is the slot just after it, within the lock
        // tolerance, on every node (a lost first frame is counted as a drop).
        assert!(
            first >= start_at && ((first - start_at) as f64) < period_ns * (1 + cam.drops) as f64,
            "node {i}: first frame {first} vs start {start_at}"
        );
        let phase = cam
            .phase
            .as_ref()
            .expect("the manifest records the phase lock");
        assert_eq!(
            phase.state_at_start,
            LockState::Locked,
            "node {i}: {phase:?}"
        );
        assert!(phase.error_ns.p99 <= 50_000, "node {i}: {phase:?}");
        if cam.drops == 0 {
            first_slots.push(grid.nearest_slot(first));
        }
        assert!(cam.segments.len() >= 2, "node {i}: 2 s segments over 4.5 s");
        assert!(
            (cam.frames as f64 - expected_frames(m)).abs() <= 2.0 + cam.drops as f64,
            "node {i}: {} frames, {} drops, expected about {}",
            cam.frames,
            cam.drops,
            expected_frames(m)
        );
        assert_eq!(m.markers.len(), 1, "node {i}");
        assert_eq!(m.markers[0].note, "clapperboard");
    }
    // Same first slot on every node.
    assert!(
        first_slots.windows(2).all(|w| w[0] == w[1]),
        "first frames in different grid slots: {first_slots:?}"
    );

    download_all_verified(&rig, name);
    let sorted = rig.verify_sorted_download(name, &[0, 1, 2]).unwrap();
    let listed: usize = manifests.iter().map(|m| m.files.len()).sum();
    assert_eq!(sorted.files, listed);
}

#[test]
fn a_node_cut_off_mid_take_keeps_recording_and_stops_when_back() {
    let rig = rig(2);
    let name = "rig_link_cut";
    let start_at = start(&rig, name);
    record_until(start_at, 1.0);

    rig.cut_node(1).unwrap();
    let cut_at = Instant::now();
    rig.wait_node_reachable(1, false, Duration::from_secs(10))
        .unwrap();
    let shown_after = cut_at.elapsed();
    assert!(
        shown_after <= Duration::from_secs(5),
        "unreachable shown after {shown_after:?}"
    );

    // Seen from inside its own host, the node records on while its cable is out.
    let local = HttpClient::new(rig.network().host(rig.node(1).host).netns()).unwrap();
    let frames = |client: &HttpClient| -> u64 {
        let s = client
            .get(&rig.node(1).api_url("/v1/status"), Some(RIG_TOKEN))
            .unwrap()
            .value();
        assert_eq!(s["state"], "recording", "{s}");
        s["cameras"][0]["take_frames"].as_u64().unwrap_or(0)
    };
    let before = frames(&local);
    camrig_rig::wait::until("frames while cut off", SETTLE, || {
        (frames(&local) >= before + 30).then_some(())
    })
    .unwrap();

    rig.restore_node(1).unwrap();
    rig.wait_node_reachable(1, true, Duration::from_secs(15))
        .unwrap();
    let manifests = stop(&rig, name);
    for (i, m) in manifests.iter().enumerate() {
        assert_eq!(m.state, ManifestState::Complete, "node {i}");
        assert_eq!(
            m.stop_reason,
            Some(StopReason::Requested),
            "node {i}: {m:?}"
        );
        let cam = &m.cameras[0];
        assert!(
            cam.frames as f64 + cam.drops as f64 >= expected_frames(m) - 2.0,
            "node {i}: {} frames + {} drops, expected about {}",
            cam.frames,
            cam.drops,
            expected_frames(m)
        );
    }
    // Both nodes stopped at the same scheduled instant.
    assert_eq!(manifests[0].stop_at_ns, manifests[1].stop_at_ns);
    download_all_verified(&rig, name);
    rig.verify_sorted_download(name, &[0, 1]).unwrap();
}

fn tx_bytes(rig: &Rig, i: usize) -> u64 {
    rig.network()
        .host(rig.node(i).host)
        .netns()
        .exec("cat", &["/sys/class/net/eth0/statistics/tx_bytes"])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        total += if p.is_dir() {
            dir_bytes(&p)
        } else {
            e.metadata().map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

/// The controller must notice the dead link by itself: rsync's `--timeout` never fires while
/// ssh keeps accepting its keep-alive writes, so ssh itself has to give up (ServerAliveInterval)
/// for rsync to exit, keep the partial file and let the next DOWNLOAD resume from it.
#[test]
fn a_download_cut_mid_transfer_resumes_from_the_partial_file() {
    // Bigger frames so the take is a few MB, over a slow link so the cut lands mid-file.
    let rig = rig_with(
        1,
        NodeSettings {
            width: 640,
            height: 480,
            segment_seconds: 10,
            ..NodeSettings::default()
        },
    );
    let name = "rig_download_cut";
    let start_at = start(&rig, name);
    record_until(start_at, 3.0);
    let manifest = stop(&rig, name).remove(0);
    let total: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    assert!(
        total > 1_000_000,
        "take too small to cut mid-transfer: {total}"
    );

    rig.shape_node(0, &Shaping::rate(2.0)).unwrap();
    rig.download_take(name).unwrap();
    let staging = rig.downloads_dir.join(".staging").join(name);
    camrig_rig::wait::until("a third of the take to arrive", DOWNLOAD, || {
        (dir_bytes(&staging) > total / 3).then_some(())
    })
    .unwrap();
    rig.cut_node(0).unwrap();
    let take = rig
        .wait_download_settled(name, Duration::from_secs(180))
        .unwrap();
    let node = take_node(&take, &rig, 0);
    assert_eq!(node["download"], "failed", "{node}");
    let kept = dir_bytes(&staging);
    assert!(
        kept > total / 3,
        "the partial transfer was not kept: {kept} bytes"
    );

    rig.restore_node(0).unwrap();
    rig.shape_node(0, &Shaping::default()).unwrap();
    rig.wait_node_reachable(0, true, Duration::from_secs(15))
        .unwrap();
    let tx_before = tx_bytes(&rig, 0);
    download_all_verified(&rig, name);
    let sent = tx_bytes(&rig, 0) - tx_before;
    // What was already there was not sent again (rsync's protocol overhead is small).
    assert!(
        sent < total - kept / 2,
        "resume sent {sent} bytes of a {total}-byte take with {kept} bytes kept"
    );
    rig.verify_sorted_download(name, &[0]).unwrap();
}

#[test]
fn a_node_with_an_unknown_host_key_is_refused_clearly() {
    let rig = rig(2);
    // Node 1 "was re-flashed": known_hosts lists a key it does not have.
    let impostor = KeyPair::generate(&rig.scratch_dir().join("other_host_key"), "other").unwrap();
    let kh = std::fs::read_to_string(&rig.known_hosts).unwrap();
    let ip1 = rig.node(1).ip.to_string();
    let edited: String = kh
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{ip1} ")) {
                format!("{ip1} {}\n", impostor.public_key())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&rig.known_hosts, edited).unwrap();

    let name = "rig_host_key";
    let start_at = start(&rig, name);
    record_until(start_at, 1.0);
    stop(&rig, name);
    rig.download_take(name).unwrap();
    let take = rig.wait_download_settled(name, DOWNLOAD).unwrap();
    assert_eq!(take_node(&take, &rig, 0)["download"], "verified", "{take}");
    let refused = take_node(&take, &rig, 1);
    assert_eq!(refused["download"], "failed", "{refused}");
    let reason = refused["download_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("host key") && reason.contains(&ip1),
        "unclear refusal: {reason:?}"
    );
    rig.verify_sorted_download(name, &[0]).unwrap();
    let sorted = rig.downloads_dir.join(name).join(&ip1);
    let files = std::fs::read_dir(&sorted).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        files,
        0,
        "files from an unverified host in {}",
        sorted.display()
    );
}

#[test]
fn a_node_killed_mid_take_is_restarted_and_its_closed_segments_download() {
    let rig = rig(2);
    let name = "rig_node_killed";
    let start_at = start(&rig, name);
    // Two 2 s segments closed, the third open.
    record_until(start_at, 4.8);
    rig.kill_node(0);
    rig.node(0)
        .service()
        .wait_restarts(1, Duration::from_secs(10))
        .unwrap();
    rig.wait_node_ready(0, SETTLE).unwrap();

    // The controller shows the restarted node and the take it recovered.
    let view = camrig_rig::wait::until("the controller to show the recovery", SETTLE, || {
        rig.node_view(0).ok().filter(|v| {
            v["reachable"] == true
                && v["status"]["recovered_takes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == name))
        })
    })
    .unwrap();
    assert_eq!(view["status"]["state"], "idle", "{view}");

    record_until(start_at, 6.0);
    let manifests = stop(&rig, name);
    let crashed = &manifests[0];
    assert_eq!(crashed.state, ManifestState::Recovered);
    let closed: Vec<_> = crashed.cameras[0]
        .segments
        .iter()
        .filter(|s| s.closed_cleanly)
        .collect();
    assert!(
        closed.len() >= 2,
        "closed segments: {:?}",
        crashed.cameras[0].segments
    );
    assert_eq!(manifests[1].state, ManifestState::Complete);

    let take = rig.take(name).unwrap();
    assert_ne!(take_node(&take, &rig, 0)["state"], "recording", "{take}");
    download_all_verified(&rig, name);
    rig.verify_sorted_download(name, &[0, 1]).unwrap();
    // Each closed segment holds exactly the frames its timestamps list.
    let dir = rig
        .downloads_dir
        .join(name)
        .join(rig.node(0).ip.to_string());
    for s in closed {
        let ts = std::fs::read(dir.join(&s.timestamps_bin)).unwrap();
        assert_eq!(ts.len() as u64, s.frames * 8, "{}", s.timestamps_bin);
    }
}
