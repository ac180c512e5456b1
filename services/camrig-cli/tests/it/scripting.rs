//! `camrig` in scripts, against a real `camrig demo` rig of one node: `--version`, exit
//! codes in `--help`, `--json` documents with their documented fields, `camrig record`
//! (timed, and stopped cleanly by Ctrl-C), the one-line download summary on a pipe, and a
//! rig state derived from the nodes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::demo_rig::{camrig, Demo};

/// The demo's token file, once it runs (before it, the CLI runs without one).
static TOKEN_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Runs `camrig args…` with stdout piped (not a terminal), with the demo's API token once
/// there is a demo: (exit code, stdout, stderr).
fn run(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(camrig());
    cmd.args(args).env("CAMRIG_CONTROLLER", url);
    if let Some(file) = TOKEN_FILE.get() {
        cmd.env("CAMRIG_TOKEN_FILE", file);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(url: &str, args: &[&str]) -> (i32, Value) {
    let (code, stdout, stderr) = run(url, args);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}):\n{stdout}\n{stderr}"));
    (code, v)
}

#[test]
fn the_cli_in_scripts() {
    let (code, version, _) = run("http://127.0.0.1:9", &["--version"]);
    assert_eq!(code, 0);
    assert!(version.starts_with("camrig "), "{version}");
    let (_, help, _) = run("http://127.0.0.1:9", &["--help"]);
    assert!(
        help.contains("Exit codes:") && help.contains("130"),
        "{help}"
    );

    // An unreachable controller: exit 1 and, with --json, an error document.
    let (code, v) = json("http://127.0.0.1:9", &["status", "--json"]);
    assert_eq!(code, 1);
    assert!(v["error"].as_str().unwrap().contains("cannot reach"), "{v}");
    assert_eq!(v["exit_code"], 1);

    // The demo picks free addresses for its nodes: use the ones it printed.
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(1, dir.path());
    TOKEN_FILE.set(demo.token_file.clone()).unwrap();
    let url = demo.url.clone();
    let node_ip = demo.ips[0].clone();

    // status --json: the controller's rig document.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rig = loop {
        let (code, v) = json(&url, &["status", "--json"]);
        assert_eq!(code, 0, "{v}");
        if v["start_ready"] == true {
            break v;
        }
        assert!(Instant::now() < deadline, "never ready: {v}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(rig["state"], "idle");
    for field in ["nodes", "start_blockers", "current_take", "version"] {
        assert!(
            rig.get(field).is_some(),
            "status --json lacks {field}: {rig}"
        );
    }
    let node = &rig["nodes"][0];
    assert_eq!(node["address"], node_ip.as_str());
    assert!(
        node["status"]["health"]["recordable_seconds"]
            .as_u64()
            .unwrap()
            > 0
    );

    // record --json: start, wait, stop.
    let (code, r) = json(&url, &["record", "cli_rec1", "--duration", "2s", "--json"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["started"]["name"], "cli_rec1");
    assert_eq!(r["stopped"]["state"], "stopped");
    assert_eq!(r["interrupted"], false);
    assert!(r["seconds"].as_f64().unwrap() >= 2.0);

    // Right after STOP the node still records up to the STOP instant and finishes its
    // files: the rig is idle only once every node is.
    let (_, now) = json(&url, &["status", "--json"]);
    let busy = now["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["status"]["state"] != "idle");
    if busy {
        assert_ne!(now["state"], "idle", "{now}");
    }

    let (code, takes) = json(&url, &["takes", "--json"]);
    assert_eq!(code, 0);
    let t = takes
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "cli_rec1")
        .unwrap();
    for field in ["state", "start_at_ns", "stop_at_ns", "nodes", "download"] {
        assert!(t.get(field).is_some(), "takes --json lacks {field}: {t}");
    }

    let (code, d) = json(&url, &["download", "cli_rec1", "--json"]);
    assert_eq!(code, 0, "{d}");
    assert_eq!(d["failed"], 0);
    let n = &d["downloads"][0];
    assert_eq!(n["take"], "cli_rec1");
    assert_eq!(n["node"], node_ip.as_str());
    assert_eq!(n["state"], "verified");
    assert_eq!(n["files"], n["files_verified"]);
    assert!(n["bytes"].as_u64().unwrap() > 0);

    // Ctrl-C during record stops the take cleanly and says so with 130.
    let child = Command::new(camrig())
        .args(["record", "cli_rec2", "--duration", "60s"])
        .env("CAMRIG_CONTROLLER", &url)
        .env("CAMRIG_TOKEN_FILE", &demo.token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let (_, takes) = json(&url, &["takes", "--json"]);
    let t2 = takes
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "cli_rec2")
        .unwrap()
        .clone();
    assert_eq!(t2["state"], "stopped", "{t2}");
    let secs =
        (t2["stop_at_ns"].as_i64().unwrap() - t2["start_at_ns"].as_i64().unwrap()) as f64 / 1e9;
    assert!(secs < 10.0, "stopped at Ctrl-C, not after 60 s: {secs}");

    // Plain download on a pipe: one summary line per take.
    let (code, stdout, stderr) = run(&url, &["download", "cli_rec2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with("take cli_rec2: verified, ")
            && lines[0].contains(" bytes, 1 node(s), "),
        "{stdout}"
    );

    // start --json refused: the error document on stdout, exit 1.
    let (code, v) = json(&url, &["start", "bad/name", "--json"]);
    assert_eq!(code, 1);
    assert!(
        v["error"].as_str().unwrap().contains("1-64 characters"),
        "{v}"
    );
    let (code, s) = json(&url, &["start", "cli_rec3", "--json"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["name"], "cli_rec3");
    // Past its start instant (a STOP before it would cancel the take instead).
    std::thread::sleep(Duration::from_secs(2));
    let (code, s) = json(&url, &["stop", "--json"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["state"], "stopped");
}
