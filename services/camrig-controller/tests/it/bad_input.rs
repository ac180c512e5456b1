//! Every bad request is answered 4xx with a JSON error, and changes nothing: not the
//! controller's takes, not the nodes' recordings, not the downloads.

use serde_json::{json, Value};

use crate::harness::{Rig, RigBuilder, API_TOKEN};

/// What must not change: the controller's take list, each node's takes and state, and the
/// downloads directory.
fn snapshot(rig: &Rig) -> (Value, Vec<Value>, Vec<Value>, Vec<String>) {
    let takes = rig.get("/api/takes").1;
    let node_takes = (0..rig.nodes.len())
        .map(|i| rig.node_get(i, "/v1/takes").1)
        .collect();
    let node_states = (0..rig.nodes.len())
        .map(|i| {
            let s = rig.node_get(i, "/v1/status").1;
            json!([s["state"], s["take"]])
        })
        .collect();
    let mut downloads: Vec<String> = std::fs::read_dir(rig.downloads())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    downloads.sort();
    (takes, node_takes, node_states, downloads)
}

#[track_caller]
fn refused(got: (u16, Value), status: u16, says: &str) {
    let (code, body) = got;
    assert_eq!(code, status, "{body}");
    let msg = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("JSON error body: {body}"));
    assert!(msg.contains(says), "{msg:?} should contain {says:?}");
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let rig = RigBuilder::new().nodes(2).start();
    // One finished take, so name reuse and downloads have something to collide with.
    rig.start_take("done_01");
    rig.wait_recording(&[0, 1], 5);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.wait_for("nodes idle", std::time::Duration::from_secs(20), |rig| {
        (0..2)
            .all(|i| rig.node_get(i, "/v1/status").1["state"] == "idle")
            .then_some(())
    });

    let before = snapshot(&rig);
    let rule = "1-64 characters";
    for name in [
        "",
        "a/b",
        "../etc",
        "-rf",
        ".hidden",
        "tak e",
        "naïve",
        &"x".repeat(65),
    ] {
        refused(rig.post("/api/takes", json!({ "name": name })), 400, rule);
    }
    refused(
        rig.post("/api/takes", json!({ "name": 5 })),
        400,
        "bad JSON",
    );
    refused(
        rig.post("/api/takes", json!({ "nme": "x" })),
        400,
        "bad JSON",
    );
    refused(
        rig.post("/api/takes", json!({ "name": "x", "force": true })),
        400,
        "force",
    );
    refused(
        rig.post_raw("/api/takes", "application/json", b"{\"name\":".to_vec()),
        400,
        "bad JSON",
    );
    refused(
        rig.post_raw("/api/takes", "text/plain", b"{\"name\":\"t\"}".to_vec()),
        415,
        "Content-Type",
    );
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    refused(
        rig.post_raw("/api/takes", "application/json", huge.into_bytes()),
        413,
        "larger than",
    );
    refused(
        rig.post("/api/takes", json!({ "name": "done_01" })),
        409,
        "already used",
    );
    refused(
        rig.post("/api/takes/current/mark", json!({ "note": "x" })),
        409,
        "no take is recording",
    );
    refused(
        rig.post("/api/takes/current/stop", json!({})),
        409,
        "no take is recording",
    );
    refused(rig.get("/api/takes/nope"), 404, "no take named");
    refused(rig.get("/api/takes/..hidden"), 400, rule);
    refused(
        rig.post("/api/takes/nope/download", json!({})),
        404,
        "no take named",
    );
    refused(rig.post("/api/takes/-x/download", json!({})), 400, rule);
    refused(
        rig.get("/api/nodes/9/cameras/1/preview.jpg"),
        404,
        "no node 9",
    );
    refused(
        rig.get("/api/nodes/0/cameras/0/preview.jpg"),
        404,
        "numbered from 1",
    );
    refused(rig.get("/api/nodes/0/cameras/3/preview.jpg"), 404, "camera");
    refused(
        rig.get("/api/nodes/x/cameras/1/preview.jpg"),
        400,
        "numbers",
    );
    refused(rig.get("/api/nothing"), 404, "no such API endpoint");
    assert_eq!(snapshot(&rig), before);

    // While a take records: a second START (any name) and a MARK note too long.
    rig.start_take("live_01");
    rig.wait_recording(&[0, 1], 1);
    // Segments close while recording, so only the states are compared now.
    let during = |rig: &Rig| {
        let (takes, _, states, downloads) = snapshot(rig);
        (takes, states, downloads)
    };
    let before_live = during(&rig);
    refused(
        rig.post("/api/takes", json!({ "name": "other" })),
        409,
        "live_01",
    );
    refused(
        rig.post("/api/takes", json!({ "name": "live_01" })),
        409,
        "live_01",
    );
    refused(
        rig.post(
            "/api/takes/current/mark",
            json!({ "note": "n".repeat(501) }),
        ),
        400,
        "at most 500",
    );
    refused(
        rig.post("/api/takes/live_01/download", json!({})),
        409,
        "still recording",
    );
    assert_eq!(during(&rig), before_live);
    assert!(rig.take("live_01")["markers"]
        .as_array()
        .unwrap()
        .is_empty());

    // The preview proxy works for a real camera, without the browser knowing the token.
    let r = rig
        .http
        .get(rig.url("/api/nodes/0/cameras/1/preview.jpg"))
        .bearer_auth(API_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(&r.bytes().unwrap()[..2], &[0xff, 0xd8]);
}
