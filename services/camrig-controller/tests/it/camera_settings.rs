//! Rig-wide camera settings through the controller's API, on real nodes with synthetic
//! cameras: applied settings show in each node's per-frame metadata and in the recorded
//! pixels (decoded with ffmpeg), LOCK copies a reference camera's values to every camera,
//! a bad value is a 400 naming the camera and its range, and nothing changes mid-take.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Rig, RigBuilder, API_TOKEN};

fn put(rig: &Rig, path: &str, body: Value) -> (u16, Value) {
    rig.put(path, body)
}

/// Mean luma of the first picture of a recorded segment, decoded by ffmpeg.
fn mean_luma(video: &Path) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "ffmpeg decodes {}: {}",
        video.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.iter().map(|&v| f64::from(v)).sum::<f64>() / out.stdout.len() as f64
}

/// The rows of a metadata CSV as (column → value) maps.
fn metadata_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_owned)
        .collect();
    assert!(
        header
            .join(",")
            .starts_with("frame_index,exposure_us,analogue_gain"),
        "{header:?}"
    );
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_owned))
                .collect()
        })
        .collect()
}

fn camera0(view: &Value, node: usize) -> &Value {
    &view["nodes"][node]["cameras"][0]
}

#[test]
fn settings_show_in_each_nodes_metadata_and_pixels_and_never_change_mid_take() {
    let rig = RigBuilder::new().nodes(2).start();
    let (ip0, ip1) = (rig.nodes[0].ip.clone(), rig.nodes[1].ip.clone());

    let (status, view) = rig.get("/api/camera-settings");
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["exposure_us"], "auto", "{view}");
    assert_eq!(view["analogue_gain"], "auto");
    assert_eq!(view["awb"], "auto");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(camera0(&view, 0)["limits"]["analogue_gain"]["max"], 16.0);

    // A bad value anywhere: 400 naming node, camera and range, nothing applied.
    let (status, err) = put(&rig, "/api/camera-settings", json!({ "analogue_gain": 99 }));
    assert_eq!(status, 400, "{err}");
    let e = err["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("node {ip0} camera 0")) && e.contains("1-16"),
        "{e}"
    );
    let (status, err) = put(
        &rig,
        "/api/camera-settings",
        json!({ "exposure_us": 40000 }),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("longer than the frame period"),
        "{err}"
    );
    let (status, err) = put(&rig, "/api/camera-settings", json!({ "exposure": 4000 }));
    assert_eq!(status, 400, "{err}");
    let (status, err) = put(
        &rig,
        "/api/camera-settings?nodes=10.9.9.9",
        json!({ "exposure_us": 4000 }),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(rig.get("/api/camera-settings").1["exposure_us"], "auto");

    // Node 0 dark (2.5 ms, gain 1), node 1 as drawn (10 ms, gain 1).
    let (status, v) = put(
        &rig,
        &format!("/api/camera-settings?nodes={ip0}"),
        json!({ "exposure_us": 2500, "analogue_gain": 1.0, "awb": { "red": 1.6, "blue": 1.6 } }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["exposure_us"], 2500);
    assert_eq!(
        v["nodes"].as_array().unwrap().len(),
        1,
        "only the node asked for"
    );
    let (status, v) = put(
        &rig,
        &format!("/api/camera-settings?nodes={ip1}"),
        json!({ "exposure_us": 10000, "analogue_gain": 1.0, "awb": "daylight" }),
    );
    assert_eq!(status, 200, "{v}");
    let view = rig.wait_for(
        "frames with the new values",
        Duration::from_secs(10),
        |rig| {
            let v = rig.get("/api/camera-settings").1;
            (camera0(&v, 0)["applied"]["exposure_us"] == 2500
                && camera0(&v, 1)["applied"]["exposure_us"] == 10000)
                .then_some(v)
        },
    );
    assert_eq!(camera0(&view, 0)["settings"]["exposure_us"], 2500);
    assert_eq!(camera0(&view, 1)["settings"]["awb"], "daylight");

    rig.start_take("settings_01");
    rig.wait_recording(&[0, 1], 10);
    // Nothing changes mid-take: not through the controller...
    let (status, err) = put(&rig, "/api/camera-settings", json!({ "exposure_us": 5000 }));
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("during a take"),
        "{err}"
    );
    let (status, _) = rig.post("/api/camera-settings/lock", json!({}));
    assert_eq!(status, 409);
    let (status, _) = rig.post("/api/camera-settings/unlock", json!({}));
    assert_eq!(status, 409);
    // ...nor on a node directly.
    let r = rig
        .http
        .put(format!("http://{ip0}:8081/v1/camera-settings"))
        .bearer_auth(crate::harness::TOKEN)
        .json(&json!({ "command_id": "mid-take", "cameras": [{ "exposure_us": 5000 }] }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    rig.wait_recording(&[0, 1], 30);
    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    rig.wait_for(
        "take finished on the nodes",
        Duration::from_secs(20),
        |rig| {
            (0..2)
                .all(|i| rig.node_get(i, "/v1/status").1["state"] == "idle")
                .then_some(())
        },
    );

    let mut luma = Vec::new();
    for (i, want_exposure) in [(0, 2500), (1, 10000)] {
        let m = rig.node_manifest(i, "settings_01");
        let cam = &m.cameras[0];
        let settings =
            serde_json::to_value(cam.settings.expect("settings in the manifest")).unwrap();
        assert_eq!(settings["exposure_us"], want_exposure, "node {i}");
        let dir = rig.nodes[i].data_dir.join("recordings/settings_01");
        let mut rows = 0;
        for seg in &cam.segments {
            let csv = seg
                .metadata_csv
                .as_ref()
                .expect("segment has a metadata csv");
            assert!(
                m.files.iter().any(|f| &f.name == csv),
                "{csv} in the manifest's files"
            );
            let stem = seg.video.rsplit_once('.').unwrap().0;
            assert_eq!(csv, &format!("{stem}_metadata.csv"));
            let table = metadata_rows(&dir.join(csv));
            assert_eq!(table.len() as u64, seg.frames, "one row per frame");
            for (k, row) in table.iter().enumerate() {
                assert_eq!(
                    row["frame_index"],
                    (seg.first_frame_index + k as u64).to_string()
                );
                assert_eq!(row["exposure_us"], want_exposure.to_string(), "node {i}");
                assert_eq!(row["analogue_gain"], "1", "node {i}");
            }
            rows += table.len();
        }
        assert_eq!(rows as u64, cam.frames);
        luma.push(mean_luma(&dir.join(&cam.segments[0].video)));
    }
    eprintln!(
        "decoded mean luma: node 0 (2.5 ms) {:.1}, node 1 (10 ms) {:.1}",
        luma[0], luma[1]
    );
    // 2.5 ms renders the bars at a quarter of their level above black, 10 ms as drawn.
    assert!(
        luma[0] + 40.0 < luma[1],
        "node 0 (2.5 ms) mean luma {:.1} should be far below node 1 (10 ms) {:.1}",
        luma[0],
        luma[1]
    );
}

#[test]
fn lock_copies_the_reference_cameras_values_everywhere_and_unlock_returns_to_auto() {
    let rig = RigBuilder::new().nodes(2).start();
    let ip1 = rig.nodes[1].ip.clone();
    rig.wait_for(
        "both cameras reporting values",
        Duration::from_secs(10),
        |rig| {
            let v = rig.get("/api/camera-settings").1;
            (!camera0(&v, 0)["applied"].is_null() && !camera0(&v, 1)["applied"].is_null())
                .then_some(())
        },
    );
    let (status, err) = rig.post(
        "/api/camera-settings/lock",
        json!({ "reference": { "node": ip1, "camera": 3 } }),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("no camera 3"),
        "{err}"
    );

    let (status, locked) = rig.post(
        "/api/camera-settings/lock",
        json!({ "reference": { "node": ip1, "camera": 0 } }),
    );
    assert_eq!(status, 200, "{locked}");
    assert_eq!(locked["locked"], true);
    let reference = camera0(&locked, 1)["settings"].clone();
    assert!(reference["exposure_us"].is_u64(), "{reference}");
    assert!(reference["analogue_gain"].is_number(), "{reference}");
    assert!(reference["awb"]["red"].is_number(), "{reference}");
    assert_eq!(
        camera0(&locked, 0)["settings"],
        reference,
        "node 0 copies node 1"
    );
    assert_eq!(locked["exposure_us"], reference["exposure_us"]);

    // Both cameras now apply exactly the reference's values, frame after frame.
    let exposure = reference["exposure_us"].as_u64().unwrap();
    for _ in 0..3 {
        let v = rig.wait_for("locked values applied", Duration::from_secs(10), |rig| {
            let v = rig.get("/api/camera-settings").1;
            (camera0(&v, 0)["applied"]["exposure_us"] == exposure
                && camera0(&v, 1)["applied"]["exposure_us"] == exposure)
                .then_some(v)
        });
        assert_eq!(
            camera0(&v, 0)["applied"]["analogue_gain"],
            camera0(&v, 1)["applied"]["analogue_gain"]
        );
        assert_eq!(
            camera0(&v, 0)["applied"]["colour_gains"],
            reference["awb"]
                .as_object()
                .map(|g| json!([g["red"], g["blue"]]))
                .unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Each camera's own values: still fixed, each at what it applied.
    let (status, own) = rig.post("/api/camera-settings/lock", json!({}));
    assert_eq!(status, 200, "{own}");
    assert!(camera0(&own, 0)["settings"]["exposure_us"].is_u64());

    let (status, unlocked) = rig.post("/api/camera-settings/unlock", json!({}));
    assert_eq!(status, 200, "{unlocked}");
    assert_eq!(unlocked["locked"], false);
    for i in 0..2 {
        let s = &camera0(&unlocked, i)["settings"];
        assert_eq!(s["exposure_us"], "auto");
        assert_eq!(s["analogue_gain"], "auto");
        assert_eq!(s["awb"], "auto");
    }
    assert_eq!(unlocked["exposure_us"], "auto");
}

/// `mode` of a node's first camera as its STATUS shows it (`160x120@30`).
fn node_mode(rig: &Rig, i: usize) -> String {
    rig.node_get(i, "/v1/status").1["cameras"][0]["mode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn frame_rate_changes_between_takes_within_each_cameras_range() {
    // Node 1's sensor tops out at 40 fps.
    let rig = RigBuilder::new()
        .nodes(2)
        .synthetic(1, "max_fps = 40")
        .start();
    let (ip0, ip1) = (rig.nodes[0].ip.clone(), rig.nodes[1].ip.clone());
    let (_, view) = rig.get("/api/camera-settings");
    assert_eq!(camera0(&view, 1)["limits"]["frame_rate"]["max"], 40.0);

    // Above node 1's maximum: 400 naming that camera and its range; nothing changes.
    let (status, err) = put(&rig, "/api/camera-settings", json!({ "frame_rate": 50 }));
    assert_eq!(status, 400, "{err}");
    let e = err["error"].as_str().unwrap();
    assert!(
        e.contains(&format!("node {ip1} camera 0")) && e.contains("1-40 fps"),
        "{e}"
    );
    assert!(!e.contains(&format!("node {ip0}")), "node 0 can: {e}");
    assert_eq!(node_mode(&rig, 0), "160x120@30");

    // 20 fps everywhere: a 40 ms exposure now fits the 50 ms frame period.
    let (status, v) = put(
        &rig,
        "/api/camera-settings",
        json!({ "frame_rate": 20, "exposure_us": 40000, "analogue_gain": 1.0 }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["frame_rate"], 20.0);
    for i in 0..2 {
        assert_eq!(node_mode(&rig, i), "160x120@20", "node {i}");
    }
    // The controller sees the reopened cameras at once, not at its next poll (START checks
    // their phase lock, which starts over)...
    let (_, r) = rig.get("/api/rig");
    for i in 0..2 {
        let c = &r["nodes"][i]["status"]["cameras"][0];
        assert_eq!(c["mode"], "160x120@20", "node {i}: {c}");
    }
    // ...then lock to the 20 fps grid and deliver at that rate.
    rig.wait_for("cameras locked at 20 fps", Duration::from_secs(30), |rig| {
        let r = rig.get("/api/rig").1;
        (0..2)
            .all(|i| {
                let c = &r["nodes"][i]["status"]["cameras"][0];
                c["phase"]["state"] == "locked"
                    && (c["fps"].as_f64().unwrap_or(0.0) - 20.0).abs() < 1.5
            })
            .then_some(())
    });

    let take = "rate_20";
    rig.start_take(take);
    rig.wait_recording(&[0, 1], 10);
    // Not during a take.
    let (status, err) = put(&rig, "/api/camera-settings", json!({ "frame_rate": 25 }));
    assert_eq!(status, 409, "{err}");
    rig.wait_recording(&[0, 1], 60);
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    rig.wait_for("take finished", Duration::from_secs(20), |rig| {
        (0..2)
            .all(|i| rig.node_get(i, "/v1/status").1["state"] == "idle")
            .then_some(())
    });
    for i in 0..2 {
        let m = rig.node_manifest(i, take);
        assert_eq!(m.cameras[0].fps, 20.0, "node {i}");
        let s = serde_json::to_value(m.cameras[0].settings.unwrap()).unwrap();
        assert_eq!(s["frame_rate"], 20.0, "node {i}");
        assert_eq!(s["exposure_us"], 40000, "node {i}");
    }
    assert_eq!(
        rig.post(&format!("/api/takes/{take}/download"), json!({}))
            .0,
        202
    );
    rig.wait_download(take, "verified");
    let report = rig.wait_for("sync report", Duration::from_secs(60), |rig| {
        let (status, r) = rig.get(&format!("/api/takes/{take}/sync-report"));
        (status == 200).then_some(r)
    });
    assert_eq!(report["fps"], 20.0, "{report}");
    assert_eq!(report["period_us"], 50000.0, "{report}");
    assert_eq!(report["verdict"], "pass", "{report}");
    // The report reads each camera's per-frame metadata: what it applied, over the take.
    for c in report["cameras"].as_array().unwrap() {
        assert_eq!(c["settings"]["frame_rate"], 20.0, "{c}");
        assert_eq!(
            c["applied"]["exposure_us"],
            json!({ "min": 40000.0, "max": 40000.0 }),
            "{c}"
        );
        assert_eq!(
            c["applied"]["analogue_gain"],
            json!({ "min": 1.0, "max": 1.0 }),
            "{c}"
        );
        assert_eq!(c["applied"]["frames"], c["frames"], "{c}");
    }

    // "auto" is each node's camera.fps again.
    let (status, v) = put(
        &rig,
        "/api/camera-settings",
        json!({ "frame_rate": "auto" }),
    );
    assert_eq!(status, 200, "{v}");
    for i in 0..2 {
        assert_eq!(node_mode(&rig, i), "160x120@30", "node {i}");
    }
}

#[test]
fn a_node_failing_after_the_check_rolls_the_others_back_and_the_put_fails() {
    let rig = RigBuilder::new().nodes(2).start();
    let (ip0, ip1) = (rig.nodes[0].ip.clone(), rig.nodes[1].ip.clone());
    let (status, v) = put(&rig, "/api/camera-settings", json!({ "exposure_us": 8000 }));
    assert_eq!(status, 200, "{v}");

    // Node 1 is blocked behind the controller's back: a take started on it directly. It
    // answers the controller's check (GET) but refuses the change itself.
    let node_post = |ip: &str, path: &str, body: Value| {
        let r = rig
            .http
            .post(format!("http://{ip}:8081{path}"))
            .bearer_auth(crate::harness::TOKEN)
            .json(&body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    };
    let now = camrig_protocol::now_unix_ns();
    let (status, body) = node_post(
        &ip1,
        "/v1/takes/start",
        json!({ "take": "behind_the_back", "start_at_ns": now + 200_000_000, "command_id": "bb-start" }),
    );
    assert_eq!(status, 200, "{body}");

    let (status, err) = put(
        &rig,
        "/api/camera-settings",
        json!({ "exposure_us": 3000, "analogue_gain": 2.0 }),
    );
    assert_eq!(status, 409, "{err}");
    let e = err["error"].as_str().unwrap();
    assert!(
        e.contains("not applied") && e.contains(&ip1) && e.contains("set back") && e.contains(&ip0),
        "{e}"
    );
    assert!(e.contains("as before"), "{e}");
    assert_eq!(err["nodes"][0]["address"], ip1.as_str(), "{err}");

    // Node 0 is back on what it had; the rig's settings are unchanged.
    let (_, view) = rig.get("/api/camera-settings");
    assert_eq!(camera0(&view, 0)["settings"]["exposure_us"], 8000, "{view}");
    assert_eq!(camera0(&view, 0)["settings"]["analogue_gain"], "auto");
    assert_eq!(camera0(&view, 1)["settings"]["exposure_us"], 8000);
    assert_eq!(view["exposure_us"], 8000);
    assert_eq!(view["mismatched"], json!([]), "{view}");
    rig.wait_for(
        "node 0 applying 8 ms again",
        Duration::from_secs(10),
        |rig| {
            let v = rig.get("/api/camera-settings").1;
            (camera0(&v, 0)["applied"]["exposure_us"] == 8000).then_some(())
        },
    );

    // The CLI says the same, and fails.
    let cli = camrig_cli_settings(&rig, &["--exposure-us", "3000"]);
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(
        stderr.contains("set back") && stderr.contains(&ip1),
        "{stderr}"
    );

    let (status, body) = node_post(&ip1, "/v1/takes/abort", json!({ "command_id": "bb-abort" }));
    assert_eq!(status, 200, "{body}");
    rig.wait_for("node 1 idle", Duration::from_secs(20), |rig| {
        (rig.node_get(1, "/v1/status").1["state"] == "idle").then_some(())
    });
    let (status, v) = put(&rig, "/api/camera-settings", json!({ "exposure_us": 3000 }));
    assert_eq!(status, 200, "{v}");
}

/// The `camrig` CLI (built beside the node) talking to the rig's controller.
fn cli(rig: &Rig) -> Command {
    let bin = crate::harness::node_binary().with_file_name("camrig");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --workspace --bins`",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.arg("--controller")
        .arg(rig.url(""))
        .env("CAMRIG_TOKEN", API_TOKEN)
        .env_remove("CAMRIG_TOKEN_FILE");
    cmd
}

/// `camrig camera-settings set ARGS` against the rig's controller.
fn camrig_cli_settings(rig: &Rig, args: &[&str]) -> std::process::Output {
    cli(rig)
        .args(["camera-settings", "set"])
        .args(args)
        .output()
        .expect("camrig runs")
}

#[test]
fn settings_survive_a_controller_restart_and_a_restarted_node_shows_as_not_matching() {
    let mut rig = RigBuilder::new().nodes(2).start();
    let ip1 = rig.nodes[1].ip.clone();
    let (status, v) = put(
        &rig,
        "/api/camera-settings",
        json!({ "exposure_us": 5000, "analogue_gain": 2.0, "awb": "daylight" }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["nodes"][0]["matches"], true, "{v}");

    rig.kill_controller();
    rig.start_controller();
    let view = rig.wait_for(
        "both nodes read after the restart",
        Duration::from_secs(30),
        |rig| {
            let v = rig.get("/api/camera-settings").1;
            (v["nodes"][0]["error"].is_null() && v["nodes"][1]["error"].is_null()).then_some(v)
        },
    );
    assert_eq!(view["exposure_us"], 5000, "{view}");
    assert_eq!(view["analogue_gain"], 2.0);
    assert_eq!(view["awb"], "daylight");
    assert_eq!(view["nodes"][0]["matches"], true, "{view}");
    assert_eq!(view["nodes"][1]["matches"], true, "{view}");
    assert_eq!(view["mismatched"], json!([]));

    // Node 1 restarts with its config's defaults (automatic): shown as not matching.
    rig.kill_node(1);
    rig.start_node(1);
    let view = rig.wait_for(
        "node 1 back, on its defaults",
        Duration::from_secs(30),
        |rig| {
            let v = rig.get("/api/camera-settings").1;
            v["nodes"][1]["error"].is_null().then_some(v)
        },
    );
    assert_eq!(camera0(&view, 1)["settings"]["exposure_us"], "auto");
    assert_eq!(view["nodes"][1]["matches"], false, "{view}");
    assert_eq!(view["mismatched"], json!([ip1]), "{view}");
    let cli = cli(&rig)
        .args(["camera-settings", "show"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        out.contains("not using the settings last applied") && out.contains(&ip1),
        "{out}"
    );

    // Applied again to that node alone: every node matches.
    let (status, v) = put(
        &rig,
        &format!("/api/camera-settings?nodes={ip1}"),
        json!({ "exposure_us": 5000, "analogue_gain": 2.0, "awb": "daylight" }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(rig.get("/api/camera-settings").1["mismatched"], json!([]));
}
