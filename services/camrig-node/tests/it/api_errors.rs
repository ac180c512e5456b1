//! Every refusal answers with the right status and a JSON error, and writes nothing.

use std::time::Duration;

use camrig_protocol::take_name::RULE;
use serde_json::json;

use crate::harness::{now_ns, tree, Node, TOKEN};

#[test]
fn refusals_write_nothing() {
    let node = Node::builder().codec("mjpeg").start();
    let url = format!("{}/v1/takes/start", node.base);
    let start = |take: &str| json!({"take": take, "start_at_ns": now_ns() + 30_000_000_000i64, "command_id": format!("c-{take}")});

    // 401: no token, wrong token.
    let r = node.http.post(&url).json(&start("x")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().unwrap().contains("Bearer"));
    let r = node
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&start("x"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = node
        .http
        .get(format!("{}/v1/status", node.base))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // 400: bad take names, with the rule.
    for bad in ["../x", ".hidden", "a b", "", &"x".repeat(65)] {
        let (code, body) = node.post("/v1/takes/start", start(bad));
        assert_eq!(code, 400, "{bad:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(RULE), "{body}");
    }
    let (code, body) = node.post("/v1/takes/start", json!({"take": "t"}));
    assert_eq!(code, 400, "{body}");

    // 413: body over 64 KiB.
    let big = json!({"take": "t", "start_at_ns": 0, "command_id": "x".repeat(70_000)});
    let r = node
        .http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&big)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text().unwrap().contains("65536"));

    // 409: nothing to stop.
    let (code, _) = node.post(
        "/v1/takes/stop",
        json!({"stop_at_ns": now_ns(), "command_id": "s0"}),
    );
    assert_eq!(code, 409);
    assert!(
        tree(&node.recordings()).is_empty(),
        "{:?}",
        tree(&node.recordings())
    );

    // 409: an existing take directory is never reused.
    std::fs::create_dir_all(node.recordings().join("old")).unwrap();
    std::fs::write(node.recordings().join("old/keep.txt"), "precious").unwrap();
    let (code, body) = node.post("/v1/takes/start", start("old"));
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already exists"));
    assert_eq!(tree(&node.recordings()), vec!["old", "old/keep.txt"]);

    // 409: START while armed names the current take.
    let (code, _) = node.post("/v1/takes/start", start("t1"));
    assert_eq!(code, 200);
    let (code, body) = node.post("/v1/takes/start", start("t2"));
    assert_eq!(code, 409);
    assert!(body["error"].as_str().unwrap().contains("t1"), "{body}");
    assert!(!node.recordings().join("t2").exists());
    let (code, _) = node.post("/v1/takes/abort", json!({"command_id": "ab"}));
    assert_eq!(code, 200);
    node.wait_idle(Duration::from_secs(10));
}

#[test]
fn start_below_the_free_space_floor_is_507() {
    let node = Node::builder().recording("min_free_mb = 100000000").start();
    let (code, body) = node.post(
        "/v1/takes/start",
        json!({"take": "t1", "start_at_ns": now_ns(), "command_id": "c1"}),
    );
    assert_eq!(code, 507, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("free") && msg.contains("needed"), "{msg}");
    assert!(tree(&node.recordings()).is_empty());
}

#[test]
fn a_node_without_camera_says_so_and_refuses_start() {
    let node = Node::builder().libcamera().start();
    let s = node.status();
    assert!(s.cameras.is_empty());
    assert!(
        s.problem.as_deref().unwrap().contains("no camera found"),
        "{s:?}"
    );
    let (code, body) = node.post(
        "/v1/takes/start",
        json!({"take": "t1", "start_at_ns": now_ns(), "command_id": "c1"}),
    );
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no camera found"));
    assert!(tree(&node.recordings()).is_empty());
}

#[test]
fn time_and_preview() {
    let node = Node::builder().cameras(2).size(640, 480).start();
    let before = now_ns();
    let t: camrig_protocol::api::TimeReply = node.get("/v1/time").json().unwrap();
    assert!(t.receive_ns >= before && t.send_ns >= t.receive_ns && t.send_ns <= now_ns());
    node.wait_status("frames", Duration::from_secs(10), |s| {
        s.cameras.iter().all(|c| c.frames > 0)
    });
    for n in 1..=2 {
        let r = node.get(&format!("/v1/cameras/{n}/preview.jpg"));
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        let bytes = r.bytes().unwrap();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
    }
    assert_eq!(node.get("/v1/cameras/3/preview.jpg").status().as_u16(), 404);
    assert_eq!(node.get("/v1/cameras/0/preview.jpg").status().as_u16(), 404);
}

#[test]
fn racing_starts_arm_exactly_one_take() {
    let node = Node::builder().codec("mjpeg").start();
    let start_at = now_ns() + 60_000_000_000i64;
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let node = &node;
                s.spawn(move || {
                    node.post(
                        "/v1/takes/start",
                        json!({"take": format!("race{i}"), "start_at_ns": start_at, "command_id": format!("r{i}")}),
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 409).count(), 5, "{codes:?}");
    assert_eq!(
        tree(&node.recordings())
            .iter()
            .filter(|n| !n.contains('/'))
            .count(),
        1
    );
    node.post("/v1/takes/abort", json!({"command_id": "ab"}));
    node.wait_idle(Duration::from_secs(10));
}

#[test]
fn start_instants_outside_the_sane_window_are_refused() {
    let node = Node::builder().codec("mjpeg").start();
    let now = now_ns();
    for (at, says) in [
        (0, "in the past"),
        (i64::MIN, "in the past"),
        (now - 60_000_000_000, "in the past"),
        (i64::MAX, "recording.max_start_lead_ms"),
        (now + 3_600_000_000_000, "recording.max_start_lead_ms"),
    ] {
        let (code, body) = node.post(
            "/v1/takes/start",
            json!({"take": "t1", "start_at_ns": at, "command_id": format!("w{at}")}),
        );
        assert_eq!(code, 400, "{at}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(says) && msg.contains("start_at_ns"), "{msg}");
    }
    assert!(tree(&node.recordings()).is_empty());
    assert_eq!(node.status().state, camrig_protocol::api::NodeState::Idle);
    // A START delayed on the way (its instant just passed) still arms.
    let (code, body) = node.post(
        "/v1/takes/start",
        json!({"take": "t1", "start_at_ns": now_ns() - 1_000_000_000, "command_id": "late"}),
    );
    assert_eq!(code, 200, "{body}");
    node.post("/v1/takes/abort", json!({"command_id": "ab"}));
    node.wait_idle(Duration::from_secs(10));
}

#[test]
fn a_command_id_reused_for_another_verb_is_refused() {
    let node = Node::builder().codec("mjpeg").start();
    let start =
        json!({"take": "t1", "start_at_ns": now_ns() + 20_000_000_000i64, "command_id": "same"});
    assert_eq!(node.post("/v1/takes/start", start.clone()).0, 200);
    // The same START again is answered as before (idempotent).
    assert_eq!(node.post("/v1/takes/start", start).0, 200);
    for (path, body) in [
        (
            "/v1/takes/stop",
            json!({"stop_at_ns": now_ns(), "command_id": "same"}),
        ),
        ("/v1/takes/abort", json!({"command_id": "same"})),
        (
            "/v1/takes/mark",
            json!({"at_ns": now_ns(), "note": "", "command_id": "same"}),
        ),
    ] {
        let (code, reply) = node.post(path, body);
        assert_eq!(code, 409, "{path}: {reply}");
        let msg = reply["error"].as_str().unwrap();
        assert!(msg.contains("already used for START"), "{msg}");
    }
    // Nothing was stopped or aborted by them.
    let s = node.status();
    assert_eq!(s.state, camrig_protocol::api::NodeState::Armed, "{s:?}");
    assert_eq!(s.stop_at_ns, None);
    node.post("/v1/takes/abort", json!({"command_id": "ab"}));
    node.wait_idle(Duration::from_secs(10));
}

#[test]
fn a_stop_before_the_start_instant_cancels_the_take() {
    let node = Node::builder().codec("mjpeg").start();
    let start_at = now_ns() + 2_000_000_000;
    let (code, _) = node.post(
        "/v1/takes/start",
        json!({"take": "early", "start_at_ns": start_at, "command_id": "c1"}),
    );
    assert_eq!(code, 200);
    let (code, body) = node.post(
        "/v1/takes/stop",
        json!({"stop_at_ns": start_at - 300_000_000, "command_id": "s1"}),
    );
    assert_eq!(code, 200, "{body}");
    node.wait_idle(Duration::from_secs(10));
    // Past the instant: the node did not start recording after all.
    std::thread::sleep(Duration::from_millis(2500));
    let s = node.status();
    assert_eq!(s.state, camrig_protocol::api::NodeState::Idle, "{s:?}");
    assert!(
        !node.recordings().join("early").exists(),
        "{:?}",
        tree(&node.recordings())
    );
}

#[test]
fn wrong_methods_and_paths_get_json_errors() {
    let node = Node::builder().codec("mjpeg").start();
    for (method, path, status) in [
        ("PUT", "/v1/takes/start", 405),
        ("GET", "/v1/takes/stop", 405),
        ("DELETE", "/v1/status", 405),
        ("GET", "/v1/nothing", 404),
    ] {
        let r = node
            .http
            .request(method.parse().unwrap(), format!("{}{path}", node.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let body: serde_json::Value = r.json().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}
