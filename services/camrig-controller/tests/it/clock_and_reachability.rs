//! START is refused, naming the node and the reason, while a node is unreachable or its
//! clock is off; `allow_partial` and `override_clock` go ahead and are recorded.

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
