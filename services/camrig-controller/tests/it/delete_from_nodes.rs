//! DELETE FROM NODES through the REST API with two real nodes: refused (409, nothing
//! deleted anywhere) until the take is verified; refused per node when a sorted copy on the
//! controller went missing or changed; otherwise the nodes' copies are gone, the
//! controller's sorted files are intact, and the recorded state survives a restart.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::harness::{Rig, RigBuilder, API_TOKEN};

const TAKE: &str = "del_01";
const PATH: &str = "/api/takes/del_01/delete-from-nodes";

fn on_node(rig: &Rig, i: usize) -> PathBuf {
    rig.nodes[i].data_dir.join("recordings").join(TAKE)
}

fn sorted(rig: &Rig, i: usize) -> PathBuf {
    rig.downloads().join(TAKE).join(&rig.nodes[i].ip)
}

/// A video file of node `i`'s take, as the controller's take view lists it.
fn a_video(take: &Value, i: usize) -> String {
    take["nodes"][i]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .find(|n| n.ends_with(".h264") || n.ends_with(".mjpeg"))
        .expect("a video file")
}

/// Every file the controller verified is in its sorted place with its sha256.
fn assert_sorted_intact(rig: &Rig, take: &Value, i: usize) {
    let files = take["nodes"][i]["files"].as_array().unwrap();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let path = sorted(rig, i).join(f["name"].as_str().unwrap());
        assert_eq!(
            camrig_fs::sha256_file(&path).unwrap().sha256,
            f["sha256"].as_str().unwrap(),
            "{}",
            path.display()
        );
    }
}

/// The data of every SSE event called `name`, from a stream opened now.
fn sse_events(rig: &Rig, name: &str) -> std::sync::mpsc::Receiver<Value> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let resp = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
        .get(rig.url("/api/events"))
        .bearer_auth(API_TOKEN)
        .send()
        .unwrap();
    let want = format!("event: {name}");
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(resp).lines().map_while(Result::ok);
        while let Some(line) = lines.next() {
            if line == want {
                let data = lines.next().unwrap_or_default();
                let json = data.strip_prefix("data: ").unwrap_or_default();
                if tx
                    .send(serde_json::from_str(json).unwrap_or(Value::Null))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

#[test]
fn only_verified_takes_are_deleted_from_nodes_after_checking_the_copies() {
    let mut rig = RigBuilder::new().nodes(2).start();
    rig.start_take(TAKE);
    rig.wait_recording(&[0, 1], 30);
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");

    // Not downloaded: 409, nothing deleted on any node.
    let (status, body) = rig.post(PATH, json!({}));
    assert_eq!(status, 409, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains("download and verify first"), "{e}");
    assert!(on_node(&rig, 0).exists() && on_node(&rig, 1).exists());
    // Bad input: 404 unknown take, 400 bad name, 400 a node with no part in the take.
    assert_eq!(
        rig.post("/api/takes/nope/delete-from-nodes", json!({})).0,
        404
    );
    assert_eq!(
        rig.post("/api/takes/-x/delete-from-nodes", json!({})).0,
        400
    );
    let (status, body) = rig.post(PATH, json!({"nodes": ["10.9.9.9"]}));
    assert_eq!(status, 400, "{body}");

    let (status, body) = rig.post(&format!("/api/takes/{TAKE}/download"), json!({}));
    assert_eq!(status, 202, "{body}");
    let take = rig.wait_download(TAKE, "verified");
    for n in take["nodes"].as_array().unwrap() {
        assert_eq!(n["node_deletion"], "none", "{n}");
    }

    // Node 0's sorted copy lost a file: refused for node 0, with the file named.
    let video = a_video(&take, 0);
    let lost = sorted(&rig, 0).join(&video);
    let aside = sorted(&rig, 0).join("aside.bak");
    std::fs::rename(&lost, &aside).unwrap();
    let (status, body) = rig.post(PATH, json!({"nodes": [rig.nodes[0].ip]}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["nodes"][0]["address"], rig.nodes[0].ip.as_str());
    let e = body["nodes"][0]["error"].as_str().unwrap();
    assert!(e.contains(&video) && e.contains("missing"), "{e}");
    std::fs::rename(&aside, &lost).unwrap();

    // Now one byte of it changed (same size): refused for node 0; node 1 is deleted.
    let good = std::fs::read(&lost).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&lost, &bad).unwrap();
    let (status, body) = rig.post(PATH, json!({}));
    assert_eq!(status, 409, "{body}");
    let failures = body["nodes"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{body}");
    assert_eq!(failures[0]["address"], rig.nodes[0].ip.as_str());
    let e = failures[0]["error"].as_str().unwrap();
    assert!(e.contains(&video) && e.contains("sha256"), "{e}");
    assert!(on_node(&rig, 0).exists(), "node 0 keeps its take");
    assert!(!on_node(&rig, 1).exists(), "node 1's take is deleted");
    let t = rig.take(TAKE);
    assert_eq!(t["nodes"][0]["node_deletion"], "failed", "{t}");
    assert!(t["nodes"][0]["node_deletion_reason"]
        .as_str()
        .unwrap()
        .contains(&video));
    assert_eq!(t["nodes"][1]["node_deletion"], "deleted", "{t}");
    assert!(t["nodes"][1]["node_deleted_ns"].is_i64(), "{t}");
    let (_, listing) = rig.node_get(1, "/v1/takes");
    assert_eq!(listing, json!([]));

    // Repaired: both deleted, announced on the event stream; asking again changes nothing.
    let events = sse_events(&rig, "node_deletion");
    std::fs::write(&lost, &good).unwrap();
    let (status, t) = rig.post(PATH, json!({}));
    assert_eq!(status, 200, "{t}");
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["state"] == "deleted") {
        let e = events
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a node_deletion event");
        seen.push(e);
    }
    assert_eq!(seen[0]["take"], TAKE, "{seen:?}");
    assert_eq!(seen[0]["address"], rig.nodes[0].ip.as_str(), "{seen:?}");
    assert!(!on_node(&rig, 0).exists());
    for i in 0..2 {
        assert_eq!(t["nodes"][i]["node_deletion"], "deleted", "{t}");
        assert_sorted_intact(&rig, &t, i);
    }
    let (status, again) = rig.post(PATH, json!({}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["nodes"], t["nodes"]);
    // Still verified on the controller: nothing to download again.
    assert_eq!(again["download"], "verified");

    // The record survives a controller restart.
    rig.kill_controller();
    rig.start_controller();
    let after = rig.take(TAKE);
    for i in 0..2 {
        assert_eq!(after["nodes"][i]["node_deletion"], "deleted", "{after}");
        assert_eq!(
            after["nodes"][i]["node_deleted_ns"],
            t["nodes"][i]["node_deleted_ns"]
        );
        assert_sorted_intact(&rig, &after, i);
    }
}
