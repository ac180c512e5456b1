//! Per-card images and identities written onto flashed cards, all without mounting: read
//! back with mtools and checked with the identity crate.

use camrig_identity::Role;

use crate::support::{make_base_image, mtype, Rig, BASE_CONFIG_TXT, BOOT_OFFSET, SITE};

#[test]
fn build_makes_a_finished_image_per_card_readable_with_mtype() {
    let rig = Rig::with_site(SITE);
    let node_base = make_base_image(rig.dir.path(), "node-base.img");
    let ctl_base = make_base_image(rig.dir.path(), "controller-base.img");
    let base_bytes = std::fs::read(&node_base).unwrap();
    let out = rig
        .build(&[
            "--node-image",
            node_base.to_str().unwrap(),
            "--controller-image",
            ctl_base.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(out.matches(".img\n").count(), 3, "{out}");

    for (name, role, ip) in [
        ("camrig-controller", Role::Controller, "192.168.1.10/24"),
        ("camrig-node-101", Role::Node, "192.168.1.101/24"),
        ("camrig-node-102", Role::Node, "192.168.1.102/24"),
    ] {
        let img = rig.out().join(format!("{name}.img"));
        let text = mtype(&img, "camrig.toml");
        let id = camrig_identity::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!((id.hostname.as_str(), id.role), (name, role));
        assert_eq!(id.network.address.to_string(), ip);
        assert!(
            id.ssh.host_key.is_some(),
            "{name} has no provisioned host key"
        );
        // The card's file and the image's are the same text.
        let file = std::fs::read_to_string(rig.out().join(name).join("camrig.toml")).unwrap();
        assert_eq!(file, text);
        // The rest of the boot partition is the base image's.
        assert_eq!(mtype(&img, "config.txt"), BASE_CONFIG_TXT);
        // The wiring include is the card's (none here: the firmware auto-detects).
        let cameras = mtype(&img, "camrig-cameras.txt");
        assert!(cameras.contains(name), "{cameras}");
        assert!(!cameras.contains("dtoverlay"), "{cameras}");
    }
    let ctl = camrig_identity::parse(&mtype(
        &rig.out().join("camrig-controller.img"),
        "camrig.toml",
    ))
    .unwrap();
    let settings = ctl.controller.unwrap();
    assert_eq!(settings.nodes.len(), 2);
    assert_eq!(ctl.ssh.known_hosts.len(), 2);
    let node = camrig_identity::parse(&mtype(
        &rig.out().join("camrig-node-102.img"),
        "camrig.toml",
    ))
    .unwrap();
    let camera = node.node.unwrap().camera.unwrap();
    assert_eq!(camera.count, 2);
    assert_eq!(
        camera.source,
        camrig_identity::identity::CameraSource::Synthetic
    );
    // The controller's key is the one each node accepts.
    let ctl_pub =
        std::fs::read_to_string(rig.state().join("controller-key/id_ed25519.pub")).unwrap();
    assert_eq!(node.ssh.controller_key.as_deref(), Some(ctl_pub.trim()));

    assert_eq!(
        std::fs::read(&node_base).unwrap(),
        base_bytes,
        "the base image was modified"
    );
    assert!(!rig.out().join("camrig-node-101.img.partial").exists());
}

#[test]
fn only_builds_the_named_cards_and_a_missing_base_image_writes_nothing() {
    let rig = Rig::with_site(SITE);
    let err = rig.build(&["--node-image", "missing.img"]).fails_with(1);
    assert!(
        err.contains("base image missing.img does not exist"),
        "{err}"
    );
    assert!(err.contains("image/build --role node"), "{err}");
    assert!(!rig.state().exists());

    let base = make_base_image(rig.dir.path(), "node-base.img");
    rig.build(&[
        "--node-image",
        base.to_str().unwrap(),
        "--only",
        "camrig-node-102",
    ])
    .ok();
    let mut made: Vec<String> = std::fs::read_dir(rig.out())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["camrig-node-102", "camrig-node-102.img"]);
    let mut card_files: Vec<String> = std::fs::read_dir(rig.out().join("camrig-node-102"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    card_files.sort();
    assert_eq!(card_files, ["camrig-cameras.txt", "camrig.toml"]);
    assert_eq!(crate::support::mode(&rig.out()), 0o700);
}

#[test]
fn write_puts_the_identity_onto_a_flashed_image_and_says_what_it_replaced() {
    let rig = Rig::with_site(SITE);
    let card = make_base_image(rig.dir.path(), "card.img");
    let out = rig.write("camrig-node-101", "card.img").ok();
    assert!(
        out.contains(&format!(
            "card.img::/camrig.toml (FAT at byte {BOOT_OFFSET})"
        )),
        "{out}"
    );
    let id = camrig_identity::parse(&mtype(&card, "camrig.toml")).unwrap();
    assert_eq!(id.hostname, "camrig-node-101");

    // Re-purposing the card: the new identity replaces the old, and the tool says so.
    let out = rig.write("camrig-node-102", "card.img").ok();
    assert!(
        out.contains("replaced the identity of camrig-node-101"),
        "{out}"
    );
    let id = camrig_identity::parse(&mtype(&card, "camrig.toml")).unwrap();
    assert_eq!(id.hostname, "camrig-node-102");
    assert_eq!(mtype(&card, "config.txt"), BASE_CONFIG_TXT);
}

#[test]
fn write_into_a_mounted_boot_directory_is_atomic_and_private() {
    let rig = Rig::with_site(SITE);
    let boot = rig.path("boot");
    std::fs::create_dir(&boot).unwrap();
    rig.write("camrig-controller", "boot").ok();
    let text = std::fs::read_to_string(boot.join("camrig.toml")).unwrap();
    assert_eq!(
        camrig_identity::parse(&text).unwrap().role,
        Role::Controller
    );
    assert_eq!(crate::support::mode(&boot.join("camrig.toml")), 0o600);
    let mut files: Vec<String> = std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["camrig-cameras.txt", "camrig.toml"],
        "a temporary file was left"
    );
}

#[test]
fn write_refuses_an_image_without_a_fat_partition_and_an_unknown_device() {
    let rig = Rig::with_site(SITE);
    std::fs::write(rig.path("blank.img"), vec![0u8; 1 << 20]).unwrap();
    let err = rig.write("camrig-node-101", "blank.img").fails_with(1);
    assert!(err.contains("blank.img"), "{err}");
    let err = rig.write("camrig-node-9", "blank.img").fails_with(2);
    assert!(err.contains("no device named 'camrig-node-9'"), "{err}");
    assert!(err.contains("camrig-node-101"), "{err}");
}

/// Two CSI cameras on a Pi 5 or Compute Module: the site's wiring.
const WIRED_SITE_NODE: &str = r#"
[[node]]
name = "camrig-node-103"
address = "192.168.1.103"
[node.camera]
source = "libcamera"
[[node.camera_wiring]]
sensor = "imx219"
port = 1
[[node.camera_wiring]]
sensor = "imx477"
port = 0
"#;

/// The non-comment lines of a wiring include.
fn settings(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn camera_wiring_reaches_the_cards_boot_partition_and_the_nodes_config() {
    let rig = Rig::with_site(&format!("{SITE}{WIRED_SITE_NODE}"));
    let base = make_base_image(rig.dir.path(), "node-base.img");
    rig.build(&[
        "--node-image",
        base.to_str().unwrap(),
        "--only",
        "camrig-node-103",
    ])
    .ok();
    let img = rig.out().join("camrig-node-103.img");
    // Read back from the card: the firmware's lines, cam1 being port 0's camera.
    let cameras = mtype(&img, "camrig-cameras.txt");
    assert_eq!(
        settings(&cameras),
        [
            "[all]",
            "camera_auto_detect=0",
            "dtoverlay=imx477,cam0",
            "dtoverlay=imx219"
        ],
        "{cameras}"
    );
    assert!(cameras.contains("# cam1: imx477 on port 0"), "{cameras}");
    assert_eq!(mtype(&img, "config.txt"), BASE_CONFIG_TXT);
    assert_eq!(
        std::fs::read_to_string(rig.out().join("camrig-node-103/camrig-cameras.txt")).unwrap(),
        cameras
    );
    // The node's config, as camrig-identity renders it at boot from the card's camrig.toml,
    // selects the cameras in the same order.
    let id = camrig_identity::parse(&mtype(&img, "camrig.toml")).unwrap();
    let config = camrig_identity::render::node_config(&id);
    config.validate().unwrap();
    assert_eq!(config.camera.count, 2);
    assert_eq!(config.camera.select, ["imx477:port0", "imx219:port1"]);
    assert_eq!(
        config.camera.source,
        camrig_identity::identity::CameraSource::Libcamera
    );
}

#[test]
fn re_provisioning_a_card_replaces_its_wiring() {
    let rig = Rig::with_site(&format!("{SITE}{WIRED_SITE_NODE}"));
    let card = make_base_image(rig.dir.path(), "card.img");
    let write = |device: &str| rig.write(device, "card.img").ok();
    write("camrig-node-103");
    assert!(settings(&mtype(&card, "camrig-cameras.txt")).contains(&"dtoverlay=imx477,cam0"));
    // The card becomes a node without wiring: its overlays go with the old identity.
    let out = write("camrig-node-101");
    assert!(
        out.contains("replaced the identity of camrig-node-103"),
        "{out}"
    );
    let cameras = mtype(&card, "camrig-cameras.txt");
    assert!(settings(&cameras).is_empty(), "{cameras}");
    assert!(cameras.contains("camera_auto_detect=1"), "{cameras}");

    // The same into a mounted boot directory.
    let boot = rig.path("boot");
    std::fs::create_dir(&boot).unwrap();
    for device in ["camrig-node-103", "camrig-node-102"] {
        rig.write(device, "boot").ok();
        let cameras = std::fs::read_to_string(boot.join("camrig-cameras.txt")).unwrap();
        assert_eq!(
            cameras.contains("dtoverlay="),
            device == "camrig-node-103",
            "{device}: {cameras}"
        );
    }
}
