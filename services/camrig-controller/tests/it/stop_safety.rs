//! STOP never strands a node: a STOP right after START (before the take's start instant)
//! cancels the take on every node; a node that does not take the STOP keeps the take open,
//! named in the answer with the recovery (abort that node), and the rig never shows idle
//! while it may still record.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn a_stop_right_after_start_cancels_the_take_on_every_node() {
    let rig = RigBuilder::new().nodes(2).start();
    let take = rig.start_take("quick_01");
    let start_at = take["start_at_ns"].as_i64().unwrap();
    // `camrig start x; camrig stop`: the STOP's instant (now + 200 ms) falls before START's
    // (now + 500 ms).
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}\n{}", rig.logs());
    assert_eq!(stopped["state"], "cancelled", "{stopped}");
    for n in stopped["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "cancelled", "{n}");
        assert!(
            n["reason"]
                .as_str()
                .unwrap()
                .contains("nothing was recorded"),
            "{n}"
        );
    }
    assert!(rig.get("/api/rig").1["current_take"].is_null());
    // Past the start instant, no node records: every one is idle with no take directory.
    while camrig_protocol::now_unix_ns() < start_at + 1_000_000_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..2 {
        let s = rig.node_get(i, "/v1/status").1;
        assert_eq!(s["state"], "idle", "node {i}: {s}");
        assert!(
            !rig.nodes[i].data_dir.join("recordings/quick_01").exists(),
            "node {i} kept a directory for the cancelled take"
        );
    }
    // Nothing was recorded, so the name is free and the rig takes the next START at once.
    rig.start_take("quick_01");
    rig.wait_recording(&[0, 1], 5);
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
}

#[test]
fn a_node_that_does_not_take_stop_keeps_the_take_open_until_aborted() {
    let rig = RigBuilder::new().nodes(2).start();
    rig.start_take("stuck_01");
    rig.wait_recording(&[0, 1], 5);
    let frozen = Pid::from_raw(rig.nodes[1].child.as_ref().unwrap().id() as i32);
    kill(frozen, Signal::SIGSTOP).unwrap();
    let (status, refused) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 502, "{refused}");
    let msg = refused["error"].as_str().unwrap();
    assert!(
        msg.contains(&rig.nodes[1].ip) && msg.contains("abort"),
        "names the node and the recovery: {msg}"
    );
    assert_eq!(refused["nodes"][0]["address"], rig.nodes[1].ip.as_str());
    // Not stopped, not idle: the node may still be recording.
    let view = rig.get("/api/rig").1;
    assert_eq!(view["current_take"]["name"], "stuck_01", "{view}");
    assert_ne!(view["state"], "idle");
    let take = rig.take("stuck_01");
    assert_eq!(take["state"], "recording", "{take}");
    assert_eq!(take["nodes"][0]["state"], "stopped", "{take}");
    assert!(
        take["nodes"][1]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("STOP"),
        "{take}"
    );
    // START stays refused while the take is open.
    assert_eq!(rig.post("/api/takes", json!({"name": "next"})).0, 409);

    // The recovery: the node answers again and is aborted.
    kill(frozen, Signal::SIGCONT).unwrap();
    let (status, aborted) = rig.post("/api/nodes/1/abort", json!({}));
    assert_eq!(status, 200, "{aborted}\n{}", rig.logs());
    let take = rig.take("stuck_01");
    assert_eq!(take["state"], "stopped", "{take}");
    assert_eq!(take["nodes"][1]["state"], "stopped", "{take}");
    rig.wait_for("node 1 idle", Duration::from_secs(15), |rig| {
        (rig.node_get(1, "/v1/status").1["state"] == "idle").then_some(())
    });
    assert!(rig.get("/api/rig").1["current_take"].is_null());
    // What node 1 recorded is kept and downloads like any stopped take.
    rig.post("/api/takes/stuck_01/download", json!({}));
    rig.wait_download("stuck_01", "verified");
}

#[test]
fn a_take_whose_every_node_failed_is_not_shown_armed() {
    let mut rig = RigBuilder::new().nodes(1).start();
    rig.start_take("all_lost");
    rig.wait_recording(&[0], 5);
    rig.kill_node(0);
    rig.wait_for(
        "node 0 failed in the take",
        Duration::from_secs(15),
        |rig| (rig.take("all_lost")["nodes"][0]["state"] == "failed").then_some(()),
    );
    let view = rig.get("/api/rig").1;
    assert_eq!(view["state"], "failed", "{view}");
    // STOP closes it: the lost node holds nothing open, and the answer says it failed.
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["nodes"][0]["state"], "failed");
    assert_eq!(rig.get("/api/rig").1["state"], "idle");
}
