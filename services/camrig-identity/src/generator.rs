//! The systemd generator: unit ordering that depends on this card's camrig.toml, decided
//! before systemd builds the boot transaction (generators run when PID 1 starts; the
//! initramfs has already mounted the boot partition).
//!
//! camrig-node starts without waiting for udev's coldplug, so a synthetic node is READY
//! seconds sooner. A node with libcamera cameras must not start before that coldplug has
//! been *triggered*: the sensor and receiver drivers, and the video group on its devices,
//! come with it, and the node's `udevadm settle` can only wait for events already queued.
//! For such a card the generator orders camrig-node after `systemd-udev-trigger.service`.
//! An unreadable or invalid camrig.toml generates nothing: camrig-identity's own unit then
//! reports it, and the services do not start.

use std::io;
use std::path::{Path, PathBuf};

use crate::identity::{CameraSource, Identity, Role};

/// camrig-node after udev's coldplug trigger, for a node with libcamera cameras.
const CAMERAS_DROPIN: &str = concat!(
    "# Written by camrig-identity's generator from camrig.toml: this card's node records\n",
    "# from libcamera cameras, whose drivers and device permissions come with udev's coldplug.\n",
    "[Unit]\n",
    "After=systemd-udev-trigger.service\n",
);

/// One drop-in the generator writes: its path under the generator's output directory and
/// its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    pub path: PathBuf,
    pub contents: String,
}

/// The drop-ins an identity calls for (pure).
pub fn dropins(id: &Identity) -> Vec<DropIn> {
    if id.role != Role::Node {
        return Vec::new();
    }
    let source = id
        .node
        .as_ref()
        .and_then(|n| n.camera.as_ref())
        // No [node.camera]: the node's default source, libcamera.
        .map_or(CameraSource::Libcamera, |c| c.source);
    match source {
        CameraSource::Synthetic => Vec::new(),
        CameraSource::Libcamera => vec![DropIn {
            path: PathBuf::from("camrig-node.service.d/camrig-cameras.conf"),
            contents: CAMERAS_DROPIN.to_owned(),
        }],
    }
}

/// Reads the identity at `identity` and writes its drop-ins under `out_dir` (the
/// generator's "normal" directory). Returns how many were written; a missing or invalid
/// identity writes none.
pub fn run(identity: &Path, out_dir: &Path) -> io::Result<usize> {
    let Ok(text) = std::fs::read_to_string(identity) else {
        return Ok(0);
    };
    let Ok(id) = crate::parse(&text) else {
        return Ok(0);
    };
    let dropins = dropins(&id);
    for d in &dropins {
        let path = out_dir.join(&d.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &d.contents)?;
    }
    Ok(dropins.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::parse;

    /// A node's camrig.toml with `camera` (its `[node.camera]` table, or nothing) at the end.
    fn node_text(camera: &str) -> String {
        crate::test_identities::node("", camera)
    }

    fn node(camera: &str) -> Identity {
        parse(&node_text(camera)).expect("valid identity")
    }

    #[test]
    fn libcamera_node_waits_for_the_coldplug_trigger() {
        let d = dropins(&node("[node.camera]\nsource = \"libcamera\""));
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].path,
            Path::new("camrig-node.service.d/camrig-cameras.conf")
        );
        assert!(d[0]
            .contents
            .contains("[Unit]\nAfter=systemd-udev-trigger.service\n"));
    }

    #[test]
    fn node_without_a_camera_source_gets_the_default_libcamera_ordering() {
        assert_eq!(dropins(&node("")).len(), 1);
    }

    #[test]
    fn synthetic_node_does_not_wait() {
        assert!(dropins(&node("[node.camera]\nsource = \"synthetic\"")).is_empty());
    }

    #[test]
    fn run_writes_the_dropin_and_ignores_a_missing_or_invalid_identity() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("normal");
        assert_eq!(run(&dir.path().join("missing.toml"), &out).unwrap(), 0);
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "role = ").unwrap();
        assert_eq!(run(&bad, &out).unwrap(), 0);
        assert!(!out.exists());
        let good = dir.path().join("camrig.toml");
        std::fs::write(&good, node_text("")).unwrap();
        assert_eq!(run(&good, &out).unwrap(), 1);
        let written =
            std::fs::read_to_string(out.join("camrig-node.service.d/camrig-cameras.conf")).unwrap();
        assert!(written.contains("After=systemd-udev-trigger.service"));
    }
}
