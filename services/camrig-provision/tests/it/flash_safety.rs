//! `flash`: written and read back on a file target, and refused — for real, on this
//! machine's own devices — wherever it would destroy something in use.

use camrig_provision::block_device::SystemView;

use crate::support::{make_base_image, Rig, SITE};

#[test]
fn a_regular_file_is_refused_unless_allowed_then_written_and_verified() {
    let rig = Rig::with_site(SITE);
    let img = make_base_image(rig.dir.path(), "card.img");
    std::fs::write(rig.path("target.bin"), b"old contents").unwrap();
    let err = rig.run(&["flash", "card.img", "target.bin"]).fails_with(3);
    assert!(
        err.contains("target.bin is a regular file, not a block device"),
        "{err}"
    );
    assert!(err.contains("lsblk"), "{err}");
    assert_eq!(
        std::fs::read(rig.path("target.bin")).unwrap(),
        b"old contents"
    );

    let out = rig
        .run(&["flash", "card.img", "target.bin", "--allow-file"])
        .ok();
    assert!(out.contains("read back and verified"), "{out}");
    assert_eq!(
        std::fs::read(rig.path("target.bin")).unwrap(),
        std::fs::read(&img).unwrap()
    );
    let sum = crate::support::sh("sha256sum", &[img.to_str().unwrap()]);
    assert!(
        out.contains(sum.split_whitespace().next().unwrap()),
        "{out}\n{sum}"
    );
}

/// The block device the running system is on: its root disk's /dev node, or (in a
/// container, whose /dev lacks the host's disks) a node made with mknod for the device a
/// mounted file system comes from. The flag says whether it is the root disk.
fn system_disk(rig: &Rig) -> (String, bool) {
    let system = SystemView::read().unwrap();
    if let Some(root) = system.root_disks.first() {
        let device = format!("/dev/{root}");
        if std::path::Path::new(&device).exists() {
            return (device, true);
        }
    }
    let mount = system
        .mounts
        .iter()
        .find(|m| m.dev.major != 0 && m.source.starts_with("/dev/"))
        .unwrap_or_else(|| {
            panic!("no file system here is mounted from a block device: {system:?}")
        });
    let node = rig.path("mounted-disk");
    crate::support::sh(
        "mknod",
        &[
            node.to_str().unwrap(),
            "b",
            &mount.dev.major.to_string(),
            &mount.dev.minor.to_string(),
        ],
    );
    (node.display().to_string(), false)
}

#[test]
fn the_disk_this_system_runs_from_is_refused() {
    let rig = Rig::with_site(SITE);
    let (device, is_root) = system_disk(&rig);
    make_base_image(rig.dir.path(), "card.img");
    let before = std::fs::metadata(&device).unwrap().modified().ok();
    let err = rig
        .run(&["flash", "card.img", &device, "--yes"])
        .fails_with(3);
    assert!(
        err.contains(&format!("refusing to write {device}")),
        "{err}"
    );
    if is_root {
        assert!(err.contains("the disk this system runs from"), "{err}");
    }
    assert!(
        err.contains("it is mounted") && err.contains(" on /"),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&device).unwrap().modified().ok(), before);

    // Writing an identity onto it is refused the same way.
    let err = rig.write("camrig-node-101", &device).fails_with(3);
    assert!(
        err.contains(&format!("refusing to write {device}")),
        "{err}"
    );
}

#[test]
fn a_character_device_a_compressed_image_and_a_missing_device_are_refused() {
    let rig = Rig::with_site(SITE);
    make_base_image(rig.dir.path(), "card.img");
    let err = rig
        .run(&["flash", "card.img", "/dev/null", "--yes"])
        .fails_with(3);
    assert!(
        err.contains("/dev/null is neither a block device nor a regular file"),
        "{err}"
    );

    std::fs::write(rig.path("card.img.zst"), b"zstd").unwrap();
    let err = rig
        .run(&["flash", "card.img.zst", "/dev/null"])
        .fails_with(1);
    assert!(
        err.contains("is compressed (.zst)") && err.contains("zstd -dk"),
        "{err}"
    );

    let err = rig
        .run(&["flash", "card.img", "/dev/camrig-no-such-card"])
        .fails_with(1);
    assert!(
        err.contains("does not exist; list the cards with `lsblk`"),
        "{err}"
    );
}
