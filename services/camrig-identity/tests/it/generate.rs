//! `camrig-identity generate`: the binary as systemd runs it from the generator wrapper,
//! with the three output directories systemd passes.

use crate::{node_identity, run, stderr};

const DROPIN: &str = "camrig-node.service.d/camrig-cameras.conf";

fn generate(identity: &std::path::Path, dirs: &std::path::Path) -> std::process::Output {
    let d = |n: &str| dirs.join(n).to_str().unwrap().to_owned();
    run(&[
        "generate",
        &d("normal"),
        &d("early"),
        &d("late"),
        "--identity",
        identity.to_str().unwrap(),
    ])
}

#[test]
fn camera_node_is_ordered_after_the_coldplug_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("camrig.toml");
    let text = node_identity("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc c@x", "")
        .replace("source = \"synthetic\"", "source = \"libcamera\"");
    std::fs::write(&file, text).unwrap();
    let out = generate(&file, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let dropin = std::fs::read_to_string(dir.path().join("normal").join(DROPIN)).unwrap();
    assert!(
        dropin.contains("After=systemd-udev-trigger.service"),
        "{dropin}"
    );
}

#[test]
fn synthetic_node_or_missing_identity_generates_nothing_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("camrig.toml");
    std::fs::write(
        &file,
        node_identity("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc c@x", ""),
    )
    .unwrap();
    let out = generate(&file, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("normal").join(DROPIN).exists());

    let out = generate(&dir.path().join("absent.toml"), dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!dir.path().join("normal").join(DROPIN).exists());
}
