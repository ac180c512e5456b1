//! A controller that crashes mid-take and restarts finds the take in its database and the
//! nodes still recording, and carries on: MARK and STOP work, history is intact.

use std::time::Duration;

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn controller_restarted_mid_take_carries_on() {
    let mut rig = RigBuilder::new().nodes(2).start();
    rig.start_take("before_crash");
    rig.wait_recording(&[0, 1], 10);
    rig.post("/api/takes/current/stop", json!({}));
    rig.start_take("across_restart");
    rig.wait_recording(&[0, 1], 10);

    rig.kill_controller();
    // The nodes do not depend on the controller: they keep recording.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rig.node_get(0, "/v1/status").1["state"], "recording");
    rig.start_controller();

    let r = rig.wait_for("rig back with the take", Duration::from_secs(30), |rig| {
        let r = rig.get("/api/rig").1;
        (r["nodes"]
            .as_array()?
            .iter()
            .all(|n| n["reachable"] == true))
        .then_some(r)
    });
    assert_eq!(r["current_take"]["name"], "across_restart", "{r}");
    // The take monitor sees the nodes recording the take; they stay recording.
    rig.wait_for("take nodes recording", Duration::from_secs(20), |rig| {
        let t = rig.take("across_restart");
        t["nodes"]
            .as_array()?
            .iter()
            .all(|n| n["state"] == "recording")
            .then_some(())
    });
    rig.wait_recording(&[0, 1], 60);
    let take = rig.take("across_restart");
    assert!(
        take["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "recording"),
        "{take}"
    );

    // A new START is refused: the take is still running.
    let (status, err) = rig.post("/api/takes", json!({ "name": "other" }));
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("across_restart"),
        "{err}"
    );

    assert_eq!(
        rig.post(
            "/api/takes/current/mark",
            json!({ "note": "after restart" })
        )
        .0,
        200
    );
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    assert!(
        stopped["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["state"] == "stopped"),
        "{stopped}"
    );
    rig.wait_for("nodes idle", Duration::from_secs(20), |rig| {
        (0..2)
            .all(|i| rig.node_get(i, "/v1/status").1["state"] == "idle")
            .then_some(())
    });
    assert_eq!(rig.take_names(), ["across_restart", "before_crash"]);

    rig.post("/api/downloads", json!({}));
    rig.wait_download("across_restart", "verified");
    rig.wait_download("before_crash", "verified");
    for i in 0..2 {
        rig.assert_sorted_like_manifest("across_restart", i);
    }
}
