//! VERIFY: a damaged or deleted sorted copy turns the take back to not verified, and
//! DOWNLOAD fetches exactly those files again (no dead end where the take still shows
//! verified and DOWNLOAD does nothing).

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn verify_finds_damaged_and_missing_copies_and_download_fetches_them_again() {
    let rig = RigBuilder::new().nodes(2).start();
    rig.start_take("ver_01");
    rig.wait_recording(&[0, 1], 20);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.post("/api/takes/ver_01/download", json!({}));
    rig.wait_download("ver_01", "verified");

    let (status, v) = rig.post("/api/takes/ver_01/verify", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["files_checked"].as_u64().unwrap() >= 8, "{v}");

    let video = |i: usize| {
        rig.node_manifest(i, "ver_01")
            .files
            .iter()
            .find(|f| f.name.ends_with(".h264"))
            .unwrap()
            .name
            .clone()
    };
    let (damaged, missing) = (video(0), video(1));
    let sorted = |i: usize| rig.downloads().join("ver_01").join(&rig.nodes[i].ip);
    let path = sorted(0).join(&damaged);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(sorted(1).join(&missing)).unwrap();

    let (status, v) = rig.post("/api/takes/ver_01/verify", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{v}");
    assert!(
        failed
            .iter()
            .any(|f| f["name"] == damaged.as_str()
                && f["reason"].as_str().unwrap().contains("sha256"))
    );
    assert!(failed.iter().any(
        |f| f["name"] == missing.as_str() && f["reason"].as_str().unwrap().contains("missing")
    ));
    let take = &v["take"];
    assert_ne!(take["download"], "verified", "{take}");
    for i in 0..2 {
        assert_eq!(take["nodes"][i]["download"], "failed", "{take}");
    }
    // The damaged copy is kept aside, never deleted.
    let aside = rig
        .downloads()
        .join(".damaged/ver_01")
        .join(&rig.nodes[0].ip);
    let kept: Vec<_> = std::fs::read_dir(&aside).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(kept[0].path()).unwrap(), bytes);
    // Not verified any more: DELETE FROM NODES refuses.
    assert_eq!(
        rig.post("/api/takes/ver_01/delete-from-nodes", json!({})).0,
        409
    );

    // DOWNLOAD fetches exactly those two files again.
    let (status, jobs) = rig.post("/api/takes/ver_01/download", json!({}));
    assert_eq!(status, 202, "{jobs}");
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2, "{jobs}");
    rig.wait_download("ver_01", "verified");
    for i in 0..2 {
        rig.assert_sorted_like_manifest("ver_01", i);
    }
    let (status, v) = rig.post("/api/takes/ver_01/verify", json!({}));
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true, "{v}");

    // Bad input: unknown take, a take still recording.
    assert_eq!(rig.post("/api/takes/nope/verify", json!({})).0, 404);
    rig.start_take("ver_02");
    let (status, v) = rig.post("/api/takes/ver_02/verify", json!({}));
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not stopped"), "{v}");
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
}
