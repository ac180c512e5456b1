//! START is refused, naming the node and the reason, while a node is unreachable, its
//! clock is off or a camera is still phase-locking; `allow_partial` and `override_clock` go
//! ahead and are recorded, as is a camera whose phase lock is unavailable.

use std::time::Duration;

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn an_unreachable_node_blocks_start_unless_partial_is_allowed() {
    let rig = RigBuilder::new().nodes(2).phantom_nodes(1).start();
    let ghost = rig.nodes[2].ip.clone();
    let r = rig.get("/api/rig").1;
    assert_eq!(r["nodes"][2]["reachable"], false);
    assert_eq!(r["start_ready"], false);
    assert!(
        r["nodes"][2]["start_blocker"]
            .as_str()
            .unwrap()
            .contains(&ghost),
        "{r}"
    );

    let (status, err) = rig.post("/api/takes", json!({ "name": "blocked" }));
    assert_eq!(status, 409, "{err}");
    let msg = err["error"].as_str().unwrap();
    assert!(msg.contains(&ghost) && msg.contains("unreachable"), "{msg}");
    assert!(rig.get("/api/takes").1.as_array().unwrap().is_empty());
    assert_eq!(rig.node_get(0, "/v1/status").1["state"], "idle");

    // A partial rig: the ghost fails to arm, the others record.
    let (status, take) = rig.post(
        "/api/takes",
        json!({ "name": "partial", "allow_partial": true }),
    );
    assert_eq!(status, 201, "{take}");
    assert!(take["allow_partial"].as_bool().unwrap());
    assert_eq!(take["nodes"][2]["state"], "arm_failed", "{take}");
    assert!(
        take["nodes"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{take}"
    );
    rig.wait_recording(&[0, 1], 10);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.post("/api/takes/partial/download", json!({}));
    let take = rig.wait_download("partial", "verified");
    assert_eq!(
        take["nodes"][2]["download"], "none",
        "a node that never recorded has nothing to download"
    );
}

#[test]
fn a_node_that_refuses_to_arm_aborts_the_others() {
    let rig = RigBuilder::new().nodes(2).start();
    // Make node 1 refuse: a take of that name already exists on its disk.
    std::fs::create_dir_all(rig.nodes[1].data_dir.join("recordings").join("clash")).unwrap();
    let (status, err) = rig.post("/api/takes", json!({ "name": "clash" }));
    assert_eq!(status, 409, "{err}");
    assert_eq!(
        err["nodes"][0]["address"],
        rig.nodes[1].ip.as_str(),
        "{err}"
    );
    let take = rig.take("clash");
    assert_eq!(take["state"], "aborted");
    assert_eq!(take["nodes"][0]["state"], "aborted", "{take}");
    assert_eq!(take["nodes"][1]["state"], "arm_failed", "{take}");
    rig.wait_for("node 0 idle again", Duration::from_secs(10), |rig| {
        (rig.node_get(0, "/v1/status").1["state"] == "idle").then_some(())
    });
    assert!(rig.get("/api/rig").1["current_take"].is_null());
    // The aborted take kept nothing: once the obstacle is gone the name can be used.
    std::fs::remove_dir(rig.nodes[1].data_dir.join("recordings").join("clash")).unwrap();
    let take = rig.start_take("clash");
    assert_eq!(take["state"], "recording");
    rig.wait_recording(&[0, 1], 3);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
}

#[test]
fn clock_beyond_the_limit_blocks_start_unless_overridden() {
    // A limit of 1 ns: no real measurement fits, so every node is "off".
    let rig = RigBuilder::new()
        .nodes(2)
        .controller("max_clock_offset_ms = 0.000001")
        .start();
    let (status, err) = rig.post("/api/takes", json!({ "name": "offclock" }));
    assert_eq!(status, 409, "{err}");
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains("clock is off by") && msg.contains(&rig.nodes[0].ip),
        "{msg}"
    );

    let (status, take) = rig.post(
        "/api/takes",
        json!({ "name": "offclock", "override_clock": true }),
    );
    assert_eq!(status, 201, "{take}");
    assert!(take["override_clock"].as_bool().unwrap());
    assert!(
        take["override_note"]
            .as_str()
            .unwrap()
            .contains("clock is off by"),
        "{take}"
    );
    rig.wait_recording(&[0, 1], 5);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
}

#[test]
fn a_camera_still_phase_locking_blocks_start_unless_overridden_and_unavailable_is_recorded() {
    // Node 0 never reaches `locked` (it would need a million frames in tolerance in a row);
    // node 1 runs with the loop switched off (`unavailable`).
    let rig = RigBuilder::new()
        .nodes(2)
        .node_phase(0, "lock_frames = 1000000")
        .node_phase(1, "lock = false")
        .start();
    let ip0 = rig.nodes[0].ip.clone();
    let ip1 = rig.nodes[1].ip.clone();
    let r = rig.wait_for("node 0 phase-locking", Duration::from_secs(30), |rig| {
        let r = rig.get("/api/rig").1;
        (r["nodes"][0]["status"]["cameras"][0]["phase"]["state"] == "locking"
            && r["nodes"][1]["status"]["cameras"][0]["phase"]["state"] == "unavailable"
            && r["nodes"][0]["start_blocker"].is_string())
        .then_some(r)
    });
    let blocker = r["nodes"][0]["start_blocker"].as_str().unwrap();
    assert!(blocker.contains("cam1 is still phase-locking"), "{blocker}");
    assert!(
        r["nodes"][1]["start_blocker"].is_null(),
        "unavailable does not block: {r}"
    );

    let (status, err) = rig.post("/api/takes", json!({ "name": "unlocked" }));
    assert_eq!(status, 409, "{err}");
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains(&ip0) && msg.contains("phase-locking") && msg.contains("override"),
        "{msg}"
    );
    assert!(
        !msg.contains(&ip1),
        "the unavailable camera is no refusal: {msg}"
    );
    assert!(rig.get("/api/takes").1.as_array().unwrap().is_empty());

    let (status, take) = rig.post(
        "/api/takes",
        json!({ "name": "overridden", "override_clock": true }),
    );
    assert_eq!(status, 201, "{take}");
    let note = take["override_note"].as_str().unwrap();
    assert!(
        note.contains(&ip0) && note.contains("phase-locking"),
        "{note}"
    );
    assert!(
        note.contains(&ip1) && note.contains("phase lock unavailable"),
        "the warning is recorded: {note}"
    );
    // Placed half a period between two grid instants of the 30 fps grid.
    let start_at = take["start_at_ns"].as_i64().unwrap();
    let grid = camrig_protocol::grid::FrameGrid::new(30.0).unwrap();
    assert_eq!(grid.midpoint_at_or_after(start_at), start_at);
    rig.wait_recording(&[0, 1], 10);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
}
