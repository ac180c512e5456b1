//! The sync report and the export on real takes with injected faults: node 0's camera runs
//! 12 ms behind the grid, node 1 drops every 7th frame. The report made on verification
//! gives exactly those drops, that skew and a `fail`; `--trim common` gives equal frame
//! counts at the `.bin` times (ffprobe); report and export work after a controller restart;
//! a damaged or missing file gets a clear error instead of a report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use camrig_protocol::grid::FrameGrid;
use camrig_protocol::manifest::TakeManifest;
use camrig_sorted_takes::export::{self, Format, Options};
use camrig_sorted_takes::sync_report::SyncReport;
use serde_json::json;

use crate::harness::{Rig, RigBuilder};

const OFFSET_US: f64 = 12_000.0;
const DROP_EVERY: i64 = 7;

/// Every packet's presentation time in seconds, in order.
fn packet_times(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut t: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_end_matches(',').parse().unwrap())
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t
}

/// A node folder's frames: (slot, timestamp) from its `.bin` files, in manifest order.
fn bin_frames(dir: &Path) -> Vec<(i64, i64)> {
    let manifest_path = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("_manifest.json"))
        .unwrap();
    let m = TakeManifest::parse(&std::fs::read_to_string(manifest_path).unwrap()).unwrap();
    let grid = FrameGrid::new(m.cameras[0].fps).unwrap();
    m.cameras[0]
        .segments
        .iter()
        .flat_map(|s| {
            camrig_protocol::timestamps::parse_bin(
                &std::fs::read(dir.join(&s.timestamps_bin)).unwrap(),
            )
            .unwrap()
        })
        .map(|t| (grid.nearest_slot(t), t))
        .collect()
}

/// STOP, DOWNLOAD until verified, then the take once its sync verdict is in.
fn stop_download_and_report(rig: &Rig, take: &str) -> serde_json::Value {
    assert_eq!(rig.post("/api/takes/current/stop", json!({})).0, 200);
    let download = format!("/api/takes/{take}/download");
    assert_eq!(rig.post(&download, json!({})).0, 202);
    rig.wait_download(take, "verified");
    wait_verdict(rig, take)
}

fn wait_verdict(rig: &Rig, take: &str) -> serde_json::Value {
    rig.wait_for(
        &format!("{take} sync verdict"),
        Duration::from_secs(60),
        |rig| {
            let t = rig.take(take);
            (!t["sync_verdict"].is_null() || !t["sync_error"].is_null()).then_some(t)
        },
    )
}

#[test]
fn injected_drops_and_offset_give_exact_report_trimmed_export_and_clear_errors() {
    let mut rig = RigBuilder::new()
        .nodes(2)
        // Node 0 free-runs at a known phase (no lock, no rate error): its frames sit
        // OFFSET_US after every grid instant, where the locked node 1's are on it.
        .synthetic(0, &format!("phase_offset_us = {OFFSET_US}"))
        .synthetic(0, "ppm_range = 0")
        .synthetic(0, "wander_ppm = 0")
        .node_phase(0, "lock = false")
        .synthetic(1, &format!("drop_every = {DROP_EVERY}"))
        .start();
    let take = "sync_faults";
    rig.start_take(take);
    rig.wait_recording(&[0, 1], 20);
    assert_eq!(
        rig.post("/api/takes/current/mark", json!({ "note": "clap" }))
            .0,
        200
    );
    rig.wait_recording(&[0, 1], 120);
    let t = stop_download_and_report(&rig, take);
    assert_eq!(t["sync_verdict"], "fail", "{t}");

    let take_dir = rig.downloads().join(take);
    let report: SyncReport = serde_json::from_slice(
        &std::fs::read(take_dir.join(format!("{take}_sync_report.json"))).unwrap(),
    )
    .unwrap();
    let (_, api_report) = rig.get(&format!("/api/takes/{take}/sync-report"));
    assert_eq!(api_report["verdict"], "fail");

    // Drops: none on node 0; on node 1 exactly the node's own count, DROP_EVERY slots apart.
    let by_ip = |i: usize| {
        report
            .cameras
            .iter()
            .find(|c| c.address == rig.nodes[i].ip)
            .unwrap()
    };
    let (c0, c1) = (by_ip(0), by_ip(1));
    assert!(c0.drops.is_empty(), "{:?}", c0.drops);
    assert_eq!(c0.manifest_drops, 0);
    assert!(c1.drops.len() >= 10, "{:?}", c1.drops);
    // The node counts a drop between frames, and one between START and its first frame by
    // sequence gap; the report calls a slot before the first frame dropped only when it was
    // due a quarter period after START (so the node may count one the report leaves out),
    // and adds the slots after the last frame that were due before STOP.
    let last = c1.last_slot.unwrap();
    let leading = c1
        .drops
        .iter()
        .filter(|d| d.after_frame_index.is_none())
        .count() as u64;
    let interior = c1
        .drops
        .iter()
        .filter(|d| d.after_frame_index.is_some() && d.slot < last)
        .count() as u64;
    assert!(leading <= 1, "{:?}", c1.drops);
    if leading == 1 {
        assert_eq!(c1.manifest_drops, interior + 1);
    } else {
        assert!(
            c1.manifest_drops == interior || c1.manifest_drops == interior + 1,
            "{} vs {:?}",
            c1.manifest_drops,
            c1.drops
        );
    }
    assert!(
        c1.drops
            .windows(2)
            .all(|w| w[1].slot - w[0].slot == DROP_EVERY),
        "{:?}",
        c1.drops
    );
    let bins1 = bin_frames(&take_dir.join(&rig.nodes[1].ip));
    for d in &c1.drops {
        assert!(
            bins1.iter().all(|(s, _)| *s != d.slot),
            "slot {} has a frame",
            d.slot
        );
    }
    // Skew: the injected offset (the shutter wakes within a millisecond of its instant).
    assert!(
        (report.skew_us.p50 - OFFSET_US).abs() < 1_000.0,
        "{:?}",
        report.skew_us
    );
    assert!(
        (c0.grid_deviation_us.p50 - OFFSET_US).abs() < 1_000.0,
        "{:?}",
        c0.grid_deviation_us
    );
    assert!(
        c1.grid_deviation_us.p50 < 1_000.0,
        "{:?}",
        c1.grid_deviation_us
    );
    let bound = report.skew_bound_us.expect("both nodes probed");
    assert!(bound >= report.skew_us.max);
    assert_eq!(report.reasons.len(), 1, "{:?}", report.reasons);
    assert!(
        report.reasons[0].contains("exceeds the tolerance 8333.3"),
        "{:?}",
        report.reasons
    );
    assert!(report
        .clock
        .iter()
        .all(|c| c.offset_start_us.is_some() && c.rtt_stop_us.is_some()));
    assert_eq!(report.markers.len(), 1);
    assert!(report.markers[0]
        .cameras
        .iter()
        .all(|m| m.frame_index.is_some()));

    // The frames table: one row per recorded frame, none in a dropped slot.
    let csv = std::fs::read_to_string(take_dir.join(format!("{take}_frames.csv"))).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("slot,node,camera,segment,frame_index,timestamp_ns"));
    assert_eq!(lines.count() as u64, c0.frames + c1.frames);

    // --trim common: equal frame counts, packets at the .bin times (filled: previous + k·T).
    let out = rig.dir.join("trimmed");
    let opts = Options {
        format: Format::Mkv,
        trim_common: true,
        out_dir: Some(out.clone()),
    };
    let summary = export::export(&take_dir, &opts, |_, _| {}).unwrap();
    assert_eq!(summary.cameras.len(), 2);
    let first_slot = report.common.first_slot.unwrap();
    for (i, cam) in summary.cameras.iter().enumerate() {
        let node = if cam.node == c0.node { 0 } else { 1 };
        let times = packet_times(&out.join(&cam.file));
        assert_eq!(times.len() as u64, report.common.frames, "{}", cam.file);
        assert_eq!(cam.frames, report.common.frames);
        let bins = bin_frames(&take_dir.join(&rig.nodes[node].ip));
        let mut matched = 0;
        for (k, pts) in times.iter().enumerate() {
            let slot = first_slot + k as i64;
            if let Some(&(_, ts)) = bins.iter().find(|(s, _)| *s == slot) {
                let t = summary.origin_ns as f64 + pts * 1e9;
                assert!(
                    (t - ts as f64).abs() < 1e6,
                    "{} frame {k}: {t} vs {ts}",
                    cam.file
                );
                matched += 1;
            } else {
                assert!(
                    cam.filled
                        .iter()
                        .any(|f| f.output_frame == k as u64 && f.slot == slot),
                    "{i} {k}"
                );
            }
        }
        assert_eq!(matched + cam.filled.len(), times.len());
        assert_eq!(
            cam.filled.len(),
            if node == 1 {
                c1.drops
                    .iter()
                    .filter(|d| d.slot >= first_slot && d.slot <= report.common.last_slot.unwrap())
                    .count()
            } else {
                0
            }
        );
    }
    let listed: export::ExportSummary =
        serde_json::from_slice(&std::fs::read(out.join(format!("{take}_export.json"))).unwrap())
            .unwrap();
    assert_eq!(listed, summary);
    // Nothing is overwritten.
    let again = export::export(&take_dir, &opts, |_, _| {}).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");

    // Untrimmed MP4: every recorded frame, at its .bin time, absolute start in the metadata.
    let mp4_out = rig.dir.join("mp4");
    let mp4 = export::export(
        &take_dir,
        &Options {
            format: Format::Mp4,
            trim_common: false,
            out_dir: Some(mp4_out.clone()),
        },
        |_, _| {},
    )
    .unwrap();
    for cam in &mp4.cameras {
        let node = if cam.node == c0.node { 0 } else { 1 };
        let bins = bin_frames(&take_dir.join(&rig.nodes[node].ip));
        let times = packet_times(&mp4_out.join(&cam.file));
        assert_eq!(times.len(), bins.len(), "{}", cam.file);
        for (pts, (_, ts)) in times.iter().zip(&bins) {
            let t = mp4.origin_ns as f64 + pts * 1e9;
            assert!((t - *ts as f64).abs() < 1e6, "{}: {t} vs {ts}", cam.file);
        }
        let tags = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format_tags", "-of", "json"])
            .arg(mp4_out.join(&cam.file))
            .output()
            .unwrap();
        let tags = String::from_utf8_lossy(&tags.stdout);
        assert!(tags.contains(&mp4.origin_ns.to_string()), "{tags}");
    }

    // A controller restart: the verdict is kept, the report is served and made again, and
    // the EXPORT button's route runs to the end with progress.
    rig.kill_controller();
    rig.start_controller();
    assert_eq!(rig.take(take)["sync_verdict"], "fail");
    assert_eq!(rig.get(&format!("/api/takes/{take}/sync-report")).0, 200);
    let (status, again) = rig.post(&format!("/api/takes/{take}/sync-report"), json!({}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["skew_us"]["p50"], json!(report.skew_us.p50));
    let (status, started) = rig.post(
        &format!("/api/takes/{take}/export"),
        json!({ "format": "mkv", "trim_common": true }),
    );
    assert_eq!(status, 202, "{started}");
    let done = rig.wait_for("the export", Duration::from_secs(120), |rig| {
        let t = rig.take(take);
        (t["export"]["state"] != "running").then_some(t)
    });
    assert_eq!(done["export"]["state"], "done", "{done}");
    assert_eq!(done["export"]["cameras_done"], 2);
    for cam in &summary.cameras {
        let times = packet_times(&take_dir.join("export").join(&cam.file));
        assert_eq!(times.len() as u64, report.common.frames);
    }

    // A damaged timestamp file: a clear error naming it, no report; the same for a missing one.
    let bin = take_dir.join(&rig.nodes[1].ip).join(
        &TakeManifest::parse(
            &std::fs::read_to_string(
                std::fs::read_dir(take_dir.join(&rig.nodes[1].ip))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.to_string_lossy().ends_with("_manifest.json"))
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap()
        .cameras[0]
            .segments[0]
            .timestamps_bin,
    );
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&bin, &bytes).unwrap();
    let (status, err) = rig.post(&format!("/api/takes/{take}/sync-report"), json!({}));
    assert_eq!(status, 422, "{err}");
    let e = err["error"].as_str().unwrap();
    assert!(
        e.contains(&bin.display().to_string())
            && e.contains("does not match its manifest sha256")
            && e.contains("download the take again"),
        "{e}"
    );
    assert!(rig.take(take)["sync_error"]
        .as_str()
        .unwrap()
        .contains("sha256"));
    std::fs::remove_file(&bin).unwrap();
    let (status, err) = rig.post(&format!("/api/takes/{take}/sync-report"), json!({}));
    assert_eq!(status, 422);
    assert!(
        err["error"].as_str().unwrap().contains("is missing"),
        "{err}"
    );
    let e = export::export(&take_dir, &opts, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
}

#[test]
fn an_mjpeg_take_exports_at_its_true_times() {
    let rig = RigBuilder::new().nodes(1).codec("mjpeg").start();
    let take = "sync_mjpeg";
    rig.start_take(take);
    rig.wait_recording(&[0], 45);
    let t = stop_download_and_report(&rig, take);
    // One node: its clock is common to its cameras, so the bound is the measured spread.
    assert_eq!(t["sync_verdict"], "pass", "{t}");
    let take_dir = rig.downloads().join(take);
    let summary = export::export(
        &take_dir,
        &Options {
            format: Format::Mkv,
            trim_common: false,
            out_dir: None,
        },
        |_, _| {},
    )
    .unwrap();
    let file = take_dir.join("export").join(&summary.cameras[0].file);
    assert_eq!(
        summary.cameras[0].file,
        format!("{take}_{}.mkv", rig.nodes[0].ip.replace('.', "_"))
    );
    let bins = bin_frames(&take_dir.join(&rig.nodes[0].ip));
    let times = packet_times(&file);
    assert_eq!(times.len(), bins.len());
    for (pts, (_, ts)) in times.iter().zip(&bins) {
        assert!((summary.origin_ns as f64 + pts * 1e9 - *ts as f64).abs() < 1e6);
    }
}
