//! A bad site file is refused with every problem at its line, before anything is written.

use crate::support::{Rig, EXAMPLE_SITE, SITE};

#[test]
fn the_annotated_example_site_is_valid() {
    let rig = Rig::with_site(EXAMPLE_SITE);
    let out = rig.run(&["check", "site.toml"]).ok();
    assert!(out.contains("rig 'studio-a' with 4 devices"), "{out}");
    assert!(
        out.contains("camrig-controller") && out.contains("192.168.1.10\n"),
        "{out}"
    );
    assert!(
        out.contains("192.168.1.101") && out.contains("192.168.1.103"),
        "{out}"
    );
    // `check` writes nothing, not even the state directory.
    assert_eq!(std::fs::read_dir(rig.dir.path()).unwrap().count(), 1);
}

#[test]
fn duplicate_address_is_refused_before_anything_is_written() {
    let rig = Rig::with_site(&SITE.replace("192.168.1.102", "192.168.1.101"));
    let err = rig.build(&[]).fails_with(2);
    assert!(
        err.contains("line 23: node[1].address (node 'camrig-node-102'): 192.168.1.101 is also the address of node 'camrig-node-101' (line 19)"),
        "{err}"
    );
    assert!(err.contains("give every device its own address"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!rig.state().exists(), "the state directory was created");
    assert!(!rig.out().exists(), "the cards directory was created");
}

#[test]
fn every_problem_is_listed_in_line_order_in_one_run() {
    let text = SITE
        .replace("192.168.1.101", "192.168.1.10")
        .replace("192.168.1.102", "10.0.0.2")
        .replace("camrig-node-102", "Camera_2")
        .replace("count = 2", "count = 3");
    let rig = Rig::with_site(&text);
    let err = rig.build(&[]).fails_with(2);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  - line")).collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(
        lines[0].contains("line 19") && lines[0].contains("the controller's address (line 12)"),
        "{err}"
    );
    assert!(
        lines[1].contains("line 22") && lines[1].contains("'Camera_2'"),
        "{err}"
    );
    assert!(
        lines[2].contains("line 23")
            && lines[2].contains("outside the rig's subnet 192.168.1.0/24"),
        "{err}"
    );
    assert!(
        lines[3].contains("line 25") && lines[3].contains("node.camera.count"),
        "{err}"
    );
    assert!(!rig.state().exists());
}

#[test]
fn unknown_keys_are_refused_with_the_line_and_the_known_keys() {
    let rig = Rig::with_site(&SITE.replace("subnet =", "subnett ="));
    let err = rig.run(&["check", "site.toml"]).fails_with(2);
    assert!(
        err.contains("site.toml: line 5, column 1: unknown field `subnett`"),
        "{err}"
    );
    assert!(err.contains("expected one of"), "{err}");
}

#[test]
fn bad_hostname_and_bad_admin_key_name_their_lines() {
    let text = SITE
        .replace(
            "hostname = \"camrig-controller\"",
            "hostname = \"-controller\"",
        )
        .replace("ssh-ed25519 AAAAC3", "ssh-dss AAAAC3");
    let rig = Rig::with_site(&text);
    let err = rig.run(&["check", "site.toml"]).fails_with(2);
    assert!(
        err.contains("line 8: controller: camrig.toml ssh.authorized_keys[0]"),
        "{err}"
    );
    assert!(
        err.contains("line 11: controller: camrig.toml hostname"),
        "{err}"
    );
    // The admin key is shared by every card but reported once.
    assert_eq!(err.matches("ssh-dss").count(), 1, "{err}");
}

#[test]
fn a_missing_site_file_says_so() {
    let rig = Rig::with_site(SITE);
    let err = rig.run(&["check", "nope.toml"]).fails_with(1);
    assert!(err.contains("cannot read site file nope.toml"), "{err}");
}

#[test]
fn camera_wiring_problems_name_their_lines_and_the_known_sensors() {
    let text = format!(
        "{SITE}[[node]]\nname = \"camrig-node-103\"\naddress = \"192.168.1.103\"\n\
         camera_wiring = [\n  {{ sensor = \"imx477\", port = 0 }},\n  {{ sensor = \"imx99\", port = 0 }},\n]\n"
    );
    let rig = Rig::with_site(&text);
    let err = rig.run(&["check", "site.toml"]).fails_with(2);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("  - line")).collect();
    // The wiring is at lines 29-32 (SITE is 25 lines); the synthetic default source is
    // named at its own line too.
    assert!(
        lines.iter().any(|l| l
            .contains("line 15: node[2] (node 'camrig-node-103'): camrig.toml node.camera.source")),
        "{err}"
    );
    let sensor = lines
        .iter()
        .find(|l| l.contains("node.camera_wiring[1].sensor"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(sensor.starts_with("  - line 31: "), "{err}");
    assert!(
        sensor.contains("'imx99' is not a sensor camrig knows"),
        "{err}"
    );
    assert!(
        sensor.contains("imx219") && sensor.contains("imx477") && sensor.contains("imx708"),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  - line 31: ") && l.contains("node.camera_wiring[1].port")),
        "{err}"
    );
    assert!(!rig.state().exists());
}
