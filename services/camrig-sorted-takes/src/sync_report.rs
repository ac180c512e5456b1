//! The sync report of one take (issue 16), computed from literal inputs with no I/O: every
//! camera's frame timestamps, the node manifests (drops, phase lock, clock health, markers)
//! and the controller's own clock probes at START and STOP. It answers "was this take in
//! sync?" with a verdict against a tolerance (default a quarter of the frame period) and
//! gives the frames table (`<take>_frames.csv`): one row per recorded frame with its slot on
//! the rig's [`FrameGrid`].
//!
//! Skew is the spread (latest − earliest) of the frame times of one grid slot across every
//! camera that has a frame in it. Timestamps cannot show an error in a node's own clock, so
//! the verdict uses `skew_bound_us`: the largest measured spread plus the clock error bounds
//! of the two least certain nodes (cameras on one node share its clock, so a single-node take
//! adds nothing). A node's bound is the largest, over START and STOP, of what chrony says
//! (|offset| + root dispersion + half the root delay) and what the controller measured
//! (|offset| + half the probe's round trip); a node with neither is "unknown" and fails the
//! take. Each camera's entry also carries the settings in force at START and the range of
//! exposure, gain and colour gains it applied (its per-frame `_metadata.csv`). Reading the
//! take directory is [`crate::take_dir`]'s job.

use std::collections::BTreeMap;

use camrig_protocol::camera_settings::{AppliedRange, CameraSettings};
use camrig_protocol::grid::FrameGrid;
use camrig_protocol::manifest::{ClockHealth, TakeManifest};
use camrig_protocol::phase::PhaseRecord;
use camrig_protocol::UnixNanos;

/// Bumped when a field of the report changes meaning.
pub const REPORT_FORMAT: u32 = 1;

/// One node's part of a take, as read from its sorted folder.
#[derive(Clone, Debug)]
pub struct NodeInput {
    /// The sorted folder's name (the node's address).
    pub address: String,
    pub manifest: TakeManifest,
    /// Per camera (manifest order), per segment (manifest order): the `.bin` timestamps.
    pub timestamps: Vec<Vec<Vec<UnixNanos>>>,
    /// Per camera (manifest order): the range of what it applied, from its segments'
    /// `_metadata.csv` (`None` for a camera without them).
    pub applied: Vec<Option<AppliedRange>>,
    /// The controller's clock probe at START and at STOP, if it had one.
    pub probe_start: Option<Probe>,
    pub probe_stop: Option<Probe>,
}

/// One controller clock probe of a node: offset (node − controller) and round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub offset_ns: i64,
    /// `None` when only the offset was recorded (takes before the round trip was kept).
    pub rtt_ns: Option<i64>,
}

impl Probe {
    /// |offset| + half the round trip: how far the node's clock can be from the controller's.
    pub fn error_bound_ns(&self) -> Option<i64> {
        self.rtt_ns.map(|rtt| self.offset_ns.abs() + rtt.max(0) / 2)
    }
}

/// `pass` or `fail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// `<take>_sync_report.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyncReport {
    pub format: u32,
    pub take: String,
    pub verdict: Verdict,
    pub tolerance_us: f64,
    pub fps: f64,
    pub period_us: f64,
    pub cameras: Vec<CameraReport>,
    /// Spread of same-slot frame times across all cameras.
    pub skew_us: Percentiles,
    /// `skew_us.max` plus the clock error bounds of the two least certain nodes; `None`
    /// when a node's clock error is unknown.
    pub skew_bound_us: Option<f64>,
    pub common: Common,
    /// Per node: the controller's probes and the node's own clock state at START and STOP.
    pub clock: Vec<NodeClock>,
    pub markers: Vec<MarkerReport>,
    /// Why the verdict is `fail` (empty for `pass`).
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraReport {
    /// The node's label in file names (`192_168_1_101` or its configured name).
    pub node: String,
    /// The sorted folder (the node's address).
    pub address: String,
    /// `cam1`, `cam2`, …
    pub camera: String,
    pub frames: u64,
    /// Grid slots between the camera's first and last frame with no frame of it.
    pub drops: Vec<Drop>,
    /// The drops the node itself counted (its manifest).
    pub manifest_drops: u64,
    /// Frames that fell into a slot another frame of the same camera already had.
    pub duplicate_slots: u64,
    pub first_frame_ns: Option<UnixNanos>,
    pub last_frame_ns: Option<UnixNanos>,
    pub first_slot: Option<i64>,
    pub last_slot: Option<i64>,
    /// |frame time − its slot's grid instant|.
    pub grid_deviation_us: Percentiles,
    /// The node's phase-lock summary for this camera, when its manifest has one.
    pub phase: Option<PhaseRecord>,
    /// The camera settings in force at START (the manifest's).
    #[serde(default)]
    pub settings: Option<CameraSettings>,
    /// The range of exposure, gain, colour gains and lens position the camera applied over
    /// the take (its per-frame metadata).
    #[serde(default)]
    pub applied: Option<AppliedRange>,
}

/// A dropped frame: the slot with no frame, and the frame before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Drop {
    pub slot: i64,
    /// Take frame index (0-based, per camera) of the last frame before the gap; `None` for a
    /// slot after START but before the camera's first frame.
    pub after_frame_index: Option<u64>,
}

/// The slot range every camera covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Common {
    pub first_slot: Option<i64>,
    pub last_slot: Option<i64>,
    /// Slots in the range (0 when the cameras share none).
    pub frames: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeClock {
    pub node: String,
    pub address: String,
    /// The controller's probe at START/STOP: offset (node − controller) and round trip.
    pub offset_start_us: Option<f64>,
    pub rtt_start_us: Option<f64>,
    pub offset_stop_us: Option<f64>,
    pub rtt_stop_us: Option<f64>,
    pub synced_at_start: bool,
    pub synced_at_stop: Option<bool>,
    /// chrony's bound at START/STOP (|offset| + root dispersion + root delay / 2).
    pub daemon_bound_start_us: Option<f64>,
    pub daemon_bound_stop_us: Option<f64>,
    /// The node's clock error bound used by the verdict; `None` if unknown.
    pub bound_us: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkerReport {
    pub at_ns: UnixNanos,
    pub note: String,
    /// The grid slot the click falls in.
    pub slot: i64,
    pub cameras: Vec<MarkerCamera>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkerCamera {
    pub node: String,
    pub camera: String,
    /// The camera's first frame at or after the click; `None` if the take ended before.
    pub frame_index: Option<u64>,
    pub slot: Option<i64>,
    pub frame_ns: Option<UnixNanos>,
}

/// One row of `<take>_frames.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRow {
    pub slot: i64,
    pub node: String,
    pub camera: String,
    pub segment: u32,
    pub frame_index: u64,
    pub timestamp_ns: UnixNanos,
    /// Frame time − its slot's grid instant.
    pub grid_error_ns: i64,
}

/// The header of `<take>_frames.csv`.
pub const FRAMES_CSV_HEADER: &str =
    "slot,node,camera,segment,frame_index,timestamp_ns,grid_error_ns\n";

impl FrameRow {
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{}\n",
            self.slot,
            self.node,
            self.camera,
            self.segment,
            self.frame_index,
            self.timestamp_ns,
            self.grid_error_ns
        )
    }
}

/// Inputs that cannot give a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("the take has no node folder with a manifest")]
    NoNodes,
    #[error("node {node}: frame rate {fps} has no frame grid")]
    BadFps { node: String, fps: f64 },
    #[error("the nodes recorded different frame rates ({0}); a sync report needs one grid")]
    MixedFps(String),
    #[error("node {node} {camera} segment {segment}: the manifest lists {expected} frames but the timestamp file has {found}; the download is damaged: download the take again")]
    FrameCount {
        node: String,
        camera: String,
        segment: u32,
        expected: u64,
        found: usize,
    },
    #[error("node {node} {camera}: timestamps go backwards at take frame {frame_index}; the timestamp file is damaged: download the take again")]
    NotIncreasing {
        node: String,
        camera: String,
        frame_index: u64,
    },
    #[error("node {node}: the manifest has {manifest} cameras but {given} were read")]
    CameraCount {
        node: String,
        manifest: usize,
        given: usize,
    },
}

/// The frames of one camera, flattened, with each frame's slot.
struct CameraFrames {
    report: CameraReport,
    node_index: usize,
    /// (slot, segment, frame index, timestamp)
    frames: Vec<(i64, u32, u64, UnixNanos)>,
}

/// Computes the report and the frames table. `tolerance_ns` defaults to a quarter period.
pub fn compute(
    take: &str,
    nodes: &[NodeInput],
    tolerance_ns: Option<i64>,
) -> Result<(SyncReport, Vec<FrameRow>), ReportError> {
    let first = nodes.first().ok_or(ReportError::NoNodes)?;
    let fps = first.manifest.cameras.first().map(|c| c.fps).unwrap_or(0.0);
    let mut rates: Vec<f64> = nodes
        .iter()
        .flat_map(|n| n.manifest.cameras.iter().map(|c| c.fps))
        .collect();
    rates.dedup_by(|a, b| FrameGrid::new(*a).ok() == FrameGrid::new(*b).ok());
    if rates.len() > 1 {
        let list: Vec<String> = rates.iter().map(|r| format!("{r}")).collect();
        return Err(ReportError::MixedFps(list.join(", ")));
    }
    let grid = FrameGrid::new(fps).map_err(|_| ReportError::BadFps {
        node: first.manifest.node.clone(),
        fps,
    })?;
    let tolerance_ns = tolerance_ns.unwrap_or((grid.period_ns() / 4.0).round() as i64);

    let mut cameras: Vec<CameraFrames> = Vec::new();
    for (node_index, node) in nodes.iter().enumerate() {
        let m = &node.manifest;
        if m.cameras.len() != node.timestamps.len() {
            return Err(ReportError::CameraCount {
                node: m.node.clone(),
                manifest: m.cameras.len(),
                given: node.timestamps.len(),
            });
        }
        for (k, (cam, segs)) in m.cameras.iter().zip(&node.timestamps).enumerate() {
            let label = camera_label(cam.index);
            let mut frames = Vec::with_capacity(cam.frames as usize);
            for (seg, ts) in cam.segments.iter().zip(segs) {
                if seg.frames != ts.len() as u64 {
                    return Err(ReportError::FrameCount {
                        node: m.node.clone(),
                        camera: label,
                        segment: seg.index,
                        expected: seg.frames,
                        found: ts.len(),
                    });
                }
                for (i, &t) in ts.iter().enumerate() {
                    let frame_index = seg.first_frame_index + i as u64;
                    if frames.last().is_some_and(|&(_, _, _, prev)| t <= prev) {
                        return Err(ReportError::NotIncreasing {
                            node: m.node.clone(),
                            camera: label,
                            frame_index,
                        });
                    }
                    frames.push((grid.nearest_slot(t), seg.index, frame_index, t));
                }
            }
            let drops = find_drops(&grid, &frames, m.start_at_ns, m.stop_at_ns);
            let duplicate_slots = frames.windows(2).filter(|w| w[0].0 == w[1].0).count() as u64;
            let deviations: Vec<i64> = frames
                .iter()
                .map(|&(_, _, _, t)| grid.phase_error_ns(t).abs())
                .collect();
            cameras.push(CameraFrames {
                report: CameraReport {
                    node: m.node.clone(),
                    address: node.address.clone(),
                    camera: label,
                    frames: frames.len() as u64,
                    drops,
                    manifest_drops: cam.drops,
                    duplicate_slots,
                    first_frame_ns: frames.first().map(|f| f.3),
                    last_frame_ns: frames.last().map(|f| f.3),
                    first_slot: frames.first().map(|f| f.0),
                    last_slot: frames.last().map(|f| f.0),
                    grid_deviation_us: percentiles_us(deviations),
                    phase: cam.phase.clone(),
                    settings: cam.settings,
                    applied: node.applied.get(k).copied().flatten(),
                },
                node_index,
                frames,
            });
        }
    }

    let mut reasons = Vec::new();
    // Skew: per slot, the first frame of each camera in it.
    let mut by_slot: BTreeMap<i64, (UnixNanos, UnixNanos, usize)> = BTreeMap::new();
    for c in &cameras {
        let mut last_slot = None;
        for &(slot, _, _, t) in &c.frames {
            if last_slot == Some(slot) {
                continue;
            }
            last_slot = Some(slot);
            let e = by_slot.entry(slot).or_insert((t, t, 0));
            e.0 = e.0.min(t);
            e.1 = e.1.max(t);
            e.2 += 1;
        }
    }
    let spreads: Vec<i64> = by_slot
        .values()
        .filter(|(_, _, n)| *n >= 2)
        .map(|(lo, hi, _)| hi - lo)
        .collect();
    let skew = percentiles_us(spreads);

    let common_first = cameras.iter().map(|c| c.report.first_slot).max().flatten();
    let common_last = cameras.iter().map(|c| c.report.last_slot).min().flatten();
    let all_have_frames = !cameras.is_empty() && cameras.iter().all(|c| c.report.frames > 0);
    let common = match (common_first, common_last) {
        (Some(a), Some(b)) if all_have_frames && a <= b => Common {
            first_slot: Some(a),
            last_slot: Some(b),
            frames: (b - a + 1) as u64,
        },
        _ => Common {
            first_slot: None,
            last_slot: None,
            frames: 0,
        },
    };

    let clock: Vec<NodeClock> = nodes.iter().map(node_clock).collect();
    // Clock term: the two largest bounds among nodes with cameras (one node: its clock is
    // common to its cameras and cancels out of their spread).
    let recording_nodes: Vec<usize> = {
        let mut v: Vec<usize> = cameras.iter().map(|c| c.node_index).collect();
        v.dedup();
        v
    };
    let mut bounds: Vec<Option<f64>> = recording_nodes.iter().map(|&i| clock[i].bound_us).collect();
    let skew_bound_us = if recording_nodes.len() < 2 {
        Some(skew.max)
    } else if bounds.iter().any(Option::is_none) {
        None
    } else {
        bounds.sort_by(|a, b| b.partial_cmp(a).expect("finite bounds"));
        Some(skew.max + bounds[0].unwrap_or(0.0) + bounds[1].unwrap_or(0.0))
    };
    let tolerance_us = tolerance_ns as f64 / 1e3;

    if cameras.is_empty() {
        reasons.push("no camera recorded anything".to_owned());
    }
    for c in &cameras {
        if c.report.frames == 0 {
            reasons.push(format!(
                "{} {} recorded no frames",
                c.report.node, c.report.camera
            ));
        }
        if c.report.duplicate_slots > 0 {
            reasons.push(format!(
                "{} {} has {} frames sharing a grid slot with another of its frames: it runs off the rig's {} fps grid",
                c.report.node, c.report.camera, c.report.duplicate_slots, grid.fps()
            ));
        }
    }
    if all_have_frames && common.frames == 0 {
        reasons.push("the cameras share no common slot range".to_owned());
    }
    for &i in &recording_nodes {
        if recording_nodes.len() >= 2 && clock[i].bound_us.is_none() {
            reasons.push(format!(
                "node {}: its clock error is unknown (no synchronised chrony state and no controller probe with a round trip at START or STOP)",
                clock[i].node
            ));
        }
    }
    if let Some(b) = skew_bound_us {
        if b > tolerance_us {
            reasons.push(format!(
                "skew bound {b:.1} µs (measured max {:.1} µs + clock error bounds) exceeds the tolerance {tolerance_us:.1} µs",
                skew.max
            ));
        }
    }

    let markers = marker_reports(&grid, nodes, &cameras);
    let mut rows: Vec<FrameRow> = cameras
        .iter()
        .flat_map(|c| {
            c.frames
                .iter()
                .map(|&(slot, segment, frame_index, t)| FrameRow {
                    slot,
                    node: c.report.node.clone(),
                    camera: c.report.camera.clone(),
                    segment,
                    frame_index,
                    timestamp_ns: t,
                    grid_error_ns: t - grid.instant_ns(slot),
                })
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.slot, &a.node, &a.camera, a.frame_index).cmp(&(
            b.slot,
            &b.node,
            &b.camera,
            b.frame_index,
        ))
    });

    let report = SyncReport {
        format: REPORT_FORMAT,
        take: take.to_owned(),
        verdict: if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        tolerance_us,
        fps: grid.fps(),
        period_us: grid.period_ns() / 1e3,
        cameras: cameras.into_iter().map(|c| c.report).collect(),
        skew_us: skew,
        skew_bound_us,
        common,
        clock,
        markers,
        reasons,
    };
    Ok((report, rows))
}

/// The slots with no frame of the camera: between its frames, and at the take's edges the
/// slots whose frame (at the camera's median phase) was due well inside [START, STOP) — a
/// quarter period inside, so jitter at an edge is not taken for a drop.
fn find_drops(
    grid: &FrameGrid,
    frames: &[(i64, u32, u64, UnixNanos)],
    start_at: UnixNanos,
    stop_at: Option<UnixNanos>,
) -> Vec<Drop> {
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return vec![];
    };
    let mut errors: Vec<i64> = frames.iter().map(|f| f.3 - grid.instant_ns(f.0)).collect();
    errors.sort_unstable();
    let phase = errors[errors.len() / 2];
    let margin = (grid.period_ns() / 4.0) as i64;
    let due = |slot: i64| grid.instant_ns(slot) + phase;
    let mut drops = Vec::new();
    // The first slot due at or after START + margin, found from its neighbourhood.
    let mut lowest = grid.nearest_slot(start_at + margin - phase) - 1;
    while due(lowest) < start_at + margin {
        lowest += 1;
    }
    for slot in lowest..first.0 {
        drops.push(Drop {
            slot,
            after_frame_index: None,
        });
    }
    for w in frames.windows(2) {
        for slot in w[0].0 + 1..w[1].0 {
            drops.push(Drop {
                slot,
                after_frame_index: Some(w[0].2),
            });
        }
    }
    if let Some(stop) = stop_at {
        let mut highest = grid.nearest_slot(stop - margin - phase) + 1;
        while due(highest) >= stop - margin {
            highest -= 1;
        }
        for slot in last.0 + 1..=highest {
            drops.push(Drop {
                slot,
                after_frame_index: Some(last.2),
            });
        }
    }
    drops
}

/// `cam1`, `cam2`, … for a 0-based camera index.
pub fn camera_label(index: usize) -> String {
    format!("cam{}", index + 1)
}

fn us(ns: i64) -> f64 {
    ns as f64 / 1e3
}

fn node_clock(n: &NodeInput) -> NodeClock {
    let m = &n.manifest;
    let daemon = |c: &ClockHealth| c.daemon_error_bound_ns();
    let candidates = [
        daemon(&m.clock_at_start),
        m.clock_at_stop.as_ref().and_then(daemon),
        n.probe_start.and_then(|p| p.error_bound_ns()),
        n.probe_stop.and_then(|p| p.error_bound_ns()),
    ];
    let bound_ns = candidates.iter().flatten().max().copied();
    NodeClock {
        node: m.node.clone(),
        address: n.address.clone(),
        offset_start_us: n.probe_start.map(|p| us(p.offset_ns)),
        rtt_start_us: n.probe_start.and_then(|p| p.rtt_ns).map(us),
        offset_stop_us: n.probe_stop.map(|p| us(p.offset_ns)),
        rtt_stop_us: n.probe_stop.and_then(|p| p.rtt_ns).map(us),
        synced_at_start: m.clock_at_start.synced,
        synced_at_stop: m.clock_at_stop.as_ref().map(|c| c.synced),
        daemon_bound_start_us: daemon(&m.clock_at_start).map(us),
        daemon_bound_stop_us: m.clock_at_stop.as_ref().and_then(daemon).map(us),
        bound_us: bound_ns.map(us),
    }
}

/// Markers, merged by click time across nodes, each mapped to every camera's first frame at
/// or after the click (from the timestamps themselves, so it holds for every camera alike).
fn marker_reports(
    grid: &FrameGrid,
    nodes: &[NodeInput],
    cameras: &[CameraFrames],
) -> Vec<MarkerReport> {
    let mut clicks: BTreeMap<UnixNanos, String> = BTreeMap::new();
    for n in nodes {
        for mk in &n.manifest.markers {
            clicks.entry(mk.at_ns).or_insert_with(|| mk.note.clone());
        }
    }
    clicks
        .into_iter()
        .map(|(at_ns, note)| MarkerReport {
            at_ns,
            note,
            slot: grid.nearest_slot(at_ns),
            cameras: cameras
                .iter()
                .map(|c| {
                    let i = c.frames.partition_point(|f| f.3 < at_ns);
                    let f = c.frames.get(i);
                    MarkerCamera {
                        node: c.report.node.clone(),
                        camera: c.report.camera.clone(),
                        frame_index: f.map(|f| f.2),
                        slot: f.map(|f| f.0),
                        frame_ns: f.map(|f| f.3),
                    }
                })
                .collect(),
        })
        .collect()
}

/// Nearest-rank percentiles, in µs.
fn percentiles_us(mut v: Vec<i64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        us(v[i])
    };
    Percentiles {
        p50: rank(0.50),
        p99: rank(0.99),
        max: us(*v.last().expect("not empty")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use camrig_protocol::manifest::{
        CameraRecord, ManifestState, Marker, SegmentRecord, StopReason, MANIFEST_FORMAT,
    };
    use camrig_protocol::naming::Codec;
    use camrig_protocol::take_name::TakeName;

    /// 30 fps: slot n starts at n × 33 333 333.3 ns. A base far from the epoch.
    const BASE_SLOT: i64 = 54_000_000_000;

    fn grid() -> FrameGrid {
        FrameGrid::new(30.0).unwrap()
    }

    fn clock(synced: bool) -> ClockHealth {
        ClockHealth {
            synced,
            est_error_ns: None,
            measured_at_ns: 0,
            offset_ns: Some(-10_000),
            root_delay_ns: Some(200_000),
            root_dispersion_ns: Some(40_000),
        }
    }

    /// A node with one camera whose frames sit at `slots` + `offset_ns`, in segments of 30.
    fn node(name: &str, slots: &[i64], offset_ns: i64) -> NodeInput {
        let ts: Vec<i64> = slots
            .iter()
            .map(|&s| grid().instant_ns(BASE_SLOT + s) + offset_ns)
            .collect();
        let mut segments = Vec::new();
        let mut per_segment = Vec::new();
        for (i, chunk) in ts.chunks(30).enumerate() {
            segments.push(SegmentRecord {
                index: i as u32,
                video: format!("{name}_{i}.h264"),
                timestamps_bin: format!("{name}_{i}.bin"),
                timestamps_txt: format!("{name}_{i}.txt"),
                frames: chunk.len() as u64,
                first_frame_index: (i * 30) as u64,
                first_frame_ns: chunk.first().copied(),
                last_frame_ns: chunk.last().copied(),
                closed_cleanly: true,
                metadata_csv: None,
            });
            per_segment.push(chunk.to_vec());
        }
        NodeInput {
            address: format!("10.0.0.{}", name.len()),
            manifest: TakeManifest {
                format: MANIFEST_FORMAT,
                take: TakeName::parse("t1").unwrap(),
                node: name.into(),
                state: ManifestState::Complete,
                stop_reason: Some(StopReason::Requested),
                // START and STOP half a period before slots 0 and 100.
                start_at_ns: grid().instant_ns(BASE_SLOT) - 16_666_667,
                stop_at_ns: Some(grid().instant_ns(BASE_SLOT + 100) - 16_666_667),
                codec: Codec::H264,
                segment_seconds: 1,
                cameras: vec![CameraRecord {
                    index: 0,
                    label: None,
                    model: "synthetic".into(),
                    width: 16,
                    height: 16,
                    fps: 30.0,
                    frames: ts.len() as u64,
                    drops: 0,
                    first_frame_ns: ts.first().copied(),
                    last_frame_ns: ts.last().copied(),
                    segments,
                    pixel_paths: Default::default(),
                    phase: None,
                    settings: None,
                }],
                markers: vec![],
                clock_at_start: clock(true),
                clock_at_stop: Some(clock(true)),
                files: vec![],
            },
            timestamps: vec![per_segment],
            applied: Vec::new(),
            probe_start: Some(Probe {
                offset_ns: 30_000,
                rtt_ns: Some(100_000),
            }),
            probe_stop: Some(Probe {
                offset_ns: -5_000,
                rtt_ns: Some(60_000),
            }),
        }
    }

    #[test]
    fn drops_skew_bound_and_verdict_of_a_take_with_injected_faults() {
        // Node a: slots 0..100 exact. Node b: drops slots 10 and 50..=52, frames 2 ms late,
        // and starts one slot later.
        let a = node("a", &(0..100).collect::<Vec<_>>(), 0);
        let b_slots: Vec<i64> = (1..100)
            .filter(|s| *s != 10 && !(50..=52).contains(s))
            .collect();
        let b = node("b", &b_slots, 2_000_000);
        let (r, rows) = compute("t1", &[a.clone(), b.clone()], None).unwrap();

        assert_eq!(r.cameras[0].drops, vec![]);
        let drops: Vec<(i64, Option<u64>)> = r.cameras[1]
            .drops
            .iter()
            .map(|d| (d.slot - BASE_SLOT, d.after_frame_index))
            .collect();
        // Slot 0 was due after START: a drop before b's first frame.
        assert_eq!(
            drops,
            vec![
                (0, None),
                (10, Some(8)),
                (50, Some(47)),
                (51, Some(47)),
                (52, Some(47))
            ]
        );
        assert_eq!(r.skew_us.p50, 2_000.0);
        assert_eq!(r.skew_us.max, 2_000.0);
        // Bounds: chrony 10 + 40 + 100 = 150 µs; probes 30 + 50 = 80 µs, 5 + 30 = 35 µs.
        assert_eq!(r.clock[0].bound_us, Some(150.0));
        assert_eq!(r.skew_bound_us, Some(2_300.0));
        assert_eq!(
            r.common,
            Common {
                first_slot: Some(BASE_SLOT + 1),
                last_slot: Some(BASE_SLOT + 99),
                frames: 99
            }
        );
        assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
        assert_eq!((r.tolerance_us * 10.0).round(), 83_333.0);
        assert_eq!(rows.len(), 100 + 95);
        assert_eq!(rows[0].slot, BASE_SLOT);
        assert_eq!(rows[1].node, "a");
        assert_eq!(rows[2].node, "b");
        assert_eq!(rows[2].grid_error_ns, 2_000_000);
        assert!(rows
            .iter()
            .all(|r| r.slot != BASE_SLOT + 10 || r.node == "a"));

        // 9 ms late is beyond a quarter of 33.3 ms: fail, and the reason says so.
        let late = node("b", &b_slots, 9_000_000);
        let (r, _) = compute("t1", &[a.clone(), late], None).unwrap();
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.skew_us.max, 9_000.0);
        assert!(
            r.reasons[0].contains("exceeds the tolerance 8333.3"),
            "{:?}",
            r.reasons
        );

        // A tighter configured tolerance fails the 2 ms take; the bound is what counts.
        let (r, _) = compute("t1", &[a.clone(), b.clone()], Some(2_200_000)).unwrap();
        assert_eq!(r.verdict, Verdict::Fail);
        let (r, _) = compute("t1", &[a.clone(), b.clone()], Some(2_300_000)).unwrap();
        assert_eq!(r.verdict, Verdict::Pass);
    }

    #[test]
    fn slots_missing_at_the_edges_of_the_take_are_drops_jitter_at_an_edge_is_not() {
        // Frames at slots 2..=95 of a take whose START/STOP frame slots 0..=99: two missing
        // at the start, four at the end. Frames 5 ms late (their phase) change nothing.
        let a = node("a", &(2..96).collect::<Vec<_>>(), 5_000_000);
        let (r, _) = compute("t1", &[a], None).unwrap();
        let slots: Vec<i64> = r.cameras[0]
            .drops
            .iter()
            .map(|d| d.slot - BASE_SLOT)
            .collect();
        assert_eq!(slots, vec![0, 1, 96, 97, 98, 99]);
        assert_eq!(r.cameras[0].drops[5].after_frame_index, Some(93));
        // A camera 16.4 ms early: slot 0's frame was due only 0.3 ms after START (and slot
        // 100's 0.3 ms after STOP): within the margin, so neither absence is a drop.
        let b = node("b", &(1..100).collect::<Vec<_>>(), -16_400_000);
        let (r, _) = compute("t1", &[b], None).unwrap();
        assert_eq!(r.cameras[0].drops, vec![]);
    }

    #[test]
    fn an_unknown_clock_fails_a_multi_node_take_but_not_a_single_node_one() {
        let a = node("a", &(0..40).collect::<Vec<_>>(), 0);
        let mut b = node("b", &(0..40).collect::<Vec<_>>(), 0);
        b.manifest.clock_at_start = clock(false);
        b.manifest.clock_at_stop = None;
        b.probe_start = Some(Probe {
            offset_ns: 1,
            rtt_ns: None,
        });
        b.probe_stop = None;
        let (r, _) = compute("t1", &[a.clone(), b.clone()], None).unwrap();
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.skew_bound_us, None);
        assert!(r.reasons[0].contains("node b: its clock error is unknown"));
        let (r, _) = compute("t1", &[b], None).unwrap();
        assert_eq!(r.verdict, Verdict::Pass);
        assert_eq!(r.skew_bound_us, Some(0.0));
    }

    #[test]
    fn markers_map_to_each_cameras_first_frame_at_or_after_the_click() {
        let mut a = node("a", &(0..40).collect::<Vec<_>>(), 0);
        let b = node("b", &(0..40).collect::<Vec<_>>(), 1_000_000);
        let click = grid().instant_ns(BASE_SLOT + 20) + 500_000;
        a.manifest.markers.push(Marker {
            at_ns: click,
            note: "clap".into(),
            frames: vec![],
        });
        let (r, _) = compute("t1", &[a, b], None).unwrap();
        assert_eq!(r.markers.len(), 1);
        let m = &r.markers[0];
        assert_eq!((m.note.as_str(), m.slot), ("clap", BASE_SLOT + 20));
        assert_eq!(m.cameras[0].frame_index, Some(21));
        assert_eq!(m.cameras[1].frame_index, Some(20));
        assert_eq!(m.cameras[1].slot, Some(BASE_SLOT + 20));
    }

    #[test]
    fn damaged_inputs_are_refused_not_reported() {
        let a = node("a", &(0..40).collect::<Vec<_>>(), 0);
        let mut short = a.clone();
        short.timestamps[0][1].pop();
        let e = compute("t1", &[short], None).unwrap_err();
        assert!(
            e.to_string()
                .contains("lists 10 frames but the timestamp file has 9"),
            "{e}"
        );
        let mut back = a.clone();
        back.timestamps[0][1][3] = 0;
        let e = compute("t1", &[back], None).unwrap_err();
        assert!(
            matches!(
                e,
                ReportError::NotIncreasing {
                    frame_index: 33,
                    ..
                }
            ),
            "{e}"
        );
        let mut other = node("b", &(0..40).collect::<Vec<_>>(), 0);
        other.manifest.cameras[0].fps = 25.0;
        assert!(matches!(
            compute("t1", &[a, other], None),
            Err(ReportError::MixedFps(_))
        ));
        assert_eq!(compute("t1", &[], None).unwrap_err(), ReportError::NoNodes);
    }

    #[test]
    fn a_camera_running_off_the_grid_fails_with_duplicate_slots() {
        let a = node("a", &(0..40).collect::<Vec<_>>(), 0);
        let mut fast = node("b", &(0..40).collect::<Vec<_>>(), 0);
        // Frame 5 moved 10 ms earlier: it stays in slot 5. Insert an extra frame in slot 5.
        let seg = &mut fast.timestamps[0][0];
        let extra = seg[5] + 5_000_000;
        seg.insert(6, extra);
        fast.manifest.cameras[0].segments[0].frames += 1;
        for s in &mut fast.manifest.cameras[0].segments[1..] {
            s.first_frame_index += 1;
        }
        let (r, _) = compute("t1", &[a, fast], None).unwrap();
        assert_eq!(r.cameras[1].duplicate_slots, 1);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r
            .reasons
            .iter()
            .any(|x| x.contains("runs off the rig's 30 fps grid")));
    }
}
