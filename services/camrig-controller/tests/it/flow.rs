//! The whole flow through the REST API with three nodes: START, MARK, STOP, DOWNLOAD & SORT,
//! every sorted file checked against the node's manifest.

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn start_mark_stop_download_verify_and_sort() {
    let rig = RigBuilder::new().nodes(3).start();
    let take = rig.start_take("flow_01");
    assert_eq!(take["name"], "flow_01");
    assert_eq!(take["state"], "recording");
    let start_at = take["start_at_ns"].as_i64().unwrap();
    assert!(take["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["state"] == "armed" || n["state"] == "recording"));
    assert_eq!(rig.get("/api/rig").1["current_take"]["name"], "flow_01");

    rig.wait_recording(&[0, 1, 2], 20);
    let (status, mark) = rig.post("/api/takes/current/mark", json!({ "note": "clap" }));
    assert_eq!(status, 200, "{mark}");
    assert!(
        mark["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["ok"] == true),
        "{mark}"
    );
    let mark_at = mark["at_ns"].as_i64().unwrap();
    assert!(mark_at > start_at);

    // Long enough for a segment cut (2 s segments), so there are several files per node.
    rig.wait_recording(&[0, 1, 2], 75);
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["state"], "stopped");
    assert!(stopped["stop_at_ns"].as_i64().unwrap() > mark_at);
    for n in stopped["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "stopped", "{n}");
        assert!(
            n["offset_start_ns"].is_i64() && n["offset_stop_ns"].is_i64(),
            "{n}"
        );
    }
    assert!(rig.get("/api/rig").1["current_take"].is_null());

    let (status, started) = rig.post("/api/takes/flow_01/download", json!({}));
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["jobs"].as_array().unwrap().len(), 3);
    let take = rig.wait_download("flow_01", "verified");
    for (i, n) in take["nodes"].as_array().unwrap().iter().enumerate() {
        assert_eq!(n["download"], "verified", "{n}");
        assert!(
            n["files"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["state"] == "verified"),
            "{n}"
        );
        rig.assert_sorted_like_manifest("flow_01", i);
    }
    // The marker reached every node's markers file.
    let manifest = rig.node_manifest(0, "flow_01");
    assert_eq!(manifest.markers.len(), 1);
    assert_eq!(manifest.markers[0].at_ns, mark_at);
    assert_eq!(manifest.markers[0].note, "clap");
    let markers = manifest
        .files
        .iter()
        .find(|f| f.name.ends_with("_markers.txt"))
        .expect("markers file listed");
    let text = std::fs::read_to_string(
        rig.downloads()
            .join("flow_01")
            .join(&rig.nodes[0].ip)
            .join(&markers.name),
    )
    .unwrap();
    assert!(text.contains("clap"), "{text}");
    assert!(!rig.downloads().join(".staging").join("flow_01").exists());

    // Nothing left to download: asking again starts no job and changes nothing.
    let (status, again) = rig.post("/api/downloads", json!({}));
    assert_eq!(status, 202);
    assert!(again["jobs"].as_array().unwrap().is_empty(), "{again}");
    let (_, downloads) = rig.get("/api/downloads");
    assert!(downloads["pending_takes"].as_array().unwrap().is_empty());

    // A second take downloads through "every take not yet downloaded".
    rig.start_take("flow_02");
    rig.wait_recording(&[0, 1, 2], 10);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    let (status, all) = rig.post("/api/downloads", json!({}));
    assert_eq!(status, 202);
    assert_eq!(all["pending_takes"], json!(["flow_02"]));
    rig.wait_download("flow_02", "verified");
    for i in 0..3 {
        rig.assert_sorted_like_manifest("flow_02", i);
    }
    assert_eq!(rig.take_names(), ["flow_02", "flow_01"]);
}
