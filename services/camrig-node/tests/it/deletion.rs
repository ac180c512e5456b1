//! `DELETE /v1/takes/{take}`: refused while the take is live, for a wrong token, an unknown
//! take, a file list that is not exactly the manifest or a file the manifest does not
//! know; otherwise the take is gone as a whole, and asking again gives the same answer,
//! also after a restart. A deletion a crash interrupted is finished at the next start.

use std::time::Duration;

use camrig_protocol::api::{DeleteTakeReply, NodeState};
use serde_json::{json, Value};

use crate::harness::{tree, Node, TOKEN};

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("{body}"))
}

#[test]
fn delete_refuses_every_mistake_then_deletes_once() {
    let mut node = Node::builder().codec("mjpeg").start();
    let start_at = node.start_take("t1", Duration::from_millis(500));
    let none = json!({"files": []});

    // Armed or recording: 409, and the take keeps recording.
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", none.clone());
    assert_eq!(code, 409, "{body}");
    assert!(
        error(&body).contains("take t1 is armed") || error(&body).contains("take t1 is recording"),
        "{body}"
    );
    node.wait_status("recording", Duration::from_secs(10), |s| {
        s.state == NodeState::Recording
    });
    node.stop_take("t1", start_at + 1_500_000_000);
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", none.clone());
    assert_eq!(code, 409, "{body}");
    assert!(error(&body).contains("take t1 is stopping"), "{body}");
    node.wait_idle(Duration::from_secs(20));

    let manifest = node.manifest("t1");
    let dir = node.recordings().join("t1");
    let before = tree(&dir);
    assert!(manifest.files.len() >= 3, "{:?}", manifest.files);
    let files = serde_json::to_value(&manifest.files).unwrap();

    // Wrong or missing token: 401.
    let (code, body) = node.delete_as("nope", "/v1/takes/t1", json!({ "files": files }));
    assert_eq!(code, 401, "{body}");
    let r = node
        .http
        .delete(format!("{}/v1/takes/t1", node.base))
        .json(&json!({ "files": files }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Unknown take: 404; bad name: 400; no body: 400.
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t9", json!({ "files": files }));
    assert_eq!(code, 404, "{body}");
    assert!(error(&body).contains("t9"), "{body}");
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/.t1", json!({ "files": files }));
    assert_eq!(code, 400, "{body}");
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({}));
    assert_eq!(code, 400, "{body}");

    // One sha256 differs: 409 naming the file.
    let mut wrong = manifest.files.clone();
    wrong[1].sha256 = "0".repeat(64);
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": wrong }));
    assert_eq!(code, 409, "{body}");
    assert!(error(&body).contains(&wrong[1].name), "{body}");
    assert!(error(&body).contains("sha256"), "{body}");
    // One file missing from the list: 409 naming it.
    let short = &manifest.files[1..];
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": short }));
    assert_eq!(code, 409, "{body}");
    assert!(error(&body).contains(&manifest.files[0].name), "{body}");
    // A file on disk the manifest does not list: 409, it could not have been verified.
    std::fs::write(dir.join("notes.txt"), b"keep me").unwrap();
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": files }));
    assert_eq!(code, 409, "{body}");
    assert!(error(&body).contains("notes.txt"), "{body}");
    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    assert_eq!(tree(&dir), before, "nothing was deleted by a refusal");

    // The exact list: deleted as a whole, nothing hidden left but the tombstone.
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": files }));
    assert_eq!(code, 200, "{body}");
    let first: DeleteTakeReply = serde_json::from_value(body).unwrap();
    assert!(!first.already_deleted);
    assert_eq!(
        first.files,
        manifest.files.len() + 1,
        "files and the manifest"
    );
    assert!(!dir.exists());
    let mut left: Vec<String> = std::fs::read_dir(node.recordings())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // The tombstones, and the next take's directory made ahead (empty but for its reserve).
    assert_eq!(left, vec![".deleted".to_owned(), ".next-take".to_owned()]);
    let listing: Value = node.get("/v1/takes").json().unwrap();
    assert_eq!(listing, json!([]));
    assert_eq!(node.get("/v1/takes/t1/manifest").status().as_u16(), 404);

    // Again, and again after a restart: the same answer, nothing else changes.
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": files }));
    assert_eq!(code, 200, "{body}");
    let again: DeleteTakeReply = serde_json::from_value(body).unwrap();
    assert!(again.already_deleted);
    assert_eq!(again.deleted_at_ns, first.deleted_at_ns);

    // A crash after the rename left a `.deleting` directory: finished at the next start,
    // and never listed as a take meanwhile.
    let leftover = node.recordings().join(".t7.deleting");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("t7_x_manifest.json"), b"{}").unwrap();
    let listing: Value = node.get("/v1/takes").json().unwrap();
    assert_eq!(listing, json!([]));
    node.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));
    node.restart();
    assert!(!leftover.exists(), "{}", node.log_text());
    let (code, body) = node.delete_as(TOKEN, "/v1/takes/t1", json!({ "files": [] }));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["already_deleted"], json!(true));
}
