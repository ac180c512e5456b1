//! The state directory: private, reused on every run, replaced only by `rotate`.

use std::process::Command;

use crate::support::{mode, Rig, SITE};

#[test]
fn first_build_creates_private_secrets_and_rerun_keeps_them() {
    let rig = Rig::with_site(SITE);
    let out = rig.build(&[]).ok();
    assert!(out.contains("created rig token"), "{out}");
    assert!(out.contains("created controller API token"), "{out}");
    // The operator password is printed once; only its hash is kept, and it is on the
    // controller's card with the API token (never the password itself).
    let password = out
        .split("operator password for the web UI: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password in {out}"))
        .to_owned();
    let hash = std::fs::read_to_string(rig.state().join("operator-password.hash")).unwrap();
    assert!(camrig_protocol::operator_password::verify(
        &password,
        hash.trim()
    ));
    assert!(!hash.contains(&password));
    assert_eq!(out.matches("created root@").count(), 3, "{out}");
    assert_eq!(mode(&rig.state()), 0o700);
    let files = rig.state_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin_known_hosts",
            "api-token",
            "controller-key/id_ed25519",
            "controller-key/id_ed25519.pub",
            "host-keys/camrig-controller/ssh_host_ed25519_key",
            "host-keys/camrig-controller/ssh_host_ed25519_key.pub",
            "host-keys/camrig-node-101/ssh_host_ed25519_key",
            "host-keys/camrig-node-101/ssh_host_ed25519_key.pub",
            "host-keys/camrig-node-102/ssh_host_ed25519_key",
            "host-keys/camrig-node-102/ssh_host_ed25519_key.pub",
            "known_hosts",
            "operator-password.hash",
            "state.toml",
            "token",
        ]
    );
    for (name, _) in &files {
        assert_eq!(mode(&rig.state().join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&rig.state().join("host-keys")), 0o700);

    let again = rig.build(&[]).ok();
    assert!(!again.contains("created"), "{again}");
    assert!(!again.contains(&password), "the password is shown once");
    assert_eq!(rig.state_files(), files, "a re-run changed the secrets");
    let card = std::fs::read_to_string(rig.out().join("camrig-node-101/camrig.toml")).unwrap();
    let token = std::fs::read_to_string(rig.state().join("token")).unwrap();
    assert!(card.contains(&format!("token = \"{}\"", token.trim())));
}

#[test]
fn known_hosts_is_what_ssh_keygen_finds_for_each_node() {
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    let known = rig.state().join("known_hosts");
    for (ip, name) in [
        ("192.168.1.101", "camrig-node-101"),
        ("192.168.1.102", "camrig-node-102"),
    ] {
        let out = Command::new("ssh-keygen")
            .args(["-F", ip, "-f"])
            .arg(&known)
            .output()
            .unwrap();
        assert!(out.status.success(), "{ip} not in known_hosts");
        let public = std::fs::read_to_string(
            rig.state()
                .join(format!("host-keys/{name}/ssh_host_ed25519_key.pub")),
        )
        .unwrap();
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        assert!(String::from_utf8_lossy(&out.stdout).contains(&key.join(" ")));
    }
    // The controller is not its own known host, but the administrator's file has it.
    let ctl = Command::new("ssh-keygen")
        .args(["-F", "192.168.1.10", "-f"])
        .arg(&known)
        .output()
        .unwrap();
    assert!(!ctl.status.success());
    let admin = std::fs::read_to_string(rig.state().join("admin_known_hosts")).unwrap();
    assert!(admin.starts_with("192.168.1.10 ssh-ed25519 "), "{admin}");
}

#[test]
fn a_new_node_gets_a_key_and_the_others_keep_theirs() {
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    let before = rig.state_files();
    let bigger =
        format!("{SITE}\n[[node]]\nname = \"camrig-node-103\"\naddress = \"192.168.1.103\"\n");
    std::fs::write(rig.site(), bigger).unwrap();
    let out = rig.build(&[]).ok();
    assert_eq!(out.matches("created").count(), 1, "{out}");
    let after = rig.state_files();
    for (name, contents) in &before {
        if name.ends_with("known_hosts") {
            continue;
        }
        assert!(
            after.contains(&(name.clone(), contents.clone())),
            "{name} changed"
        );
    }
    let known = std::fs::read_to_string(rig.state().join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 3);
}

#[test]
fn rotate_replaces_only_what_is_asked_and_keeps_the_old() {
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    let before = rig.state_files();
    let out = rig.rotate(&["--host-key", "camrig-node-101"]).ok();
    assert!(out.contains("rotated host key of camrig-node-101"), "{out}");
    assert!(
        out.contains("the controller's card and camrig-node-101"),
        "{out}"
    );
    let after = rig.state_files();
    let get = |files: &[(String, Vec<u8>)], n: &str| {
        files
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, c)| c.clone())
    };
    let key = "host-keys/camrig-node-101/ssh_host_ed25519_key";
    assert_ne!(
        get(&before, key),
        get(&after, key),
        "the host key was not rotated"
    );
    for same in [
        "token",
        "controller-key/id_ed25519",
        "host-keys/camrig-node-102/ssh_host_ed25519_key",
    ] {
        assert_eq!(get(&before, same), get(&after, same), "{same} changed");
    }
    // The retired key is kept, and known_hosts follows the new one.
    let retired: Vec<_> = after
        .iter()
        .filter(|(n, _)| {
            n.starts_with("retired/") && n.ends_with("camrig-node-101/ssh_host_ed25519_key")
        })
        .collect();
    assert_eq!(
        retired.len(),
        1,
        "{:?}",
        after.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert_eq!(Some(retired[0].1.clone()), get(&before, key));
    let new_pub = String::from_utf8(get(&after, &format!("{key}.pub")).unwrap()).unwrap();
    let known = String::from_utf8(get(&after, "known_hosts").unwrap()).unwrap();
    let new_key: Vec<&str> = new_pub.split_whitespace().take(2).collect();
    assert!(
        known.contains(&format!("192.168.1.101 {}", new_key.join(" "))),
        "{known}"
    );

    // And a plain re-run after the rotation changes nothing more.
    let settled = rig.state_files();
    rig.build(&[]).ok();
    assert_eq!(rig.state_files(), settled);
}

#[test]
fn rotate_all_replaces_every_secret_and_needs_a_target() {
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    let state = rig.state();
    let err = rig.rotate(&[]).fails_with(1);
    assert!(err.contains("say what to rotate"), "{err}");
    let err = rig.rotate(&["--host-key", "nobody"]).fails_with(1);
    assert!(err.contains("no device named 'nobody'"), "{err}");
    let token = std::fs::read(state.join("token")).unwrap();
    let out = rig.rotate(&["--all"]).ok();
    // rig token, API token, password, controller key, three host keys.
    assert_eq!(out.matches("rotated").count(), 7, "{out}");
    assert!(
        out.contains("the new operator password for the web UI: "),
        "{out}"
    );
    assert!(out.contains("every card"), "{out}");
    assert_ne!(std::fs::read(state.join("token")).unwrap(), token);
}

#[test]
fn a_state_directory_open_to_others_or_of_another_rig_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    std::fs::set_permissions(rig.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = rig.build(&[]).fails_with(1);
    assert!(
        err.contains("open to other users (mode 755)") && err.contains("chmod 700"),
        "{err}"
    );
    std::fs::set_permissions(rig.state(), std::fs::Permissions::from_mode(0o700)).unwrap();

    std::fs::write(rig.site(), SITE.replace("test-rig", "other-rig")).unwrap();
    let err = rig.build(&[]).fails_with(1);
    assert!(
        err.contains("belongs to rig 'test-rig'") && err.contains("'other-rig'"),
        "{err}"
    );
}

#[test]
fn a_key_pair_changed_by_hand_is_refused_not_replaced() {
    let rig = Rig::with_site(SITE);
    rig.build(&[]).ok();
    let a = rig
        .state()
        .join("host-keys/camrig-node-101/ssh_host_ed25519_key.pub");
    let b = rig
        .state()
        .join("host-keys/camrig-node-102/ssh_host_ed25519_key.pub");
    std::fs::copy(&b, &a).unwrap();
    let err = rig.build(&[]).fails_with(1);
    assert!(err.contains("does not match its private key"), "{err}");
    assert!(err.contains("rotate --host-key camrig-node-101"), "{err}");
}
