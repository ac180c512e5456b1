//! Downloads over a real sshd with the provisioned key and known_hosts; a host key that
//! does not match known_hosts fails the download with a message naming the node and the
//! known_hosts file, and nothing is sorted.

use serde_json::json;

use crate::harness::RigBuilder;

#[test]
fn download_over_ssh_and_refuse_an_unknown_host_key() {
    let rig = RigBuilder::new().nodes(2).via_ssh().start();
    rig.start_take("ssh_01");
    rig.wait_recording(&[0, 1], 40);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.post("/api/takes/ssh_01/download", json!({}));
    rig.wait_download("ssh_01", "verified");
    for i in 0..2 {
        rig.assert_sorted_like_manifest("ssh_01", i);
    }

    rig.sshd.as_ref().unwrap().break_known_hosts();
    rig.start_take("ssh_02");
    rig.wait_recording(&[0, 1], 10);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.post("/api/takes/ssh_02/download", json!({}));
    let take = rig.wait_download("ssh_02", "failed");
    let reason = take["nodes"][0]["download_reason"].as_str().unwrap();
    assert!(
        reason.contains("host key") && reason.contains(&rig.nodes[0].ip),
        "{reason}"
    );
    assert!(reason.contains("known_hosts"), "{reason}");
    for f in take["nodes"][0]["files"].as_array().unwrap() {
        assert_eq!(f["state"], "failed", "{f}");
    }
    let sorted = rig.downloads().join("ssh_02").join(&rig.nodes[0].ip);
    assert_eq!(
        std::fs::read_dir(&sorted).map(|d| d.count()).unwrap_or(0),
        0
    );
}
