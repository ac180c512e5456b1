//! What `rig-bench` measures, on real rigs of real processes:
//!
//! - `start_spread_ms`: per take, max − min of the nodes' first-frame timestamps. Every host
//!   shares the machine's clock, so this is the system's own scheduling error, not clock error.
//! - `arm_latency_ms`: from sending START to the controller's answer that every node is armed.
//! - `mark_latency_ms`: from sending MARK to the controller's answer.
//! - `download_ratio`: aggregate DOWNLOAD & SORT rate (rsync over ssh, verification included)
//!   ÷ the controller's link rate, with nodes on slower links, in parallel and one node after
//!   another.
//! - `phase`: nodes with one sensor-model camera each (random rate error and phase), once
//!   with the phase lock and once free-running: per grid slot, the spread of the cameras'
//!   frame timestamps over a long take (`skew_us`), and how long each camera took from its
//!   start to `locked` (`lock_ms`).

use std::time::{Duration, Instant};

use camrig_protocol::now_unix_ns;
use serde_json::{json, Value};

use camrig_protocol::manifest::TakeManifest;

use crate::error::{Result, RigError};
use crate::link_shaping::Shaping;
use crate::rig::Rig;
use crate::services::NodeSettings;

/// What to run; the defaults are the figures.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub takes: usize,
    pub spread_nodes: usize,
    pub arm_nodes: Vec<usize>,
    pub download_nodes: usize,
    pub node_link_mbit: f64,
    pub controller_link_mbit: f64,
    /// Frame size and rate of the download take; the synthetic camera's grain gives it a real
    /// camera's bytes (clean bars would make a few MB, all overhead and no rate).
    pub download_frame: (u32, u32),
    pub download_fps: u32,
    pub download_noise: u8,
    pub download_take_secs: f64,
    /// Nodes and seconds recorded for the phase-lock measurement.
    pub phase_nodes: usize,
    pub phase_take_secs: f64,
    /// Which measurements to run (each builds its own rig); all of them by default.
    pub parts: Vec<Part>,
}

/// One measurement of the bench, runnable alone while its cause is being looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Start spread and mark latency (and arm latency at the spread rig's size).
    Spread,
    /// Arm latency at the other rig sizes.
    Arm,
    Download,
    /// Phase lock: frame skew across nodes with the loop and free-running.
    Phase,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Spread, Part::Arm, Part::Download, Part::Phase];

    pub fn parse(s: &str) -> std::result::Result<Part, String> {
        match s {
            "spread" => Ok(Part::Spread),
            "arm" => Ok(Part::Arm),
            "download" => Ok(Part::Download),
            "phase" => Ok(Part::Phase),
            _ => Err(format!(
                "unknown part {s:?}: use spread, arm, download or phase"
            )),
        }
    }
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            takes: 20,
            spread_nodes: 10,
            arm_nodes: vec![10, 50],
            download_nodes: 4,
            node_link_mbit: 100.0,
            controller_link_mbit: 300.0,
            download_frame: (1280, 720),
            download_fps: 15,
            download_noise: 12,
            download_take_secs: 30.0,
            phase_nodes: 10,
            phase_take_secs: 60.0,
            parts: Part::ALL.to_vec(),
        }
    }
}

fn bench_rig(nodes: usize) -> crate::rig::RigBuilder {
    Rig::builder().nodes(nodes)
}

/// Nearest-rank percentile of an ascending slice (`p` in 0..=100).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `{p50, p99, max, samples}` of a set of samples.
pub fn summary(samples: &[f64]) -> Value {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    json!({
        "p50": round3(percentile(&s, 50.0)),
        "p99": round3(percentile(&s, 99.0)),
        "max": round3(s.last().copied().unwrap_or(f64::NAN)),
        "samples": s.len(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Sleeps until the wall clock passes `at_ns` (a scheduled instant, not a guess).
fn sleep_until_ns(at_ns: i64) {
    let left = at_ns - now_unix_ns();
    if left > 0 {
        std::thread::sleep(Duration::from_nanos(left as u64));
    }
}

fn start_at_of(take: &Value) -> Result<i64> {
    take["start_at_ns"]
        .as_i64()
        .ok_or_else(|| RigError::Invalid(format!("START answer has no start_at_ns: {take}")))
}

/// One START timed, checked that every node armed; returns the take and the latency.
fn timed_start(rig: &Rig, name: &str) -> Result<(Value, f64)> {
    let t = Instant::now();
    let take = rig.start_take(name)?;
    let ms = ms_since(t);
    let nodes = take["nodes"].as_array().cloned().unwrap_or_default();
    if nodes.len() != rig.nodes().len()
        || nodes
            .iter()
            .any(|n| n["state"] != "armed" && n["state"] != "recording")
    {
        return Err(RigError::Invalid(format!("not every node armed: {take}")));
    }
    Ok((take, ms))
}

const IDLE: Duration = Duration::from_secs(20);

/// `takes` short takes on a rig: START (timed), MARK (timed) once recording, STOP.
/// Returns (take names, arm latencies, mark latencies).
fn run_takes(
    rig: &Rig,
    prefix: &str,
    takes: usize,
    with_mark: bool,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<String>, Vec<f64>, Vec<f64>)> {
    let (mut names, mut arm, mut mark) = (Vec::new(), Vec::new(), Vec::new());
    // Takes on a running rig, as an operator's are: not while the just-started controller is
    // still making its ssh connections to every node (at 50 nodes, 50 key exchanges on the
    // same two cores as the nodes, which doubled the first takes' arm latency).
    rig.wait_ssh_masters_up(Duration::from_secs(120))?;
    for k in 0..takes {
        rig.wait_start_ready(Duration::from_secs(60))?;
        let name = format!("{prefix}_{k:03}");
        let (take, ms) = timed_start(rig, &name)?;
        arm.push(ms);
        // Into the take by a few frames, so every node has its first frame and a mark lands
        // inside the recording.
        sleep_until_ns(start_at_of(&take)? + 300_000_000);
        if with_mark {
            let t = Instant::now();
            rig.mark_take(&format!("bench mark {k}"))?;
            mark.push(ms_since(t));
        }
        rig.stop_take()?;
        rig.wait_rig_idle(IDLE)?;
        log(&format!("{name}: arm {ms:.1} ms"));
        names.push(name);
    }
    Ok((names, arm, mark))
}

/// A frame's signed distance from the nearest slot of the rig's grid (frame starts locked
/// by the phase lock sit on it; negative = early), in ms.
fn lateness_ms(ts: i64, fps: u32) -> f64 {
    match camrig_protocol::grid::FrameGrid::new(f64::from(fps)) {
        Ok(grid) => grid.phase_error_ns(ts) as f64 / 1e6,
        Err(_) => f64::NAN,
    }
}

/// Every frame timestamp a node wrote for `take` (its segments' `.bin` files).
fn frame_timestamps(rig: &Rig, node: usize, m: &TakeManifest) -> Result<Vec<i64>> {
    let dir = rig.node(node).recordings().join(m.take.as_str());
    let mut out = Vec::new();
    for seg in m.cameras.iter().flat_map(|c| &c.segments) {
        let path = dir.join(&seg.timestamps_bin);
        let bytes =
            std::fs::read(&path).map_err(RigError::io(format!("reading {}", path.display())))?;
        out.extend(
            bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))),
        );
    }
    Ok(out)
}

/// The start spread of each take, and where it comes from: how late each node's first
/// frame and every frame were behind their grid slots (a spread made of one late wake-up
/// looks different from one node starting a slot later).
struct Spreads {
    spread_ms: Vec<f64>,
    first_frame_late_ms: Vec<f64>,
    all_frames_late_ms: Vec<f64>,
    /// The widest take: its name, spread, and each node's first-frame lateness.
    worst: Value,
}

fn spreads(rig: &Rig, names: &[String], fps: u32) -> Result<Spreads> {
    let mut out = Spreads {
        spread_ms: Vec::new(),
        first_frame_late_ms: Vec::new(),
        all_frames_late_ms: Vec::new(),
        worst: Value::Null,
    };
    let mut widest = -1.0;
    for name in names {
        rig.wait_manifests_final(name, IDLE)?;
        let mut firsts = Vec::new();
        let mut late = Vec::new();
        for i in 0..rig.nodes().len() {
            let m = rig.manifest(i, name)?;
            let first = m
                .cameras
                .first()
                .and_then(|c| c.first_frame_ns)
                .ok_or_else(|| {
                    RigError::Invalid(format!("node {i} recorded no frame in {name}"))
                })?;
            firsts.push(first);
            late.push(lateness_ms(first, fps));
            out.all_frames_late_ms.extend(
                frame_timestamps(rig, i, &m)?
                    .into_iter()
                    .map(|ts| lateness_ms(ts, fps)),
            );
        }
        let spread = (firsts.iter().max().expect("nodes") - firsts.iter().min().expect("nodes"))
            as f64
            / 1e6;
        if spread > widest {
            widest = spread;
            out.worst = json!({
                "take": name,
                "spread_ms": round3(spread),
                "first_frame_late_ms": late.iter().map(|l| round3(*l)).collect::<Vec<_>>(),
                "first_frame_ns": firsts,
            });
        }
        out.first_frame_late_ms.extend(late);
        out.spread_ms.push(spread);
    }
    Ok(out)
}

/// The machine's CPU steal time so far (`/proc/stat`, in 10 ms ticks), if it says.
fn steal_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().next()?.split_whitespace().nth(8)?.parse().ok()
}

/// `arm_ms` of every node's `take armed` log lines: how long each node took to arm.
fn node_arm_ms(rig: &Rig) -> Vec<f64> {
    node_log_values(rig, "take armed", "arm_ms", usize::MAX)
}

/// `field` of the nodes' log lines that contain `event`: the first `per_node` of each node.
fn node_log_values(rig: &Rig, event: &str, field: &str, per_node: usize) -> Vec<f64> {
    rig.nodes()
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(n.dir.join("camrig-node.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(event))
                .filter_map(|l| field_f64(l, field))
                .take(per_node)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A `key=value` number from a log line.
fn field_f64(line: &str, key: &str) -> Option<f64> {
    let v = line.split(&format!("{key}=")).nth(1)?;
    v.split_whitespace().next()?.parse().ok()
}

/// `key` of the controller's START log lines: its parts of each arm latency. `prepare_ms`
/// (checks and the take record), `fanout_ms` (waiting for the nodes), `first_ms` and
/// `median_ms` (when the first and the median node answered) and `slowest_ms` are in
/// `start fanned out`; `record_ms` (bookkeeping after the fan-out) and `total_ms` (the whole
/// START inside the controller) in `start answered`.
fn start_log_ms(rig: &Rig, key: &str) -> Vec<f64> {
    let line = match key {
        "record_ms" | "total_ms" => "start answered",
        _ => "start fanned out",
    };
    rig.controller_log_lines(line)
        .iter()
        .filter_map(|l| field_f64(l, key))
        .collect()
}

/// The controller's parts of the arm latency next to the nodes' own arm time.
fn arm_parts(rig: &Rig, latencies: &[f64]) -> Value {
    let mut v = summary(latencies);
    for (name, key) in [
        ("controller_prepare", "prepare_ms"),
        ("controller_fanout", "fanout_ms"),
        ("controller_first_answer", "first_ms"),
        ("controller_median_answer", "median_ms"),
        ("controller_record", "record_ms"),
        ("controller_total", "total_ms"),
    ] {
        v[name] = summary(&start_log_ms(rig, key));
    }
    v["node_arm"] = summary(&node_arm_ms(rig));
    // Each take's latency with the node the fan-out waited for, in take order: an outlier
    // shows whether it was one slow node or the controller.
    v["per_take"] = json!(latencies
        .iter()
        .zip(rig.controller_log_lines("start fanned out").iter().zip(
            rig.controller_log_lines("start answered")
        ))
        .map(|(ms, (fanned, answered))| json!({
            "ms": round3(*ms),
            "fanout_ms": field_f64(fanned, "fanout_ms").map(round3),
            "slowest": fanned.split("slowest_node=").nth(1).and_then(|v| v.split_whitespace().next()),
            "record_ms": field_f64(&answered, "record_ms").map(round3),
        }))
        .collect::<Vec<_>>());
    v
}

/// What the arm latency times, said in the output.
const ARM_MEASURE: &str = "from the START request to the controller's reply with every node armed, on a running rig (the controller's ssh connections to every node up), one take after another with the rig idle between them";

/// What the download ratio times, said in the output.
const DOWNLOAD_MEASURE: &str = "wall time from the DOWNLOAD request to every node's files verified against its manifest (sha256) and sorted, on a running controller (ssh masters up), the nodes' idle synthetic cameras rendering at nice 19 (on a real rig each renders on its own Pi, not on the controller's cores); bytes are the manifests' file sizes";

/// The controller's per-node phase timings (`download timings` log lines) logged since
/// `seen` of them, as `key=value` text.
fn phase_lines(rig: &Rig, seen: usize) -> Vec<String> {
    rig.controller_log_lines("download timings")
        .into_iter()
        .skip(seen)
        .map(|l| match l.find("download timings") {
            Some(i) => l[i + "download timings".len()..].trim().to_owned(),
            None => l,
        })
        .collect()
}

/// Downloads `take` and returns the wall time from the request to every node verified.
fn timed_download(rig: &Rig, take: &str) -> Result<Duration> {
    let t = Instant::now();
    rig.download_take(take)?;
    let done = crate::wait::until(
        &format!("download of {take}"),
        Duration::from_secs(600),
        || {
            rig.take(take).ok().filter(|v| {
                v["nodes"].as_array().is_some_and(|n| {
                    n.iter()
                        .all(|n| n["download"] == "verified" || n["download"] == "failed")
                })
            })
        },
    )?;
    let elapsed = t.elapsed();
    if done["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["download"] != "verified")
    {
        return Err(RigError::Invalid(format!(
            "download of {take} failed: {done}"
        )));
    }
    Ok(elapsed)
}

fn download_ratio(o: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<Value> {
    let (w, h) = o.download_frame;
    let mut rig = bench_rig(o.download_nodes)
        .node_settings(NodeSettings {
            width: w,
            height: h,
            fps: o.download_fps,
            noise: o.download_noise,
            segment_seconds: 4,
            ..NodeSettings::default()
        })
        .download_parallelism(o.download_nodes as u32)
        .build()?;
    for i in 0..o.download_nodes {
        rig.shape_node(i, &Shaping::rate(o.node_link_mbit))?;
    }
    rig.shape_controller(&Shaping::rate(o.controller_link_mbit))?;
    rig.wait_start_ready(Duration::from_secs(60))?;
    let take = "bench_download";
    let started = rig.start_take(take)?;
    sleep_until_ns(start_at_of(&started)? + (o.download_take_secs * 1e9) as i64);
    rig.stop_take()?;
    rig.wait_rig_idle(IDLE)?;
    rig.wait_manifests_final(take, IDLE)?;
    let (mut bytes, mut frames, mut drops) = (0u64, 0u64, 0u64);
    for i in 0..o.download_nodes {
        let m = rig.manifest(i, take)?;
        bytes += m.files.iter().map(|f| f.bytes).sum::<u64>();
        frames += m.cameras.iter().map(|c| c.frames).sum::<u64>();
        drops += m.cameras.iter().map(|c| c.drops).sum::<u64>();
    }
    log(&format!(
        "download take: {:.1} MB on {} nodes",
        bytes as f64 / 1e6,
        o.download_nodes
    ));

    // The take history is copied so the same take can be downloaded again, one node at a
    // time, into a fresh downloads directory.
    rig.stop_controller();
    let data = rig.controller_settings().data_dir.clone();
    let data_seq = data.with_file_name("data-sequential");
    crate::netns::run(
        "cp",
        &[
            "-a",
            &data.display().to_string(),
            &data_seq.display().to_string(),
        ],
    )?;
    rig.start_controller()?;
    rig.wait_start_ready(Duration::from_secs(60))?;
    // The controller was restarted only to copy its take history: measure the download of
    // a running controller, whose ssh masters are up, not of one still making its
    // connections (that wait is in the phase timings of a download started right away).
    rig.wait_ssh_masters_up(Duration::from_secs(60))?;

    let lowered = rig.lower_camera_rendering_priority()?;
    log(&format!(
        "{lowered} camera rendering threads at nice 19 for the downloads"
    ));
    let seen = rig.controller_log_lines("download timings").len();
    let parallel = timed_download(&rig, take)?;
    rig.verify_sorted_download(take, &(0..o.download_nodes).collect::<Vec<_>>())?;
    log(&format!("parallel download: {parallel:?}"));
    let parallel_phases = phase_lines(&rig, seen);
    for l in &parallel_phases {
        log(&format!("  {l}"));
    }

    let downloads_seq = rig
        .downloads_dir
        .with_file_name("video_downloads-sequential");
    rig.restart_controller(|s| {
        s.data_dir = data_seq;
        s.downloads_dir = downloads_seq;
        s.download_parallelism = 1;
    })?;
    rig.wait_start_ready(Duration::from_secs(60))?;
    rig.wait_ssh_masters_up(Duration::from_secs(60))?;
    let seen = rig.controller_log_lines("download timings").len();
    let sequential = timed_download(&rig, take)?;
    log(&format!("sequential download: {sequential:?}"));
    let sequential_phases = phase_lines(&rig, seen);
    for l in &sequential_phases {
        log(&format!("  {l}"));
    }

    let mbit = |d: Duration| bytes as f64 * 8.0 / d.as_secs_f64() / 1e6;
    Ok(json!({
        "parallel": round3(mbit(parallel) / o.controller_link_mbit),
        "sequential": round3(mbit(sequential) / o.controller_link_mbit),
        "parallel_mbit_s": round3(mbit(parallel)),
        "sequential_mbit_s": round3(mbit(sequential)),
        "bytes": bytes,
        // A loaded machine renders fewer grainy frames (drops): a smaller take, whose fixed
        // costs weigh more in the ratio.
        "take_frames": frames,
        "take_drops": drops,
        "nodes": o.download_nodes,
        "node_link_mbit": o.node_link_mbit,
        "controller_link_mbit": o.controller_link_mbit,
        "frame": format!("{w}x{h}@{} mjpeg, grain ±{}", o.download_fps, o.download_noise),
        "take_seconds": o.download_take_secs,
        "parallel_s": round3(parallel.as_secs_f64()),
        "sequential_s": round3(sequential.as_secs_f64()),
        "measured": DOWNLOAD_MEASURE,
        "phases": { "parallel": parallel_phases, "sequential": sequential_phases },
    }))
}

/// What the phase measurement times, said in the output.
const PHASE_MEASURE: &str = "one take per mode on a rig of nodes with one synthetic camera each (a sensor model: its own oscillator, random within ±30 ppm with slow wander, a random start phase, 18.904 µs lines, durations applied 2 frames late, 2 µs timestamp noise, 60 fps maximum), started once every camera is locked (with the loop) or at once (free-running); skew_us: per grid slot that every camera recorded, max − min of their frame timestamps; lock_ms: from each camera's first frame to `locked` (its `phase locked` log line). Every node reads the same CLOCK_REALTIME here: the clock error between Pis is not in these numbers";

/// Frame timestamps of every node for `take`, grouped by grid slot: the spread (µs) of each
/// slot every node recorded, and each frame's distance from its slot (µs).
fn slot_skews(rig: &Rig, take: &str, fps: u32) -> Result<(Vec<f64>, Vec<f64>)> {
    use std::collections::BTreeMap;
    let grid = camrig_protocol::grid::FrameGrid::new(f64::from(fps))
        .map_err(|e| RigError::Invalid(e.to_string()))?;
    let mut slots: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut errors = Vec::new();
    for i in 0..rig.nodes().len() {
        let m = rig.manifest(i, take)?;
        for ts in frame_timestamps(rig, i, &m)? {
            slots.entry(grid.nearest_slot(ts)).or_default().push(ts);
            errors.push(grid.phase_error_ns(ts).abs() as f64 / 1e3);
        }
    }
    let n = rig.nodes().len();
    let skews = slots
        .values()
        .filter(|ts| ts.len() == n)
        .map(|ts| (ts.iter().max().expect("n > 0") - ts.iter().min().expect("n > 0")) as f64 / 1e3)
        .collect();
    Ok((skews, errors))
}

/// `lock_ms` of every node's `phase locked` log lines.
fn node_lock_ms(rig: &Rig) -> Vec<f64> {
    node_log_values(rig, "phase locked", "lock_ms", 1)
}

/// One phase-lock mode: a rig, one long take once START is allowed, its slot skews.
fn phase_mode(o: &BenchOptions, lock: bool, log: &mut dyn FnMut(&str)) -> Result<Value> {
    let settings = NodeSettings {
        phase_lock: lock,
        segment_seconds: 10,
        ..NodeSettings::default()
    };
    let fps = settings.fps;
    let rig = bench_rig(o.phase_nodes).node_settings(settings).build()?;
    let began = Instant::now();
    // With the loop, START is refused until every camera is locked.
    rig.wait_start_ready(Duration::from_secs(60))?;
    let ready_ms = ms_since(began);
    let name = if lock {
        "bench_phase_locked"
    } else {
        "bench_phase_free"
    };
    let (take, _) = timed_start(&rig, name)?;
    let start_at = start_at_of(&take)?;
    log(&format!(
        "{name}: recording {} s on {} nodes",
        o.phase_take_secs, o.phase_nodes
    ));
    sleep_until_ns(start_at + (o.phase_take_secs * 1e9) as i64);
    rig.stop_take()?;
    rig.wait_rig_idle(IDLE)?;
    rig.wait_manifests_final(name, IDLE)?;
    let (skews, errors) = slot_skews(&rig, name, fps)?;
    let mut lock_losses = 0;
    let mut outside = 0;
    for i in 0..rig.nodes().len() {
        for c in rig.manifest(i, name)?.cameras {
            if let Some(p) = c.phase {
                lock_losses += p.lock_losses;
                outside += p.frames_outside_tolerance;
            }
        }
    }
    let mut v = json!({
        "skew_us": summary(&skews),
        "frame_error_us": summary(&errors),
        "start_ready_ms": round3(ready_ms),
    });
    if lock {
        v["lock_ms"] = summary(&node_lock_ms(&rig));
        v["lock_losses"] = json!(lock_losses);
        v["frames_outside_tolerance"] = json!(outside);
    }
    Ok(v)
}

/// Runs the measurements `o.parts` asks for and returns the JSON object `rig-bench` prints.
pub fn run(o: &BenchOptions, log: &mut dyn FnMut(&str)) -> Result<Value> {
    let mut out = serde_json::Map::new();
    let mut arm = serde_json::Map::new();
    let fps = NodeSettings::default().fps;

    if o.parts.contains(&Part::Spread) {
        log(&format!(
            "start spread: {} takes on {} nodes",
            o.takes, o.spread_nodes
        ));
        let rig = bench_rig(o.spread_nodes).build()?;
        let steal_before = steal_ticks();
        let (names, arm_spread, marks) = run_takes(&rig, "bench_spread", o.takes, true, log)?;
        let stolen = steal_ticks().zip(steal_before).map(|(a, b)| a - b);
        let arm_summary = arm_parts(&rig, &arm_spread);
        let s = spreads(&rig, &names, fps)?;
        drop(rig);
        arm.insert(format!("nodes_{}", o.spread_nodes), arm_summary);
        let mut spread_summary = summary(&s.spread_ms);
        spread_summary["nodes"] = json!(o.spread_nodes);
        spread_summary["first_frame_late"] = summary(&s.first_frame_late_ms);
        spread_summary["all_frames_late"] = summary(&s.all_frames_late_ms);
        spread_summary["widest"] = s.worst;
        // Time the hypervisor ran something else on this VM's CPUs while the takes ran: a
        // frame due then is late however its thread is scheduled inside.
        spread_summary["cpu_steal_ms"] = json!(stolen.map(|t| t * 10));
        out.insert("start_spread_ms".into(), spread_summary);
        let mut mark_summary = summary(&marks);
        mark_summary["nodes"] = json!(o.spread_nodes);
        out.insert("mark_latency_ms".into(), mark_summary);
    }

    if o.parts.contains(&Part::Arm) {
        for &n in o.arm_nodes.iter().filter(|&&n| n != o.spread_nodes) {
            log(&format!("arm latency: {} takes on {n} nodes", o.takes));
            let rig = bench_rig(n).build()?;
            let (_, lat, _) = run_takes(&rig, "bench_arm", o.takes, false, log)?;
            arm.insert(format!("nodes_{n}"), arm_parts(&rig, &lat));
        }
    }
    if !arm.is_empty() {
        arm.insert("measured".into(), json!(ARM_MEASURE));
        out.insert("arm_latency_ms".into(), Value::Object(arm));
    }

    if o.parts.contains(&Part::Download) {
        log("download ratio");
        out.insert("download_ratio".into(), download_ratio(o, log)?);
    }

    if o.parts.contains(&Part::Phase) {
        log(&format!(
            "phase lock: {} nodes, with the loop",
            o.phase_nodes
        ));
        let locked = phase_mode(o, true, log)?;
        log(&format!(
            "phase lock: {} nodes, free-running",
            o.phase_nodes
        ));
        let free = phase_mode(o, false, log)?;
        out.insert(
            "phase".into(),
            json!({
                "nodes": o.phase_nodes,
                "take_s": o.phase_take_secs,
                "locked": locked,
                "free_running": free,
                "measured": PHASE_MEASURE,
            }),
        );
    }

    out.insert(
        "frames".into(),
        json!("160x120 mjpeg @ 30 fps (download take: see download_ratio.frame)"),
    );
    out.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)),
    );
    out.insert(
        "targets".into(),
        json!({
            "start_spread_p99_ms": 0.2,
            "arm_latency_p99_ms_at_50_nodes": 50.0,
            "download_ratio_parallel": 0.9,
            "phase_locked_skew_p99_us": 50.0,
            "phase_lock_p99_ms": 2000.0,
        }),
    );
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&s, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn lateness_is_measured_from_the_grid_slot() {
        // 30 fps: slot 3 is at 100 ms exactly, slot 1 at 33.333333 ms (rounded).
        assert_eq!(lateness_ms(100_000_000, 30), 0.0);
        assert_eq!(lateness_ms(100_250_000, 30), 0.25);
        assert_eq!(lateness_ms(33_333_333, 30), 0.0);
        assert_eq!(lateness_ms(99_990_000, 30), -0.01, "early by 10 µs");
    }

    #[test]
    fn summary_sorts_and_counts() {
        let v = summary(&[3.0, 1.0, 2.0]);
        assert_eq!(v["p50"], 2.0);
        assert_eq!(v["max"], 3.0);
        assert_eq!(v["samples"], 3);
    }
}
