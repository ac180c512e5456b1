//! Rig-wide camera settings through the controller's API, on real nodes with synthetic
//! cameras: applied settings show in each node's per-frame metadata and in the recorded
//! pixels (decoded with ffmpeg), LOCK copies a reference camera's values to every camera,
//! a bad value is a 400 naming the camera and its range, and nothing changes mid-take.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Rig, RigBuilder};

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
