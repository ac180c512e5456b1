//! `camrig-identity apply`: the files a valid identity writes, the host key kept across boots
//! or provisioned, and the error state for a missing, invalid or wrong-role file.

use std::os::unix::fs::PermissionsExt as _;

use crate::{keypair, node_identity, stderr, Root};

fn mode(root: &Root, rel: &str) -> u32 {
    std::fs::metadata(root.path(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn node_identity_writes_network_time_service_and_ssh_files() {
    let root = Root::create();
    let (_, controller_pub) = keypair(root.dir.path(), "controller");
    let out = root.apply(Some(&node_identity(&controller_pub, "")), "node");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ssh host key generated"));

    assert!(root
        .read("/run/systemd/network/10-camrig.network")
        .contains("Address=10.0.2.15/24"));
    assert!(root
        .read("/run/camrig/chrony.conf")
        .contains("server 10.0.2.2 iburst"));
    let config: toml::Value = toml::from_str(&root.read("/run/camrig/node.toml")).unwrap();
    assert_eq!(config["camera"]["source"].as_str(), Some("synthetic"));
    assert_eq!(root.read("/run/camrig/token"), "test-token-0123456789\n");
    assert_eq!(mode(&root, "/run/camrig/token"), 0o640);
    assert_eq!(
        root.read("/run/camrig/ssh/authorized_keys/camrig"),
        format!("restrict {controller_pub}\n")
    );
    assert_eq!(root.read("/run/camrig/role"), "node\n");
    assert!(!root.path("/run/issue.d/50-camrig.issue").exists());

    // The generated host key is a real key pair, private to root.
    let public = root.read("/data/ssh/ssh_host_ed25519_key.pub");
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    assert!(
        public.trim_end().ends_with("root@camrig-node-1"),
        "{public}"
    );
    assert_eq!(mode(&root, "/data/ssh/ssh_host_ed25519_key"), 0o600);

    // A second boot keeps it.
    let out = root.apply(Some(&node_identity(&controller_pub, "")), "node");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept from the data partition"));
    assert_eq!(root.read("/data/ssh/ssh_host_ed25519_key.pub"), public);
}

#[test]
fn provisioned_host_key_replaces_a_generated_one() {
    let root = Root::create();
    let (_, controller_pub) = keypair(root.dir.path(), "controller");
    assert!(root
        .apply(Some(&node_identity(&controller_pub, "")), "node")
        .status
        .success());
    let (host_private, host_public) = keypair(root.dir.path(), "host");
    let extra =
        format!("host_key = \"\"\"\n{host_private}\"\"\"\nhost_key_public = \"{host_public}\"\n");
    let out = root.apply(Some(&node_identity(&controller_pub, &extra)), "node");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("provisioned, written"));
    assert_eq!(root.read("/data/ssh/ssh_host_ed25519_key"), host_private);
    assert_eq!(
        root.read("/data/ssh/ssh_host_ed25519_key.pub"),
        format!("{host_public}\n")
    );
    let out = root.apply(Some(&node_identity(&controller_pub, &extra)), "node");
    assert!(String::from_utf8_lossy(&out.stdout).contains("provisioned, unchanged"));
}

#[test]
fn missing_identity_leaves_the_error_state() {
    let root = Root::create();
    let out = root.apply(None, "node");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("NOT started"), "{err}");
    assert!(err.contains("no identity file"), "{err}");
    let issue = root.read("/run/issue.d/50-camrig.issue");
    assert!(issue.contains("no identity file"), "{issue}");
    assert!(!root.path("/run/camrig/node.toml").exists());
}

#[test]
fn invalid_identity_names_the_key_and_writes_nothing() {
    let root = Root::create();
    let (_, controller_pub) = keypair(root.dir.path(), "controller");
    let text = node_identity(&controller_pub, "").replace("10.0.2.0/24", "10.9.0.0/16");
    let out = root.apply(Some(&text), "node");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("network.address: 10.0.2.15 is outside"),
        "{err}"
    );
    assert!(root
        .read("/run/issue.d/50-camrig.issue")
        .contains("network.address"));
    assert!(!root.path("/run/systemd/network/10-camrig.network").exists());
}

#[test]
fn node_identity_on_a_controller_image_is_refused() {
    let root = Root::create();
    let (_, controller_pub) = keypair(root.dir.path(), "controller");
    let out = root.apply(Some(&node_identity(&controller_pub, "")), "controller");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("this is a controller image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn image_role_is_read_from_the_root() {
    let root = Root::create();
    let (_, controller_pub) = keypair(root.dir.path(), "controller");
    std::fs::write(
        root.dir.path().join("boot-camrig.toml"),
        node_identity(&controller_pub, ""),
    )
    .unwrap();
    std::fs::create_dir_all(root.path("/usr/lib/camrig")).unwrap();
    std::fs::write(root.path("/usr/lib/camrig/role"), "node\n").unwrap();
    let out = crate::run(&[
        "apply",
        "--identity",
        root.dir.path().join("boot-camrig.toml").to_str().unwrap(),
        "--root",
        root.dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
