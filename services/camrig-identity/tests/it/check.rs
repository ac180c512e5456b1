//! `camrig-identity check`: what a user runs on a file before writing it to a card.

use crate::{run, stderr};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/camrig.example.toml");

#[test]
fn example_checks_ok() {
    let out = run(&["check", EXAMPLE]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok (node camrig-node-101, 192.168.1.101/24)"),
        "{stdout}"
    );
}

#[test]
fn wrong_role_is_refused() {
    let out = run(&["check", EXAMPLE, "--role", "controller"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("expected \"controller\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_problem_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("camrig.toml");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("hostname = \"camrig-node-101\"", "hostname = \"Node 1\"")
        .replace("token = \"change-me-0123456789abcdef\"", "token = \"x\"");
    std::fs::write(&file, text).unwrap();
    let out = run(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("  - hostname: 'Node 1'"), "{err}");
    assert!(err.contains("  - rig.token:"), "{err}");
}

#[test]
fn missing_file_and_bad_flags_have_their_exit_codes() {
    assert_eq!(
        run(&["check", "/nonexistent/camrig.toml"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(64));
}
