//! Observability end to end: both `/metrics` scraped during a take (counters move, the
//! exposition parses), a node made hot and throttled through its health seam holding START
//! back until the override, and the webhook receiving the take's events in order.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value as PromValue};
use serde_json::{json, Value};

use crate::harness::{Rig, RigBuilder, API_TOKEN, NODE_PORT, TOKEN};

/// Strict parse: every line a defined comment or a sample the parser reads.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    for line in text.lines() {
        let comment = line.starts_with("# HELP ")
            || line.starts_with("# TYPE ")
            || line.starts_with("# UNIT ")
            || line == "# EOF";
        assert!(
            comment || matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "not exposition format: {line:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let mut out = HashMap::new();
    for s in &scrape.samples {
        let v = match s.value {
            PromValue::Counter(v) | PromValue::Gauge(v) | PromValue::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), v);
    }
    // Histograms: their _count line, read as text.
    for line in text.lines() {
        if let Some((name, value)) = line.split_once(' ') {
            if name.contains("_count") {
                out.insert(name.replace('"', ""), value.parse().unwrap());
            }
        }
    }
    out
}

fn scrape(rig: &Rig, url: String, token: Option<&str>) -> HashMap<String, f64> {
    let mut req = rig.http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    parse_exposition(&r.text().unwrap())
}

/// A one-thread HTTP server recording every POST body; the first request is answered 500
/// so the controller's retry is exercised.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let status = if first {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            if !first {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
            }
            first = false;
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, got)
}

#[test]
fn metrics_move_during_a_take_and_the_webhook_hears_it_in_order() {
    let (url, events) = webhook_receiver();
    let rig = RigBuilder::new()
        .nodes(1)
        .controller(&format!(
            "[webhook]\nurl = \"{url}\"\ntimeout_ms = 2000\nretries = 3"
        ))
        .start();
    let node_metrics = format!("http://{}:{NODE_PORT}/metrics", rig.nodes[0].ip);
    let controller_metrics = rig.url("/metrics");
    let address = rig.nodes[0].ip.clone();

    rig.wait_for("node reachable", Duration::from_secs(20), |r| {
        (r.get("/api/rig").1["nodes"][0]["reachable"] == true).then_some(())
    });
    let before = scrape(&rig, controller_metrics.clone(), Some(API_TOKEN));
    assert_eq!(
        before[&format!("camrig_controller_node_reachable{{node={address}}}")],
        1.0
    );
    assert_eq!(before["camrig_controller_takes_started_total{}"], 0.0);

    rig.start_take("obs_01");
    rig.wait_recording(&[0], 15);
    let node_during = scrape(&rig, node_metrics.clone(), Some(TOKEN));
    let kept_during = node_during["camrig_node_frames_kept_total{camera=1}"];
    assert!(kept_during >= 15.0, "{kept_during}");
    assert_eq!(node_during["camrig_node_state{state=recording}"], 1.0);
    let during = scrape(&rig, controller_metrics.clone(), Some(API_TOKEN));
    assert_eq!(during["camrig_controller_takes_started_total{}"], 1.0);
    assert_eq!(
        during["camrig_controller_start_fanout_seconds_count{}"],
        1.0
    );
    assert_eq!(
        during[&format!("camrig_controller_node_recording{{node={address}}}")],
        1.0
    );
    assert!(during[&format!("camrig_controller_node_clock_rtt_seconds{{node={address}}}")] > 0.0);
    assert!(
        during[&format!("camrig_controller_node_clock_offset_seconds{{node={address}}}")]
            .is_finite()
    );

    std::thread::sleep(Duration::from_millis(500));
    let node_later = scrape(&rig, node_metrics, Some(TOKEN));
    assert!(
        node_later["camrig_node_frames_kept_total{camera=1}"] > kept_during,
        "kept frames move"
    );

    let (status, stopped) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200, "{stopped}");
    let (status, body) = rig.post("/api/takes/obs_01/download", json!({}));
    assert_eq!(status, 202, "{body}");
    rig.wait_download("obs_01", "verified");
    let m = rig.node_manifest(0, "obs_01");
    let after = scrape(&rig, controller_metrics, Some(API_TOKEN));
    assert_eq!(
        after[&format!("camrig_controller_download_files_verified_total{{node={address}}}")]
            as usize,
        m.files.len() + 1,
        "every file and the manifest"
    );
    assert!(after[&format!("camrig_controller_download_bytes_total{{node={address}}}")] > 0.0);
    assert_eq!(
        after[&format!("camrig_controller_download_failures_total{{node={address}}}")],
        0.0
    );

    // The webhook: started, stopped, downloaded, in that order, the first POST retried.
    let got = rig.wait_for("three webhook events", Duration::from_secs(20), |_| {
        let e = events.lock().unwrap();
        (e.len() >= 3).then(|| e.clone())
    });
    let kinds: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["take_started", "take_stopped", "take_downloaded"],
        "{got:?}"
    );
    assert!(got.iter().all(|e| e["take"] == "obs_01"));
    assert!(got[0]["at_ns"].as_i64() <= got[1]["at_ns"].as_i64());
    assert_eq!(got[2]["node"], address.as_str());
    assert_eq!(got[2]["files"].as_u64(), Some(m.files.len() as u64 + 1));
}

fn fake_hot_pi(root: &Path) {
    for (rel, text) in [
        ("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n"),
        ("sys/class/thermal/thermal_zone0/temp", "86000\n"),
        (
            "sys/devices/platform/soc/soc:firmware/get_throttled",
            "0x50005\n",
        ),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn a_hot_throttled_node_holds_start_back_until_overridden() {
    let fake = tempfile::tempdir().unwrap();
    fake_hot_pi(fake.path());
    let healthy = tempfile::tempdir().unwrap();
    let rig = RigBuilder::new()
        .nodes(2)
        .node_config(
            1,
            &format!("[health]\nsysfs_root = \"{}\"", fake.path().display()),
        )
        .node_config(
            0,
            &format!("[health]\nsysfs_root = \"{}\"", healthy.path().display()),
        )
        .start();
    let hot = rig.nodes[1].ip.clone();
    let view = rig.wait_for("health warning", Duration::from_secs(20), |r| {
        let v = r.get("/api/rig").1;
        v["nodes"][1]["health_warning"].is_string().then_some(v)
    });
    let warning = view["nodes"][1]["health_warning"].as_str().unwrap();
    assert!(
        warning.contains(&hot)
            && warning.contains("under-voltage")
            && warning.contains("throttled")
            && warning.contains("86.0 °C"),
        "{warning}"
    );
    assert!(view["nodes"][0]["health_warning"].is_null(), "{view}");
    assert_eq!(
        view["nodes"][0]["status"]["health"]["throttling"],
        Value::Null,
        "unknown, not fine"
    );
    assert!(!view["start_ready"].as_bool().unwrap());

    rig.wait_for("clocks measured", Duration::from_secs(20), |r| {
        let v = r.get("/api/rig").1;
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["start_blocker"].is_null())
            .then_some(())
    });
    let (status, body) = rig.post("/api/takes", json!({ "name": "hot_01" }));
    assert_eq!(status, 409, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(
        e.contains(&hot) && e.contains("override the health check"),
        "{e}"
    );

    // A planned take longer than the disk holds is refused on the healthy node too.
    let (status, body) = rig.post(
        "/api/takes",
        json!({ "name": "hot_01", "override_health": false, "planned_seconds": 1_000_000_000u64 }),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("disk holds"),
        "{body}"
    );

    let (status, take) = rig.post(
        "/api/takes",
        json!({ "name": "hot_01", "override_health": true }),
    );
    assert_eq!(status, 201, "{take}");
    let note = take["override_note"].as_str().unwrap();
    assert!(
        note.contains("health override") && note.contains(&hot),
        "{note}"
    );
    let (status, _) = rig.post("/api/takes/current/stop", json!({}));
    assert_eq!(status, 200);
    assert!(rig.take("hot_01")["override_note"]
        .as_str()
        .unwrap()
        .contains("throttled"));
}
