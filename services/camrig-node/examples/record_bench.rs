//! Benchmark (not a test): records 2 synthetic cameras at 1280×720@30 with the release
//! `camrig-node` binary, once per codec, and prints one JSON object with frames expected vs
//! recorded, drops (by cause, from the node's `/metrics`), the node's CPU use in total and per
//! camera thread (writer = encode + write; render = the synthetic sensor's drawing, which a
//! real camera does in hardware), frame-interval percentiles and bytes per second.
//! `--noise N` is the synthetic sensor's grain (default 12, which gives 720p a real camera's
//! bitrate; 0 records clean bars that compress ~100x better and say nothing about a scene).
//!
//! `cargo run --release -p camrig-node --example record_bench -- --seconds 60 --noise 12`
//! (`ci/node-bench` builds the binary first and runs this).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camrig_protocol::manifest::TakeManifest;
use serde_json::{json, Value};

const CAMERAS: usize = 2;
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: f64 = 30.0;

fn main() {
    let mut seconds = 60u64;
    let mut noise = 12u8;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            "--noise" => {
                noise = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--noise N (0-64)")
            }
            other => {
                panic!("unknown argument {other}; usage: record_bench [--seconds N] [--noise N]")
            }
        }
    }
    let binary = node_binary();
    let mut results = serde_json::Map::new();
    for codec in ["h264", "mjpeg"] {
        results.insert(codec.into(), run(&binary, codec, seconds, noise));
    }
    let out = json!({
        "cameras": CAMERAS, "width": WIDTH, "height": HEIGHT, "fps": FPS, "seconds": seconds,
        "noise": noise,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}

/// The `camrig-node` binary next to this example's directory (same profile).
fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("camrig-node");
    assert!(
        p.exists(),
        "build the node first: cargo build --release -p camrig-node ({} missing)",
        p.display()
    );
    p
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// CPU ticks per thread name (`rec-cam1`, `synthetic-draw1`, …) of process `pid`.
fn thread_ticks(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        *out.entry(name).or_insert(0) += ticks;
    }
    out
}

fn run(binary: &Path, codec: &str, seconds: u64, noise: u8) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nname = \"bench\"\nauth = false\n\
         [recording]\ncodec = \"{codec}\"\nsegment_seconds = 60\nmin_free_mb = 100\n\
         [camera]\nsource = \"synthetic\"\ncount = {CAMERAS}\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n\
         [synthetic]\nnoise = {noise}\n",
        tmp.path().display()
    );
    let cfg = tmp.path().join("node.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn,camrig_node::service=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listen=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("node serving");
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{addr}");
    let now = camrig_protocol::now_unix_ns();
    let start_at = now + 1_000_000_000;
    let stop_at = start_at + seconds as i64 * 1_000_000_000;
    let post = |path: &str, body: Value| {
        let r = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.text().unwrap());
    };
    post(
        "/v1/takes/start",
        json!({"take": "bench", "start_at_ns": start_at, "command_id": "s"}),
    );
    post(
        "/v1/takes/stop",
        json!({"stop_at_ns": stop_at, "command_id": "e"}),
    );
    std::thread::sleep(Duration::from_millis(1000));
    let pid = child.id();
    let (t0, w0) = (cpu_ticks(pid), Instant::now());
    let threads0 = thread_ticks(pid);
    let mut threads1 = threads0.clone();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    loop {
        let s: Value = http
            .get(format!("{base}/v1/status"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if s["state"] == "idle" || Instant::now() > deadline {
            break;
        }
        // Writer threads end with the take: keep their last reading.
        threads1.extend(thread_ticks(pid));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (t1, wall) = (cpu_ticks(pid), w0.elapsed().as_secs_f64());
    // /proc/<pid>/stat counts in USER_HZ, which Linux fixes at 100 on every architecture.
    let hz = 100.0;
    let cpu_percent = (t1 - t0) as f64 / hz / wall * 100.0;
    let thread_percent = |name: &str| {
        let used = threads1.get(name).copied().unwrap_or(0)
            - threads0
                .get(name)
                .copied()
                .unwrap_or(0)
                .min(threads1.get(name).copied().unwrap_or(0));
        (used as f64 / hz / wall * 1000.0).round() / 10.0
    };
    let per_camera: Vec<Value> = (1..=CAMERAS)
        .map(|c| {
            json!({
                "writer_cpu_percent": thread_percent(&format!("rec-cam{c}")),
                "render_cpu_percent": thread_percent(&format!("synthetic-draw{c}")),
                "shutter_cpu_percent": thread_percent(&format!("synthetic-cam{c}")),
            })
        })
        .collect();
    // Drops by cause, as the node counts them for Prometheus.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let drops_by_cause: serde_json::Map<String, Value> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("camrig_node_frames_dropped_total{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            Some((labels.replace('"', ""), json!(value.parse::<f64>().ok()?)))
        })
        .collect();
    let m: TakeManifest = TakeManifest::parse(
        &http
            .get(format!("{base}/v1/takes/bench/manifest"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    )
    .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    let dir = tmp.path().join("recordings/bench");
    let mut intervals = Vec::new();
    let mut video_bytes = 0u64;
    for cam in &m.cameras {
        let mut ts = Vec::new();
        for seg in &cam.segments {
            ts.extend(
                camrig_protocol::timestamps::parse_bin(
                    &std::fs::read(dir.join(&seg.timestamps_bin)).unwrap(),
                )
                .unwrap(),
            );
            video_bytes += m.file(&seg.video).map(|f| f.bytes).unwrap_or(0);
        }
        intervals.extend(ts.windows(2).map(|w| w[1] - w[0]));
    }
    intervals.sort_unstable();
    let pct = |p: f64| {
        intervals
            .get(((intervals.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e6
    };
    let expected = (seconds as f64 * FPS).round() as u64;
    json!({
        "frames_expected_per_camera": expected,
        "frames_recorded": m.cameras.iter().map(|c| c.frames).collect::<Vec<_>>(),
        "drops": m.cameras.iter().map(|c| c.drops).collect::<Vec<_>>(),
        "drops_by_cause": drops_by_cause,
        "node_cpu_percent": (cpu_percent * 10.0).round() / 10.0,
        "per_camera": per_camera,
        "interval_ms_p50": pct(0.5),
        "interval_ms_p99": pct(0.99),
        "video_bytes_per_second": (video_bytes as f64 / seconds as f64).round(),
        "stop_reason": m.stop_reason,
    })
}
