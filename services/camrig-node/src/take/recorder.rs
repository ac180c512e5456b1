//! Records one take (or one standalone session): a writer thread per camera takes frames
//! from a bounded queue, keeps those inside the scheduled window, encodes them and writes
//! segments; a coordinator thread joins the writers and finalises the manifest.
//!
//! Capture never waits for this: [`TakeHandle::offer`] is a `try_send`, and a frame that
//! does not fit in the queue is lost — and counted, because the writer sees the sequence
//! gap. Shared bookkeeping (manifest, markers, kept timestamps) lives in one
//! [`TakeBook`] behind a mutex, touched once per frame and at segment boundaries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camrig_protocol::api::{DropBurst, DropCause, TakeOutcome, RECENT_DROP_BURSTS};
use camrig_protocol::camera_settings::CameraSettings;
use camrig_protocol::grid::FrameGrid;
use camrig_protocol::manifest::{
    CameraRecord, ManifestState, Marker, MarkerFrame, SegmentRecord, StopReason, TakeManifest,
    MANIFEST_FORMAT,
};
use camrig_protocol::naming::{self, Codec, TakeFiles};
use camrig_protocol::phase::{LockState, PhaseRecord, TakeError};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::UnixNanos;

use crate::camera::phase_lock::{percentile, PhaseMonitor};
use crate::camera::{CameraInfo, Frame};
use crate::encode::{EncoderSettings, FrameEncoder, NewEncoder};
use crate::service::metrics::CameraCounters;
use crate::service::{clock_health, disk_space};
use crate::take::frame_selection::{marker_frame, place, segment_of, DropCounter, Placement};
use crate::take::markers;
use crate::take::segment_writer::{ClosedSegment, SegmentNames, SegmentWriter};
use camrig_fs::write_atomic;

/// Frames a camera may have waiting for its encoder before new ones are dropped.
pub const QUEUE_FRAMES: usize = 8;
/// A recording camera silent this long ends the take (`camera_failed`)...
const CAMERA_SILENCE: Duration = Duration::from_secs(3);
/// ...or this many frame periods, if longer: a camera set to a low rate (or one with no
/// frame-rate control, such as vimc, that runs slowly) is slow, not dead.
const CAMERA_SILENCE_PERIODS: u32 = 10;

/// How long a camera with this frame period may be silent before the take ends.
fn camera_silence(period_ns: i64) -> Duration {
    let periods = Duration::from_nanos(period_ns.max(0) as u64) * CAMERA_SILENCE_PERIODS;
    CAMERA_SILENCE.max(periods)
}

/// How a take's files are named.
#[derive(Clone, Debug)]
pub enum Layout {
    /// `<take>_<node>[_camN]_<stamp>_<NNNNNN>...` with manifest and markers.
    Take(TakeFiles),
    /// `cameraN.<ext>` + `cameraN_timestamps.bin`, one file per camera, no manifest.
    Standalone,
}

#[derive(Clone, Debug)]
pub struct TakeSpec {
    pub take: TakeName,
    pub dir: PathBuf,
    pub node: String,
    pub start_at: UnixNanos,
    pub codec: Codec,
    /// 0: never cut (standalone).
    pub segment_seconds: u32,
    pub cameras: Vec<CameraInfo>,
    pub encoder: EncoderSettings,
    /// Makes each camera's encoder at its first frame (chosen by the composition root).
    pub new_encoder: NewEncoder,
    pub min_free_bytes: u64,
    /// Where free space is measured.
    pub data_dir: PathBuf,
    pub layout: Layout,
    /// Each camera's `/metrics` counters (kept, dropped, encode time).
    pub counters: Vec<CameraCounters>,
    /// Each camera's settings in force at START (recorded in the manifest).
    pub settings: Vec<CameraSettings>,
    /// Each camera's phase lock (index = camera), for the manifest's `phase` record.
    pub phase: Vec<Arc<PhaseMonitor>>,
}

impl TakeSpec {
    fn segment_names(&self, camera: usize, segment: u32) -> SegmentNames {
        match &self.layout {
            Layout::Take(files) => {
                let cam = naming::camera_label(camera, self.cameras.len());
                let cam = cam.as_deref();
                SegmentNames {
                    video: files.segment_video(cam, segment, self.codec),
                    timestamps_bin: files.segment_timestamps_bin(cam, segment),
                    timestamps_txt: Some(files.segment_timestamps_txt(cam, segment)),
                    metadata_csv: Some(files.segment_metadata_csv(cam, segment)),
                }
            }
            Layout::Standalone => SegmentNames {
                video: naming::standalone_video(camera, self.codec),
                timestamps_bin: naming::standalone_timestamps(camera),
                timestamps_txt: None,
                metadata_csv: None,
            },
        }
    }

    fn manifest_path(&self) -> Option<PathBuf> {
        match &self.layout {
            Layout::Take(files) => Some(self.dir.join(files.manifest())),
            Layout::Standalone => None,
        }
    }

    /// Space held back so the final manifest can be written even on a full disk.
    fn reserve_path(&self) -> Option<PathBuf> {
        match &self.layout {
            Layout::Take(_) => Some(self.dir.join(RESERVE_FILE)),
            Layout::Standalone => None,
        }
    }

    fn markers_name(&self) -> Option<String> {
        match &self.layout {
            Layout::Take(files) => Some(files.markers()),
            Layout::Standalone => None,
        }
    }
}

/// Cross-thread controls of a running take.
#[derive(Debug)]
pub struct TakeControl {
    stop_at: AtomicI64,
    stop_now: Mutex<Option<StopReason>>,
    recording: AtomicBool,
}

impl TakeControl {
    fn stop_at(&self) -> Option<UnixNanos> {
        let v = self.stop_at.load(Ordering::SeqCst);
        (v != i64::MAX).then_some(v)
    }

    fn stop_now(&self) -> Option<StopReason> {
        *lock(&self.stop_now)
    }

    /// Ends the take at once for every camera; the first reason given wins.
    fn request_stop(&self, reason: StopReason) {
        lock(&self.stop_now).get_or_insert(reason);
    }
}

/// Per-camera live counters, for status.
#[derive(Clone, Debug, Default)]
pub struct LiveCamera {
    pub frames: u64,
    pub drops: u64,
    pub segment: Option<u32>,
    /// Drops by cause, in [`DropCause::ALL`]'s order.
    pub drops_by_cause: [u64; 3],
    /// The most recent drop bursts (at most [`RECENT_DROP_BURSTS`]), oldest first.
    pub bursts: Vec<DropBurst>,
}

impl LiveCamera {
    fn dropped(&mut self, burst: DropBurst) {
        let i = DropCause::ALL
            .iter()
            .position(|c| *c == burst.cause)
            .expect("every cause is listed");
        self.drops_by_cause[i] += burst.frames;
        if self.bursts.len() == RECENT_DROP_BURSTS {
            self.bursts.remove(0);
        }
        self.bursts.push(burst);
    }

    /// `0` or `3 (queue_full 2, sequence_gap 1)`: the take's log line at STOP.
    pub fn drop_summary(&self) -> String {
        let parts: Vec<String> = DropCause::ALL
            .iter()
            .zip(self.drops_by_cause)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if parts.is_empty() {
            self.drops.to_string()
        } else {
            format!("{} ({})", self.drops, parts.join(", "))
        }
    }
}

/// Everything the take's threads share.
pub struct TakeBook {
    spec: TakeSpec,
    manifest: TakeManifest,
    /// Kept timestamps per camera (MARK looks back into them).
    kept: Vec<Vec<UnixNanos>>,
    /// `(segment, index of its first frame)` per camera.
    segment_starts: Vec<Vec<(u32, u64)>>,
    live: Vec<LiveCamera>,
    /// Per camera: its lock state and lock-loss count when it kept its first frame.
    phase_at_start: Vec<Option<(LockState, u64)>>,
    /// Why the take stopped early, in words, for status.
    problem: Option<String>,
}

impl TakeBook {
    fn new(spec: TakeSpec) -> TakeBook {
        let n = spec.cameras.len();
        let manifest = TakeManifest {
            format: MANIFEST_FORMAT,
            take: spec.take.clone(),
            node: spec.node.clone(),
            state: ManifestState::Recording,
            stop_reason: None,
            start_at_ns: spec.start_at,
            stop_at_ns: None,
            codec: spec.codec,
            segment_seconds: spec.segment_seconds,
            cameras: spec
                .cameras
                .iter()
                .enumerate()
                .map(|(index, c)| CameraRecord {
                    index,
                    label: naming::camera_label(index, n),
                    model: c.model.clone(),
                    width: c.width,
                    height: c.height,
                    fps: c.fps,
                    frames: 0,
                    drops: 0,
                    first_frame_ns: None,
                    last_frame_ns: None,
                    segments: Vec::new(),
                    pixel_paths: Default::default(),
                    phase: None,
                    settings: spec.settings.get(index).copied(),
                })
                .collect(),
            markers: Vec::new(),
            clock_at_start: clock_health::read(),
            clock_at_stop: None,
            files: Vec::new(),
        };
        TakeBook {
            spec,
            manifest,
            kept: vec![Vec::new(); n],
            segment_starts: vec![Vec::new(); n],
            live: vec![LiveCamera::default(); n],
            phase_at_start: vec![None; n],
            problem: None,
        }
    }

    /// Each camera's `phase` record from its kept frames: their phase errors against the
    /// grid (the timestamps are the truth), the lock state when the take began and the locks
    /// lost since.
    fn refresh_phase(&mut self) {
        for (camera, monitor) in self.spec.phase.iter().enumerate() {
            let Some((state_at_start, losses_at_start)) =
                self.phase_at_start.get(camera).copied().flatten()
            else {
                continue;
            };
            let Ok(grid) = FrameGrid::new(self.spec.cameras[camera].fps) else {
                continue;
            };
            let mut errors: Vec<i64> = self.kept[camera]
                .iter()
                .map(|&ts| grid.phase_error_ns(ts).abs())
                .collect();
            errors.sort_unstable();
            let tolerance = monitor.tolerance_ns();
            self.manifest.cameras[camera].phase = Some(PhaseRecord {
                state_at_start,
                error_ns: TakeError {
                    p50: percentile(&errors, 50.0),
                    p99: percentile(&errors, 99.0),
                    max: errors.last().copied().unwrap_or(0),
                },
                frames_outside_tolerance: errors.iter().filter(|&&e| e > tolerance).count() as u64,
                lock_losses: monitor.lock_losses().saturating_sub(losses_at_start),
            });
        }
    }

    fn write_manifest(&mut self) {
        self.refresh_phase();
        if let Some(path) = self.spec.manifest_path() {
            let json = serde_json::to_vec_pretty(&self.manifest).expect("manifest serialises");
            if let Err(e) = write_atomic(&path, &json) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the take manifest");
                // On a full disk the next frame's write fails too and stops the take; the
                // final manifest then uses the reserved space.
                self.problem.get_or_insert(format!(
                    "cannot write the manifest ({e}); check free space on the data partition"
                ));
            }
        }
    }

    /// A new take's manifest and (still empty) markers file, durable with one journal commit
    /// instead of the four that writing each atomically costs (temp → fsync → rename → fsync
    /// directory, twice): on a node's SD card, and on a rig of many nodes sharing one disk,
    /// those commits were most of the time START took to answer.
    ///
    /// Still nothing is lost: a new take has no older version to protect, so the manifest is
    /// written in place and synced before START is answered; a crash before that leaves at
    /// most a manifest recovery cannot parse (and leaves alone) in a take the controller saw
    /// fail to arm. The markers file holds no marker yet and is not synced: recovery renders
    /// it again from the manifest if a crash emptied it, and every MARK rewrites it
    /// atomically. The manifest's fsync also makes its name and the take directory's name
    /// durable on the file systems a data partition is (ext4 on the images, XFS, Btrfs);
    /// elsewhere the take directory and its parent are fsynced too
    /// ([`crate::take::segment_writer::sync_new_file`]).
    fn create_first_files(&self) -> std::io::Result<()> {
        use std::io::Write;
        let (Some(manifest_path), Some(markers)) =
            (self.spec.manifest_path(), self.spec.markers_name())
        else {
            return Ok(());
        };
        let create = |path: &std::path::Path, contents: &[u8]| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(contents)?;
            Ok::<_, std::io::Error>(f)
        };
        let manifest = create(
            &manifest_path,
            &serde_json::to_vec_pretty(&self.manifest).expect("manifest serialises"),
        )?;
        create(&self.spec.dir.join(markers), self.markers_text().as_bytes())?;
        crate::take::segment_writer::sync_new_file(&manifest, &self.spec.dir)
    }

    fn markers_text(&self) -> String {
        markers::render(
            self.spec.take.as_str(),
            &self.spec.node,
            self.spec.start_at,
            &self.manifest.markers,
        )
    }

    fn write_markers(&mut self) {
        if let Some(name) = self.spec.markers_name() {
            let text = self.markers_text();
            if let Err(e) = write_atomic(&self.spec.dir.join(&name), text.as_bytes()) {
                tracing::error!(error = %e, "cannot write the markers file");
                self.problem
                    .get_or_insert(format!("cannot write the markers file: {e}"));
            }
        }
    }

    fn segment_closed(
        &mut self,
        camera: usize,
        segment: u32,
        first_index: u64,
        closed: ClosedSegment,
    ) {
        let record = SegmentRecord {
            index: segment,
            video: closed.names.video.clone(),
            timestamps_bin: closed.names.timestamps_bin.clone(),
            timestamps_txt: closed.names.timestamps_txt.clone().unwrap_or_default(),
            metadata_csv: closed.names.metadata_csv.clone(),
            frames: closed.frames,
            first_frame_index: first_index,
            first_frame_ns: closed.first_frame_ns,
            last_frame_ns: closed.last_frame_ns,
            closed_cleanly: true,
        };
        self.manifest.cameras[camera].segments.push(record);
        self.manifest.files.extend(closed.files);
        self.write_manifest();
    }

    fn frame_kept(&mut self, camera: usize, ts: UnixNanos, segment: u32, drops: u64) {
        let index = self.kept[camera].len() as u64;
        if index == 0 {
            if let Some(m) = self.spec.phase.get(camera) {
                self.phase_at_start[camera] = Some((m.state(), m.lock_losses()));
            }
        }
        self.kept[camera].push(ts);
        let starts = &mut self.segment_starts[camera];
        if starts.last().is_none_or(|&(s, _)| s != segment) {
            starts.push((segment, index));
        }
        let cam = &mut self.manifest.cameras[camera];
        cam.frames += 1;
        cam.drops += drops;
        cam.first_frame_ns.get_or_insert(ts);
        cam.last_frame_ns = Some(ts);
        let live = &mut self.live[camera];
        live.frames = cam.frames;
        live.drops = cam.drops;
        live.segment = Some(segment);
        // Marks made before this frame existed resolve to it.
        let mut resolved = false;
        for m in &mut self.manifest.markers {
            let f = &mut m.frames[camera];
            if f.frame_index.is_none() && m.at_ns <= ts {
                *f = MarkerFrame {
                    camera,
                    frame_index: Some(index),
                    frame_ns: Some(ts),
                    segment: Some(segment),
                };
                resolved = true;
            }
        }
        if resolved {
            self.write_markers();
        }
    }

    fn locate(&self, camera: usize, at: UnixNanos) -> MarkerFrame {
        let kept = &self.kept[camera];
        match marker_frame(kept, at) {
            Some(i) => {
                let segment = self.segment_starts[camera]
                    .iter()
                    .rev()
                    .find(|&&(_, first)| first <= i as u64)
                    .map(|&(s, _)| s);
                MarkerFrame {
                    camera,
                    frame_index: Some(i as u64),
                    frame_ns: Some(kept[i]),
                    segment,
                }
            }
            None => MarkerFrame {
                camera,
                frame_index: None,
                frame_ns: None,
                segment: None,
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked writer thread must not take the node's bookkeeping down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's handle on a running take.
pub struct TakeHandle {
    pub take: TakeName,
    pub start_at: UnixNanos,
    control: Arc<TakeControl>,
    book: Arc<Mutex<TakeBook>>,
    senders: Vec<SyncSender<Frame>>,
    /// Per camera: frames inside the take lost to a full queue (the writer attributes the
    /// gap it then sees to them).
    queue_full: Arc<Vec<AtomicU64>>,
}

impl TakeHandle {
    /// Hands a frame to its camera's writer without waiting; a full queue loses the frame.
    pub fn offer(&self, frame: &Frame) {
        if let Some(tx) = self.senders.get(frame.camera) {
            match tx.try_send(frame.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    // Only frames inside the take matter; the writer counts the gap and
                    // logs the burst with this cause.
                    if frame.timestamp_ns >= self.start_at {
                        if let Some(n) = self.queue_full.get(frame.camera) {
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    pub fn set_stop_at(&self, stop_at: UnixNanos) {
        self.control.stop_at.store(stop_at, Ordering::SeqCst);
    }

    pub fn stop_at(&self) -> Option<UnixNanos> {
        self.control.stop_at()
    }

    pub fn stop_now(&self, reason: StopReason) {
        self.control.request_stop(reason);
    }

    /// Stops at once and says why in status (the disk guard).
    pub fn stop_with_problem(&self, reason: StopReason, problem: String) {
        lock(&self.book).problem.get_or_insert(problem);
        self.control.request_stop(reason);
    }

    /// True once any camera kept its first frame.
    pub fn is_recording(&self) -> bool {
        self.control.recording.load(Ordering::SeqCst)
    }

    /// What the take is doing, in the words a refusal uses: `recording` or `armed`.
    pub fn armed_or_recording(&self) -> &'static str {
        if self.is_recording() {
            "recording"
        } else {
            "armed"
        }
    }

    /// Adds a MARK: each camera's first frame at or after `at`, now or when it arrives.
    pub fn mark(&self, at: UnixNanos, note: String) -> Vec<MarkerFrame> {
        let mut book = lock(&self.book);
        let frames: Vec<MarkerFrame> = (0..book.kept.len()).map(|c| book.locate(c, at)).collect();
        book.manifest.markers.push(Marker {
            at_ns: at,
            note,
            frames: frames.clone(),
        });
        book.write_markers();
        frames
    }

    pub fn live(&self) -> Vec<LiveCamera> {
        lock(&self.book).live.clone()
    }

    pub fn problem(&self) -> Option<String> {
        lock(&self.book).problem.clone()
    }
}

/// What the coordinator reports when the take is over.
#[derive(Clone, Debug)]
pub struct Finished {
    pub outcome: TakeOutcome,
    pub problem: Option<String>,
    pub live: Vec<LiveCamera>,
    /// Nothing was recorded and the take was aborted: its directory is gone.
    pub removed: bool,
    /// What the take wrote per second (all cameras), for the next take's disk estimate.
    pub bytes_per_second: Option<f64>,
}

/// Starts recording `spec` (its directory must exist). `on_done` runs on the coordinator
/// thread once every file is closed and the manifest is final.
pub fn start(
    spec: TakeSpec,
    on_done: Box<dyn FnOnce(Finished) + Send>,
) -> std::io::Result<Arc<TakeHandle>> {
    let control = Arc::new(TakeControl {
        stop_at: AtomicI64::new(i64::MAX),
        stop_now: Mutex::new(None),
        recording: AtomicBool::new(false),
    });
    // A directory made ahead (`spare_take_dir`) holds its reserve already.
    if let Some(p) = spec.reserve_path() {
        if !std::fs::metadata(&p).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            reserve_space(&p)?;
        }
    }
    let book = TakeBook::new(spec.clone());
    // The manifest exists from START on: a crash even before the first frame leaves a take
    // that the next start finds and finalises.
    book.create_first_files()?;
    let book = Arc::new(Mutex::new(book));
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    let queue_full: Arc<Vec<AtomicU64>> =
        Arc::new(spec.cameras.iter().map(|_| AtomicU64::new(0)).collect());
    for (index, info) in spec.cameras.iter().enumerate() {
        let (tx, rx) = mpsc::sync_channel(QUEUE_FRAMES);
        senders.push(tx);
        let writer = CameraWriter {
            index,
            spec: spec.clone(),
            period_ns: info.period_ns(),
            control: control.clone(),
            book: book.clone(),
            rx,
            queue_full: queue_full.clone(),
            counters: spec
                .counters
                .get(index)
                .cloned()
                .unwrap_or_else(CameraCounters::unregistered),
        };
        writers.push(
            std::thread::Builder::new()
                .name(format!("rec-cam{}", index + 1))
                .spawn(move || writer.run())?,
        );
    }
    let handle = Arc::new(TakeHandle {
        take: spec.take.clone(),
        start_at: spec.start_at,
        control: control.clone(),
        book: book.clone(),
        senders,
        queue_full,
    });
    std::thread::Builder::new()
        .name("take-finish".into())
        .spawn(move || {
            let finished = finish(writers, &control, &book);
            on_done(finished);
        })?;
    Ok(handle)
}

fn finish(
    writers: Vec<JoinHandle<StopReason>>,
    control: &TakeControl,
    book: &Mutex<TakeBook>,
) -> Finished {
    let mut reasons = Vec::new();
    for w in writers {
        reasons.push(w.join().unwrap_or(StopReason::CameraFailed));
    }
    // The reason that ended the take first for everyone, else what the cameras saw.
    let reason = control
        .stop_now()
        .or_else(|| {
            reasons
                .iter()
                .copied()
                .find(|r| *r != StopReason::Requested)
        })
        .unwrap_or(StopReason::Requested);
    let mut book = lock(book);
    let nothing_recorded = book.kept.iter().all(Vec::is_empty);
    if reason == StopReason::Aborted && nothing_recorded {
        // An aborted armed take never recorded: remove the files we made at START (the
        // manifest and the empty markers file) and its directory, nothing else.
        let dir = book.spec.dir.clone();
        if let Some(p) = book.spec.manifest_path() {
            let _ = std::fs::remove_file(p);
        }
        if let Some(m) = book.spec.markers_name() {
            let _ = std::fs::remove_file(dir.join(m));
        }
        if let Some(p) = book.spec.reserve_path() {
            let _ = std::fs::remove_file(p);
        }
        let removed = std::fs::remove_dir(&dir).is_ok();
        return Finished {
            outcome: TakeOutcome {
                take: book.spec.take.clone(),
                state: ManifestState::Complete,
                stop_reason: Some(reason),
            },
            problem: None,
            live: book.live.clone(),
            removed,
            bytes_per_second: None,
        };
    }
    // Give back the reserved space first: on a full disk it is what the last files need.
    if let Some(p) = book.spec.reserve_path() {
        let _ = std::fs::remove_file(p);
    }
    book.manifest.stop_reason = Some(reason);
    book.manifest.stop_at_ns = control.stop_at().or(book.manifest.stop_at_ns);
    book.manifest.clock_at_stop = Some(clock_health::read());
    book.write_markers();
    if let Some(name) = book.spec.markers_name() {
        match crate::take::segment_writer::file_entry(&book.spec.dir.join(&name)) {
            Ok(entry) => book.manifest.files.push(entry),
            Err(e) => tracing::error!(error = %e, "cannot hash the markers file"),
        }
    }
    book.manifest.state = ManifestState::Complete;
    book.write_manifest();
    let drops = book
        .live
        .iter()
        .enumerate()
        .map(|(i, l)| format!("cam{} {}", i + 1, l.drop_summary()))
        .collect::<Vec<_>>()
        .join("; ");
    let frames: u64 = book.manifest.cameras.iter().map(|c| c.frames).sum();
    let bytes_per_second = take_rate(&book.manifest);
    tracing::info!(take = %book.spec.take, ?reason, frames, %drops, bytes_per_second, "take finished");
    Finished {
        outcome: TakeOutcome {
            take: book.spec.take.clone(),
            state: ManifestState::Complete,
            stop_reason: Some(reason),
        },
        problem: book.problem.clone(),
        live: book.live.clone(),
        removed: false,
        bytes_per_second,
    }
}

/// Bytes per second the take wrote (all cameras), over its longest camera's span; `None`
/// for a take too short to say.
fn take_rate(manifest: &TakeManifest) -> Option<f64> {
    let span_ns = manifest
        .cameras
        .iter()
        .filter_map(|c| Some(c.last_frame_ns? - c.first_frame_ns?))
        .max()?;
    if span_ns < 1_000_000_000 {
        return None;
    }
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    Some(bytes as f64 / (span_ns as f64 / 1e9))
}

struct OpenSegment {
    index: u32,
    first_frame_index: u64,
    writer: SegmentWriter,
}

struct CameraWriter {
    index: usize,
    spec: TakeSpec,
    period_ns: i64,
    control: Arc<TakeControl>,
    book: Arc<Mutex<TakeBook>>,
    rx: Receiver<Frame>,
    queue_full: Arc<Vec<AtomicU64>>,
    counters: CameraCounters,
}

impl CameraWriter {
    fn run(self) -> StopReason {
        let mut state = WriterState {
            encoder: None,
            open: None,
            drops: DropCounter::new(self.period_ns),
            kept: 0,
            out: Vec::new(),
            last_frame: Instant::now(),
            queue_full_seen: 0,
        };
        let reason = loop {
            if let Some(reason) = self.control.stop_now() {
                break reason;
            }
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(frame) => match place(
                    frame.timestamp_ns,
                    self.spec.start_at,
                    self.control.stop_at(),
                ) {
                    Placement::Before => state
                        .drops
                        .saw_before_start(frame.sequence, frame.timestamp_ns),
                    Placement::After => break StopReason::Requested,
                    Placement::Keep => {
                        state.last_frame = Instant::now();
                        if let Err(reason) = self.keep(&mut state, &frame) {
                            self.control.request_stop(reason);
                            break reason;
                        }
                    }
                },
                Err(RecvTimeoutError::Timeout) => {
                    if state.kept > 0 && state.last_frame.elapsed() > camera_silence(self.period_ns)
                    {
                        self.problem(format!(
                            "camera {} stopped delivering frames",
                            self.index + 1
                        ));
                        self.control.request_stop(StopReason::CameraFailed);
                        break StopReason::CameraFailed;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break StopReason::Shutdown,
            }
        };
        if let Some(open) = state.open.take() {
            self.close(open);
        }
        reason
    }

    fn problem(&self, text: String) {
        tracing::warn!(camera = self.index + 1, "{text}");
        lock(&self.book).problem.get_or_insert(text);
    }

    fn close(&self, open: OpenSegment) {
        match open.writer.close() {
            Ok(closed) => lock(&self.book).segment_closed(
                self.index,
                open.index,
                open.first_frame_index,
                closed,
            ),
            Err(e) => self.problem(format!("cannot close segment {}: {e}", open.index)),
        }
    }

    fn keep(&self, st: &mut WriterState, frame: &Frame) -> Result<(), StopReason> {
        self.control.recording.store(true, Ordering::SeqCst);
        let lost = st.drops.observe(frame.sequence, frame.timestamp_ns);
        if lost > 0 {
            // The frames the queue refused are part of this gap; the rest never reached
            // the node's frame path.
            let refused = self.queue_full[self.index].load(Ordering::Relaxed) - st.queue_full_seen;
            let by_queue = lost.min(refused);
            st.queue_full_seen += by_queue;
            for (cause, frames) in [
                (DropCause::QueueFull, by_queue),
                (DropCause::SequenceGap, lost - by_queue),
            ] {
                if frames > 0 {
                    self.drop_burst(cause, frames, st.kept, frame);
                }
            }
        }
        let segment = if self.spec.segment_seconds == 0 {
            0
        } else {
            segment_of(
                frame.timestamp_ns,
                self.spec.start_at,
                i64::from(self.spec.segment_seconds) * 1_000_000_000,
            )
        };
        let mut key = false;
        if st.open.as_ref().is_none_or(|o| o.index != segment) {
            if let Some(open) = st.open.take() {
                self.close(open);
            }
            self.check_space()?;
            let names = self.spec.segment_names(self.index, segment);
            let writer = SegmentWriter::create(&self.spec.dir, names).map_err(|e| {
                self.problem(format!("cannot open segment {segment}: {e}"));
                io_reason(&e)
            })?;
            st.open = Some(OpenSegment {
                index: segment,
                first_frame_index: st.kept,
                writer,
            });
            key = true;
        }
        if st.encoder.is_none() {
            st.encoder = Some((self.spec.new_encoder)(self.spec.encoder).map_err(|e| {
                self.problem(format!("cannot start the encoder: {e}"));
                StopReason::CameraFailed
            })?);
        }
        st.out.clear();
        let encoder = st.encoder.as_mut().expect("created above");
        let encoding = Instant::now();
        let encoded = encoder.encode(frame, key, &mut st.out);
        self.counters
            .encode_seconds
            .observe(encoding.elapsed().as_secs_f64());
        let path = match encoded {
            Ok(path) => path,
            Err(e) => {
                // The frame is lost, not hidden: count it and carry on with the next one.
                tracing::warn!(camera = self.index + 1, error = %e, "frame not encoded");
                lock(&self.book).manifest.cameras[self.index].drops += 1;
                self.drop_burst(DropCause::EncoderLate, 1, st.kept, frame);
                if key {
                    // The segment must start on a key frame: ask again with the next frame.
                    let open = st.open.take().expect("opened above");
                    if open.writer.frames() == 0 {
                        self.close(open);
                    } else {
                        st.open = Some(open);
                    }
                }
                return Ok(());
            }
        };
        let open = st.open.as_mut().expect("opened above");
        let applied = frame.applied.unwrap_or_default();
        if let Err(e) = open
            .writer
            .write_frame(&st.out, frame.timestamp_ns, st.kept, &applied)
        {
            self.problem(write_failed_problem(open.index, &e));
            return Err(io_reason(&e));
        }
        st.kept += 1;
        self.counters.kept.inc();
        {
            let mut book = lock(&self.book);
            path.count(frame, &mut book.manifest.cameras[self.index].pixel_paths);
            book.frame_kept(self.index, frame.timestamp_ns, segment, lost);
        }
        if let Err(e) = open.writer.sync_if_due() {
            self.problem(format!("fsync failed: {e}"));
            return Err(io_reason(&e));
        }
        Ok(())
    }

    /// One burst of lost frames: logged, counted in `/metrics`, shown in status.
    fn drop_burst(&self, cause: DropCause, frames: u64, before_frame: u64, frame: &Frame) {
        tracing::warn!(
            take = %self.spec.take,
            camera = self.index + 1,
            frame_index = before_frame,
            sequence = frame.sequence,
            cause = cause.as_str(),
            frames,
            "frames dropped"
        );
        self.counters.dropped(cause, frames);
        lock(&self.book).live[self.index].dropped(DropBurst {
            cause,
            frames,
            before_frame,
            sequence: frame.sequence,
            at_ns: frame.timestamp_ns,
        });
    }

    fn check_space(&self) -> Result<(), StopReason> {
        let free = disk_space::free_bytes(&self.spec.data_dir).unwrap_or(u64::MAX);
        if free < self.spec.min_free_bytes {
            self.problem(disk_full_problem(free, self.spec.min_free_bytes));
            return Err(StopReason::DiskFull);
        }
        Ok(())
    }
}

/// Name of the reserve file in a take's directory (hidden, never listed in the manifest).
pub const RESERVE_FILE: &str = ".final-manifest-reserve";

/// Held back per take for the final markers file and manifest (a few KiB per segment).
const RESERVE_BYTES: u64 = 1024 * 1024;

/// Allocates real blocks (not a sparse file) so the space is truly held.
/// Makes the reserve file at `path` (a take's [`RESERVE_FILE`]).
pub fn reserve_space(path: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    nix::fcntl::posix_fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), 0, RESERVE_BYTES as i64)
        .map_err(std::io::Error::from)?;
    Ok(())
}

/// Status text when the disk guard ends a take.
pub fn disk_full_problem(free: u64, floor: u64) -> String {
    format!(
        "take stopped: free space {} fell below the floor of {} (recording.min_free_mb); free space on the data partition",
        disk_space::human(free),
        disk_space::human(floor)
    )
}

fn write_failed_problem(segment: u32, e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        format!("take stopped: the data partition is full (no space left while writing segment {segment}); every whole frame before it was kept; free some space")
    } else {
        format!("take stopped: writing segment {segment} failed ({e}); every whole frame before it was kept")
    }
}

fn io_reason(e: &std::io::Error) -> StopReason {
    // A full disk (or quota) is what ends takes in practice; any other write error is
    // reported in the problem text with the same clean stop.
    let _ = e;
    StopReason::DiskFull
}

struct WriterState {
    encoder: Option<Box<dyn FrameEncoder>>,
    open: Option<OpenSegment>,
    drops: DropCounter,
    kept: u64,
    out: Vec<u8>,
    last_frame: Instant,
    /// How many of [`CameraWriter::queue_full`]'s losses were already attributed.
    queue_full_seen: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_silence_is_three_seconds_or_ten_periods_whichever_is_longer() {
        assert_eq!(camera_silence(33_333_333), Duration::from_secs(3));
        assert_eq!(camera_silence(1_000_000_000), Duration::from_secs(10));
        assert_eq!(camera_silence(0), Duration::from_secs(3));
    }
}
