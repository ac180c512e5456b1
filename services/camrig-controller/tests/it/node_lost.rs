//! A node killed mid-take is shown failed in the take; the others record, stop and
//! download as if nothing happened.

use std::time::Duration;

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn a_node_killed_mid_take_fails_alone() {
    let mut rig = RigBuilder::new().nodes(2).start();
    rig.start_take("lost_node");
    rig.wait_recording(&[0, 1], 10);
    rig.kill_node(1);

    let take = rig.wait_for(
        "node 1 failed in the take",
        Duration::from_secs(15),
        |rig| {
            let t = rig.take("lost_node");
            (t["nodes"][1]["state"] == "failed").then_some(t)
        },
    );
    assert!(
        take["nodes"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped answering"),
        "{take}"
    );
    assert_eq!(take["nodes"][0]["state"], "recording", "{take}");
    let rig_view = rig.get("/api/rig").1;
    assert_eq!(rig_view["nodes"][1]["reachable"], false);
    assert!(rig_view["nodes"][1]["error"].is_string());
    // The survivor keeps recording.
    rig.wait_recording(&[0], 40);

    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["nodes"][0]["state"], "stopped");
    assert_eq!(stopped["nodes"][1]["state"], "failed");

    rig.post("/api/takes/lost_node/download", json!({}));
    let take = rig.wait_for("downloads settled", Duration::from_secs(60), |rig| {
        let t = rig.take("lost_node");
        (t["nodes"][0]["download"] == "verified" && t["nodes"][1]["download"] == "failed")
            .then_some(t)
    });
    assert_eq!(take["download"], "partial");
    assert!(
        take["nodes"][1]["download_reason"]
            .as_str()
            .unwrap()
            .contains(&rig.nodes[1].ip),
        "{take}"
    );
    rig.assert_sorted_like_manifest("lost_node", 0);

    // The node comes back (it recovers its interrupted take) and shows reachable again.
    rig.start_node(1);
    rig.wait_for("node 1 reachable again", Duration::from_secs(30), |rig| {
        (rig.get("/api/rig").1["nodes"][1]["reachable"] == true).then_some(())
    });
    // Its recovered files download too.
    rig.post("/api/takes/lost_node/download", json!({}));
    let take = rig.wait_download("lost_node", "verified");
    assert_eq!(
        take["nodes"][1]["state"], "failed",
        "the take still says the node was lost"
    );
    rig.assert_sorted_like_manifest("lost_node", 1);
}
