//! `/metrics` and host health: a node whose health seam reads a fake hot, throttled Pi
//! (a directory laid out like /sys and /proc), scraped before, during and after a take with
//! injected drops; the exposition must parse line by line and the counters must move.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use camrig_protocol::api::DropCause;
use prometheus_parse::{LineInfo, Scrape, Value};

use crate::harness::{Node, TOKEN};

/// A hot Pi 4 that is throttled and under-voltage now.
pub fn fake_hot_pi(root: &Path) {
    for (rel, text) in [
        ("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n"),
        ("sys/class/thermal/thermal_zone0/temp", "84312\n"),
        (
            "sys/devices/platform/soc/soc:firmware/get_throttled",
            "0x50005\n",
        ),
        (
            "proc/meminfo",
            "MemTotal:        3884324 kB\nMemAvailable:    3000000 kB\n",
        ),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Parses a scrape strictly: every line is a comment the format defines or a sample the
/// parser reads (prometheus-parse skips what it cannot read, so that is checked here).
pub fn parse_exposition(text: &str) -> Scrape {
    for line in text.lines() {
        let known_comment = line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line.starts_with("# UNIT ")
            || line == "# EOF";
        assert!(
            known_comment || matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "not exposition format: {line:?}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// `name{labels}` → value, for counters, gauges and untyped samples.
pub fn values(scrape: &Scrape) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for s in &scrape.samples {
        let v = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), v);
    }
    out
}

fn scrape(node: &Node) -> HashMap<String, f64> {
    let r = node.get("/metrics");
    assert_eq!(r.status().as_u16(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    values(&parse_exposition(&r.text().unwrap()))
}

#[test]
fn metrics_move_during_a_take_and_health_reads_the_seam() {
    let fake = tempfile::tempdir().unwrap();
    fake_hot_pi(fake.path());
    let node = Node::builder()
        .codec("mjpeg")
        .synthetic("drop_every = 10")
        .top(&format!(
            "[health]\nsysfs_root = \"{}\"",
            fake.path().display()
        ))
        .start();

    // The rig token guards /metrics like the rest of the API.
    let anonymous = node
        .http
        .get(format!("{}/metrics", node.base))
        .send()
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let wrong = node
        .http
        .get(format!("{}/metrics", node.base))
        .bearer_auth(format!("{TOKEN}x"))
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    let before = scrape(&node);
    assert_eq!(before["camrig_node_state{state=idle}"], 1.0);
    assert_eq!(before["camrig_node_cpu_temperature_celsius{}"], 84.312);
    assert_eq!(before["camrig_node_throttling_known{}"], 1.0);
    assert_eq!(
        before["camrig_node_firmware_flag{flag=throttled,period=now}"],
        1.0
    );
    assert_eq!(
        before["camrig_node_firmware_flag{flag=freq_capped,period=now}"],
        0.0
    );
    assert_eq!(
        before["camrig_node_memory_available_bytes{}"],
        3_000_000.0 * 1024.0
    );
    assert!(before["camrig_node_disk_free_bytes{}"] > 0.0);
    assert!(before["camrig_node_recordable_seconds{}"] > 0.0);

    let start_at = node.start_take("m1", Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(1500));
    let during = scrape(&node);
    assert_eq!(during["camrig_node_state{state=recording}"], 1.0);
    let kept_during = during["camrig_node_frames_kept_total{camera=1}"];
    assert!(kept_during > 10.0, "{kept_during}");
    assert!(
        during["camrig_node_frames_captured_total{camera=1}"]
            > before["camrig_node_frames_captured_total{camera=1}"]
    );
    node.stop_take("m1", start_at + 2_500_000_000);
    let s = node.wait_idle(Duration::from_secs(20));

    let after = scrape(&node);
    let kept = after["camrig_node_frames_kept_total{camera=1}"];
    let gap = after["camrig_node_frames_dropped_total{camera=1,reason=sequence_gap}"];
    assert!(kept > kept_during, "{kept} after {kept_during}");
    let m = node.manifest("m1");
    assert_eq!(
        kept as u64, m.cameras[0].frames,
        "kept = the manifest's frames"
    );
    assert_eq!(
        gap as u64, m.cameras[0].drops,
        "every drop counted with its cause"
    );
    assert!(gap >= 5.0, "every 10th frame of ~75 dropped: {gap}");
    assert_eq!(
        after["camrig_node_take_dropped_frames{camera=1}"],
        m.cameras[0].drops as f64
    );
    // Phase lock, read from the camera's `phase` in the status: exactly one state at 1,
    // and the last second's error quantiles.
    assert!(
        s.cameras[0].phase.is_some(),
        "the synthetic camera runs phase lock"
    );
    let states: f64 = ["locking", "locked", "unavailable"]
        .iter()
        .map(|st| after[&format!("camrig_node_phase_lock_state{{camera=1,state={st}}}")])
        .sum();
    assert_eq!(states, 1.0);
    for q in ["0.5", "0.99"] {
        let e = after[&format!("camrig_node_phase_error_seconds{{camera=1,quantile={q}}}")];
        assert!((0.0..1.0).contains(&e), "phase error {q}: {e}");
    }
    let text = node.get("/metrics").text().unwrap();
    let encoded: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("camrig_node_encode_seconds_count{camera=\"1\"} "))
        .expect("encode-time histogram")
        .parse()
        .unwrap();
    assert!(encoded >= kept, "every kept frame's encode time observed");

    // Status: health from the seam, the drop bursts with their cause.
    let h = s.health.clone().expect("health in status");
    assert_eq!(h.cpu_temp_c, Some(84.312));
    assert!(h.throttling.as_ref().unwrap().under_voltage_now);
    assert!(
        h.take_rate_measured,
        "the take's rate replaces the estimate"
    );
    let bursts = &s.cameras[0].drop_bursts;
    assert!(!bursts.is_empty());
    assert!(bursts
        .iter()
        .all(|b| b.cause == DropCause::SequenceGap && b.frames == 1));

    // The log: each burst with camera, frame index and cause; the take's summary at STOP.
    let log = node.log_text();
    assert!(
        log.lines().any(|l| l.contains("frames dropped")
            && l.contains("camera=1")
            && l.contains("frame_index=")
            && l.contains("cause=\"sequence_gap\"")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("take finished")
            && l.contains(&format!(
                "cam1 {} (sequence_gap {})",
                m.cameras[0].drops, m.cameras[0].drops
            ))),
        "{log}"
    );
}

#[test]
fn a_board_without_firmware_flags_says_unknown() {
    let empty = tempfile::tempdir().unwrap();
    let node = Node::builder()
        .top(&format!(
            "[health]\nsysfs_root = \"{}\"",
            empty.path().display()
        ))
        .start();
    let s = node.status();
    let h = s.health.unwrap();
    assert_eq!(h.cpu_temp_c, None);
    assert_eq!(h.throttling, None, "absent flags are unknown, not fine");
    let m = scrape(&node);
    assert_eq!(m["camrig_node_throttling_known{}"], 0.0);
    assert!(m["camrig_node_cpu_temperature_celsius{}"].is_nan());
    assert!(!m.keys().any(|k| k.starts_with("camrig_node_firmware_flag")));
}
