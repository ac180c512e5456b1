//! The node service: owns the cameras, routes their frames to the running take, runs the
//! take state machine (idle → armed → recording → idle), the once-a-second status loop
//! (STATUS=, disk guard, fps) and the clean shutdown. [`run`] is what the binary calls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use camrig_protocol::api::{
    AbortRequest, CommandReply, MarkRequest, NodeState, NodeStatus, StartRequest, StopRequest,
    TakeOutcome,
};
use camrig_protocol::camera_settings::{ApplySettingsRequest, NodeCameraSettings};
use camrig_protocol::health::NodeHealth;
use camrig_protocol::manifest::StopReason;
use camrig_protocol::naming::{self, TakeFiles};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::{now_unix_ns, UnixNanos};
use camrig_systemd::watchdog::Progress;

use super::camera_settings::{ApplyError, NodeSettings, Plan};
use super::health::HealthProbe;
use super::metrics::NodeMetrics;
use super::status::{CameraStats, FrameCount};
use super::{clock_health, disk_space, status_line};
use crate::camera::phase_lock::PhaseMonitor;
use crate::camera::{CameraInfo, CaptureBackend, CaptureError, Frame, FrameSink};
use crate::config::NodeConfig;
use crate::encode::{EncoderSettings, NewEncoder};
use crate::take::recorder::{
    self as take_recorder, Finished, Layout, LiveCamera, TakeHandle, TakeSpec,
};
use crate::take::{deletion, spare_take_dir};

/// Why the node refused or failed a command. The state machine speaks in these kinds; the
/// HTTP API maps each to its status code ([`super::http_api`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such take or thing on this node (404).
    #[error("{0}")]
    NotFound(String),
    /// The node's state does not allow it now (409).
    #[error("{0}")]
    Conflict(String),
    /// The node cannot record at all (no camera): 503.
    #[error("{0}")]
    Unavailable(String),
    /// Not enough free space to start (507).
    #[error("{0}")]
    DiskFull(String),
    /// A fault on the node's side (500).
    #[error("{0}")]
    Internal(String),
}

impl CommandError {
    /// A fault on the node's side; the details go to the log, the client gets the gist.
    pub fn internal(e: impl std::fmt::Display) -> CommandError {
        tracing::error!(error = %e, "request failed");
        CommandError::Internal(format!("the node failed to do this: {e}; see its journal"))
    }
}

/// Remembered answers to commands, so a repeated command_id gets the same answer.
const REMEMBERED_COMMANDS: usize = 1024;

/// The command verbs of `/v1/takes/...`: a command_id belongs to one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Stop,
    Mark,
    Abort,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Start => "START",
            Verb::Stop => "STOP",
            Verb::Mark => "MARK",
            Verb::Abort => "ABORT",
        }
    }
}

/// How far in the past a START instant may lie: a command delayed on the network starts
/// at once (the frames since the instant are gone anyway); one older than this is a
/// mistake (a wrong clock, a replayed request) and is refused.
pub const MAX_START_PAST: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Inner {
    replies: HashMap<String, (Verb, Result<CommandReply, CommandError>)>,
    reply_order: Vec<String>,
    last_take: Option<TakeOutcome>,
    last_live: Vec<LiveCamera>,
    problem: Option<String>,
    recovered: Vec<TakeName>,
    /// What the last take wrote per second (all cameras), for the disk estimate.
    take_rate: Option<f64>,
}

pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) token: Option<String>,
    pub(crate) label: String,
    /// The opened cameras (their rate changes when a new frame rate reopens them).
    cameras: RwLock<Vec<CameraInfo>>,
    /// Each camera's phase lock, as its backend runs it.
    phase: RwLock<Vec<Arc<PhaseMonitor>>>,
    /// The capture backend, from [`Node::attach_cameras`] until [`Node::detach_cameras`].
    backend: Mutex<Option<Box<dyn CaptureBackend>>>,
    /// How the composition root opens the cameras for a config (to reopen them at a new
    /// frame rate).
    open_cameras: OpenCameras,
    /// Where the backend delivers frames (to this node), for a reopened backend.
    sink: Mutex<Option<FrameSink>>,
    /// Set when no camera could be opened: START is refused and STATUS says so.
    camera_problem: Option<String>,
    stats: Vec<CameraStats>,
    active: RwLock<Option<Arc<TakeHandle>>>,
    inner: Mutex<Inner>,
    /// Commands run one at a time: two STARTs racing must not both find the node idle.
    command_lock: Mutex<()>,
    progress: Progress,
    /// Set before the cameras stop: frames are no longer kept, so every lent camera buffer
    /// goes back (the backend waits for them before it frees anything).
    releasing_frames: AtomicBool,
    /// The cameras' settings; `None` when no camera was opened.
    settings: Option<NodeSettings>,
    new_encoder: NewEncoder,
    pub(crate) metrics: NodeMetrics,
    health: HealthProbe,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the node's cameras for a config ([`super::run::open_cameras`]).
pub(super) type OpenCameras = fn(&NodeConfig) -> Result<Box<dyn CaptureBackend>, CaptureError>;

/// What the composition root opened for the node: the camera backend (none when it could
/// not, and why) and how to open it again.
pub(super) struct OpenedCameras {
    pub(super) backend: Option<Box<dyn CaptureBackend>>,
    pub(super) problem: Option<String>,
    pub(super) open: OpenCameras,
}

impl Node {
    /// The node for `config` with the cameras its backend opened, the takes recovery
    /// finalised at start, and how its takes get encoders.
    pub(super) fn new(
        config: NodeConfig,
        token: Option<String>,
        opened: OpenedCameras,
        recovered: Vec<TakeName>,
        new_encoder: NewEncoder,
    ) -> Arc<Node> {
        let OpenedCameras {
            backend,
            problem: camera_problem,
            open,
        } = opened;
        let cameras = backend
            .as_ref()
            .map(|b| b.cameras().to_vec())
            .unwrap_or_default();
        let phase = backend.as_ref().map(|b| b.phase()).unwrap_or_default();
        let label = node_label(&config);
        let settings = backend
            .as_ref()
            .map(|b| NodeSettings::new(b.controls(), cameras.clone(), config.camera.fps, &label));
        let metrics = NodeMetrics::new(cameras.len());
        Arc::new(Node {
            label,
            settings,
            token,
            stats: (0..cameras.len())
                .map(|i| CameraStats::new(metrics.camera(i)))
                .collect(),
            metrics,
            health: HealthProbe::new(config.health.sysfs_root.clone()),
            cameras: RwLock::new(cameras),
            phase: RwLock::new(phase),
            backend: Mutex::new(backend),
            open_cameras: open,
            sink: Mutex::new(None),
            camera_problem,
            active: RwLock::new(None),
            inner: Mutex::new(Inner {
                recovered,
                ..Inner::default()
            }),
            command_lock: Mutex::new(()),
            progress: Progress::new(),
            releasing_frames: AtomicBool::new(false),
            new_encoder,
            config,
        })
    }

    /// Starts the cameras (delivering to this node), then applies the config's
    /// `[camera_settings]`, checked like any request: a value a camera cannot take is a
    /// problem STATUS shows, and the cameras stay on automatic at `camera.fps`.
    pub(super) fn attach_cameras(self: &Arc<Self>) -> Result<(), CaptureError> {
        if let Some(b) = lock(&self.backend).as_mut() {
            b.start(self.sink())?;
        }
        if self.settings.is_some() {
            let _one_at_a_time = lock(&self.command_lock);
            if let Err(e) = self.change_settings(&[self.config.camera_settings]) {
                tracing::error!("camera_settings in the config: {e}");
                lock(&self.inner).problem = Some(format!(
                    "camera_settings in the config not applied, cameras on automatic: {e}"
                ));
            }
        }
        Ok(())
    }

    /// The backend, for the composition root to stop at shutdown.
    pub(super) fn detach_cameras(&self) -> Option<Box<dyn CaptureBackend>> {
        lock(&self.backend).take()
    }

    /// Frames to this node; kept to give a reopened backend.
    fn sink(self: &Arc<Self>) -> FrameSink {
        let weak = Arc::downgrade(self);
        let sink: FrameSink = Arc::new(move |frame| {
            if let Some(n) = weak.upgrade() {
                n.on_frame(frame);
            }
        });
        *lock(&self.sink) = Some(sink.clone());
        sink
    }

    pub(crate) fn camera_count(&self) -> usize {
        self.stats.len()
    }

    pub(crate) fn cameras(&self) -> Vec<CameraInfo> {
        self.cameras
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn phase_monitors(&self) -> Vec<Arc<PhaseMonitor>> {
        self.phase.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The rate the cameras run at now.
    fn fps(&self) -> f64 {
        self.cameras()
            .first()
            .map(|c| c.fps)
            .unwrap_or(self.config.camera.fps)
    }

    /// What the watchdog watches: frames arriving (or, without a camera, the status loop).
    pub(super) fn progress(&self) -> Progress {
        self.progress.clone()
    }

    fn active(&self) -> Option<Arc<TakeHandle>> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_active(&self, take: Option<Arc<TakeHandle>>) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = take;
    }

    /// Called on the capture threads for every frame: must not block.
    pub(super) fn on_frame(&self, frame: Frame) {
        if self.releasing_frames.load(Ordering::SeqCst) {
            return;
        }
        self.progress.tick();
        if let Some(s) = self.stats.get(frame.camera) {
            s.count();
        }
        if let Some(take) = self.active() {
            take.offer(&frame);
        }
        if let Some(s) = self.stats.get(frame.camera) {
            s.keep_latest(frame);
        }
    }

    /// Stops keeping frames (the preview's latest ones included) so that the camera gets
    /// every lent buffer back before it stops.
    pub(super) fn release_frames(&self) {
        self.releasing_frames.store(true, Ordering::SeqCst);
        for s in &self.stats {
            s.forget_latest();
        }
    }

    pub(crate) fn recordings_dir(&self) -> PathBuf {
        self.config.recordings_dir()
    }

    pub(crate) fn latest_frame(&self, camera: usize) -> Option<Frame> {
        self.stats.get(camera).and_then(CameraStats::latest)
    }

    fn state_of(take: &Option<Arc<TakeHandle>>) -> NodeState {
        match take {
            None => NodeState::Idle,
            Some(t) if t.is_recording() => NodeState::Recording,
            Some(_) => NodeState::Armed,
        }
    }

    pub fn status(&self) -> NodeStatus {
        let active = self.active();
        let inner = lock(&self.inner);
        let live = match &active {
            Some(t) => t.live(),
            None => inner.last_live.clone(),
        };
        let infos = self.cameras();
        let phase = self.phase_monitors();
        let n = infos.len();
        let cameras = infos
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let l = live.get(index).cloned().unwrap_or_default();
                let mut status = self.stats[index].camera_status(index, n, c, l);
                status.phase = phase.get(index).map(|m| m.status());
                status
            })
            .collect();
        let problem = self
            .camera_problem
            .clone()
            .or_else(|| active.as_ref().and_then(|t| t.problem()))
            .or_else(|| inner.problem.clone());
        let disk_free_bytes = disk_space::free_bytes(&self.config.data_dir).unwrap_or(0);
        let health = self.health(disk_free_bytes, inner.take_rate);
        NodeStatus {
            node: self.label.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            state: Self::state_of(&active),
            take: active.as_ref().map(|t| t.take.clone()),
            start_at_ns: active.as_ref().map(|t| t.start_at),
            stop_at_ns: active.as_ref().and_then(|t| t.stop_at()),
            segment: active
                .as_ref()
                .and_then(|_| live.iter().filter_map(|l| l.segment).max()),
            cameras,
            disk_free_bytes,
            disk_floor_bytes: self.config.min_free_bytes(),
            clock: clock_health::read(),
            standalone: self.config.standalone,
            problem,
            last_take: inner.last_take.clone(),
            recovered_takes: inner.recovered.clone(),
            now_ns: now_unix_ns(),
            health: Some(health),
        }
    }

    /// Host health plus the disk's recordable time at the last take's rate (else the
    /// configured bitrate's estimate).
    fn health(&self, disk_free: u64, measured: Option<f64>) -> NodeHealth {
        let host = self.health.read();
        let (rate, measured) = match measured {
            Some(r) if r > 0.0 => (r as u64, true),
            _ => (self.estimated_take_rate(), false),
        };
        let usable = disk_free.saturating_sub(self.config.min_free_bytes());
        NodeHealth {
            cpu_temp_c: host.cpu_temp_c,
            throttling: host.throttling,
            mem_available_bytes: host.mem_available_bytes,
            mem_total_bytes: host.mem_total_bytes,
            take_bytes_per_second: rate,
            take_rate_measured: measured,
            recordable_seconds: usable / rate.max(1),
        }
    }

    /// Bytes per second a take of every camera writes, from the config: H.264 at its
    /// bitrate; MJPEG at 2 bits per pixel (grainy 720p at quality 85 measures about that).
    fn estimated_take_rate(&self) -> u64 {
        let cameras = self.camera_count().max(1) as f64;
        let c = &self.config.camera;
        let fps = self.fps();
        let per_camera = match self.config.recording.codec {
            naming::Codec::H264 => {
                f64::from(self.config.recording.h264_bitrate_kbps) * 1000.0 / 8.0
            }
            naming::Codec::Mjpeg => f64::from(c.width) * f64::from(c.height) * fps * 2.0 / 8.0,
        };
        (per_camera * cameras).ceil() as u64
    }

    fn reply(&self, command_id: &str, take: &Option<Arc<TakeHandle>>) -> CommandReply {
        CommandReply {
            command_id: command_id.to_owned(),
            state: Self::state_of(take),
            take: take.as_ref().map(|t| t.take.clone()),
            start_at_ns: take.as_ref().map(|t| t.start_at),
            stop_at_ns: take.as_ref().and_then(|t| t.stop_at()),
            marker_frames: Vec::new(),
        }
    }

    /// Runs a command once per command_id; repeats get the first answer again. An id
    /// already used for another verb is refused (409): it would otherwise answer 200 for a
    /// command that was never run.
    pub(crate) fn command(
        &self,
        verb: Verb,
        command_id: &str,
        run: impl FnOnce() -> Result<CommandReply, CommandError>,
    ) -> Result<CommandReply, CommandError> {
        let _one_at_a_time = lock(&self.command_lock);
        if let Some((used_for, answer)) = lock(&self.inner).replies.get(command_id) {
            if *used_for != verb {
                return Err(CommandError::Conflict(format!(
                    "command_id {command_id:?} was already used for {}; send this {} with a new command_id",
                    used_for.name(),
                    verb.name()
                )));
            }
            return answer.clone();
        }
        let answer = run();
        let mut inner = lock(&self.inner);
        inner
            .replies
            .insert(command_id.to_owned(), (verb, answer.clone()));
        inner.reply_order.push(command_id.to_owned());
        if inner.reply_order.len() > REMEMBERED_COMMANDS {
            let old = inner.reply_order.remove(0);
            inner.replies.remove(&old);
        }
        answer
    }

    pub(crate) fn start_take(
        self: &Arc<Self>,
        req: &StartRequest,
    ) -> Result<CommandReply, CommandError> {
        let arming = std::time::Instant::now();
        self.check_start_instant(req.start_at_ns)?;
        if let Some(p) = &self.camera_problem {
            return Err(CommandError::Unavailable(format!("cannot record: {p}")));
        }
        if self.config.standalone {
            return Err(CommandError::Conflict(
                "this node runs as a standalone recorder (standalone = true) and takes no START"
                    .into(),
            ));
        }
        if let Some(t) = self.active() {
            let state = t.armed_or_recording();
            return Err(CommandError::Conflict(format!(
                "take {} is {state}; stop or abort it before starting another",
                t.take
            )));
        }
        let dir = self.recordings_dir().join(req.take.as_str());
        if dir.exists() {
            return Err(CommandError::Conflict(format!(
                "take {} already exists on this node; choose a new take name (recordings are never overwritten)",
                req.take
            )));
        }
        let free = disk_space::free_bytes(&self.config.data_dir).map_err(CommandError::internal)?;
        let floor = self.config.min_free_bytes();
        if free < floor {
            return Err(CommandError::DiskFull(format!(
                "only {} free on the data partition, {} needed (recording.min_free_mb); free some space",
                disk_space::human(free),
                disk_space::human(floor)
            )));
        }
        // The directory made ahead for this moment, else a new one.
        let made = match spare_take_dir::claim(&self.recordings_dir(), &dir) {
            Ok(true) => Ok(()),
            Ok(false) => std::fs::create_dir(&dir),
            Err(e) => Err(e),
        };
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(CommandError::Conflict(format!(
                    "take {} already exists on this node",
                    req.take
                )))
            }
            Err(e) => return Err(CommandError::internal(e)),
        }
        let spec = TakeSpec {
            take: req.take.clone(),
            dir: dir.clone(),
            node: self.label.clone(),
            start_at: req.start_at_ns,
            codec: self.config.recording.codec,
            segment_seconds: self.config.recording.segment_seconds,
            cameras: self.cameras(),
            encoder: self.encoder_settings(self.config.recording.codec),
            new_encoder: self.new_encoder,
            min_free_bytes: floor,
            data_dir: self.config.data_dir.clone(),
            layout: Layout::Take(TakeFiles::new(&req.take, &self.label, req.start_at_ns)),
            counters: self.stats.iter().map(|s| s.counters.clone()).collect(),
            settings: self.camera_settings_now(),
            phase: self.phase_monitors(),
        };
        let handle = self.launch(spec).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            CommandError::internal(e)
        })?;
        // The last take's problem was about that take; this one starts with a clean slate.
        lock(&self.inner).problem = None;
        // arm_ms: this node's share of the controller's arm latency (checks, take directory,
        // manifest and markers made durable, writer threads started).
        let arm_ms = arming.elapsed().as_secs_f64() * 1e3;
        tracing::info!(take = %req.take, start_at_ns = req.start_at_ns, arm_ms, "take armed");
        let active = Some(handle);
        Ok(self.reply(&req.command_id, &active))
    }

    /// A start instant inside the sane window: at most [`MAX_START_PAST`] ago and at most
    /// `recording.max_start_lead_ms` ahead.
    fn check_start_instant(&self, start_at: UnixNanos) -> Result<(), CommandError> {
        let now = now_unix_ns();
        let past = MAX_START_PAST.as_nanos() as i64;
        let lead_ms = self.config.recording.max_start_lead_ms;
        let lead = lead_ms as i64 * 1_000_000;
        let seconds = |ns: i128| ns as f64 / 1e9;
        if (start_at as i128) < now as i128 - past as i128 {
            return Err(CommandError::BadRequest(format!(
                "start_at_ns {start_at} is {:.1} s in the past (this node's clock reads {now}); \
                 a START instant may be at most {} s old: check the controller's clock and send a new START",
                seconds(now as i128 - start_at as i128),
                MAX_START_PAST.as_secs()
            )));
        }
        if start_at as i128 > now as i128 + lead as i128 {
            return Err(CommandError::BadRequest(format!(
                "start_at_ns {start_at} is {:.1} s ahead (this node's clock reads {now}); \
                 this node takes START instants at most {lead_ms} ms ahead (recording.max_start_lead_ms)",
                seconds(start_at as i128 - now as i128),
            )));
        }
        Ok(())
    }

    fn encoder_settings(&self, codec: naming::Codec) -> EncoderSettings {
        EncoderSettings {
            codec,
            mjpeg_quality: self.config.recording.mjpeg_quality,
            h264_bitrate_kbps: self.config.recording.h264_bitrate_kbps,
            fps: self.fps(),
            hardware: self.config.recording.encoder,
        }
    }

    fn launch(self: &Arc<Self>, spec: TakeSpec) -> std::io::Result<Arc<TakeHandle>> {
        let weak = Arc::downgrade(self);
        // Hold the write lock while starting so no frame sees a half-registered take.
        let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
        let handle = take_recorder::start(
            spec,
            Box::new(move |finished: Finished| {
                if let Some(node) = weak.upgrade() {
                    node.take_finished(finished);
                }
            }),
        )?;
        *active = Some(handle.clone());
        Ok(handle)
    }

    fn take_finished(&self, finished: Finished) {
        // The next take's directory, made before this node shows idle so no START waits
        // for it or finds it half made.
        self.prepare_spare_take_dir();
        self.set_active(None);
        let mut inner = lock(&self.inner);
        inner.problem = finished.problem.clone();
        inner.last_live = finished.live;
        if finished.bytes_per_second.is_some() {
            inner.take_rate = finished.bytes_per_second;
        }
        if !finished.removed {
            inner.last_take = Some(finished.outcome);
        }
    }

    /// Makes the next take's directory ahead ([`spare_take_dir`]); a failure only costs the
    /// next START the time to make it.
    pub(super) fn prepare_spare_take_dir(&self) {
        if self.config.standalone || self.camera_problem.is_some() {
            return;
        }
        if let Err(e) =
            spare_take_dir::prepare(&self.recordings_dir(), take_recorder::reserve_space)
        {
            tracing::warn!(error = %e, "cannot make the next take's directory ahead; START will make it");
        }
    }

    fn camera_settings_now(&self) -> Vec<camrig_protocol::camera_settings::CameraSettings> {
        self.settings
            .as_ref()
            .map(NodeSettings::current)
            .unwrap_or_default()
    }

    /// `GET /v1/camera-settings`.
    pub(crate) fn camera_settings(&self) -> Result<NodeCameraSettings, CommandError> {
        let settings = self.settings.as_ref().ok_or_else(|| self.no_camera())?;
        Ok(settings.view(|i| self.latest_frame(i).and_then(|f| f.applied)))
    }

    fn no_camera(&self) -> CommandError {
        CommandError::Unavailable(format!(
            "no camera: {}",
            self.camera_problem.as_deref().unwrap_or("none opened")
        ))
    }

    /// `PUT /v1/camera-settings`: refused while a take is armed or recording (nothing
    /// changes mid-take) and when any camera cannot take its value (nothing is applied).
    pub(crate) fn apply_camera_settings(
        &self,
        req: &ApplySettingsRequest,
    ) -> Result<NodeCameraSettings, CommandError> {
        if self.settings.is_none() {
            return Err(self.no_camera());
        }
        // Under the command lock: no START can arm a take while the settings change.
        let _one_at_a_time = lock(&self.command_lock);
        if let Some(t) = self.active() {
            let state = t.armed_or_recording();
            return Err(CommandError::Conflict(format!(
                "take {} is {state}: camera settings do not change during a take; stop it first",
                t.take
            )));
        }
        self.change_settings(&req.cameras).map_err(|e| match e {
            ApplyError::Invalid(_) | ApplyError::Unsupported(_) => {
                CommandError::BadRequest(e.to_string())
            }
            ApplyError::Backend(_) => CommandError::internal(e),
        })?;
        tracing::info!(command_id = %req.command_id, settings = %serde_json::to_string(&req.cameras).unwrap_or_default(), "camera settings applied");
        self.camera_settings()
    }

    /// Checks `requested` whole, reopens the cameras when it asks for another frame rate
    /// than they run at, then applies it. The caller holds the command lock and no take is
    /// armed or recording.
    fn change_settings(
        &self,
        requested: &[camrig_protocol::camera_settings::CameraSettings],
    ) -> Result<(), ApplyError> {
        let Some(settings) = self.settings.as_ref() else {
            return Ok(());
        };
        let plan = settings.plan(requested)?;
        let running = self.fps();
        if (plan.fps - running).abs() > 1e-9 {
            if let Err(e) = self.reopen_at(plan.fps, running) {
                // Reopened at the old rate (or not at all): its settings again.
                let _ = settings.set(&Plan {
                    settings: settings.current(),
                    fps: running,
                });
                return Err(e);
            }
        }
        settings.set(&plan)
    }

    /// Stops the cameras and opens them again at `fps` (each camera's phase lock then locks
    /// to that rate's grid); if they cannot be opened at `fps`, opens them again at
    /// `running` and says why.
    fn reopen_at(&self, fps: f64, running: f64) -> Result<(), ApplyError> {
        let mut slot = lock(&self.backend);
        let (Some(mut old), Some(sink)) = (slot.take(), lock(&self.sink).clone()) else {
            return Err(ApplyError::Backend("no camera is open".into()));
        };
        tracing::info!(
            from = running,
            to = fps,
            "reopening the cameras at a new frame rate"
        );
        // Every lent buffer goes back before the camera stops.
        self.release_frames();
        old.stop();
        drop(old);
        let open = |fps: f64| -> Result<Box<dyn CaptureBackend>, CaptureError> {
            let mut config = self.config.clone();
            config.camera.fps = fps;
            let mut b = (self.open_cameras)(&config)?;
            if b.cameras().len() != self.camera_count() {
                return Err(CaptureError::Camera(format!(
                    "{} camera(s) found where {} were open",
                    b.cameras().len(),
                    self.camera_count()
                )));
            }
            self.releasing_frames.store(false, Ordering::SeqCst);
            b.start(sink.clone())?;
            Ok(b)
        };
        let (backend, result) = match open(fps) {
            Ok(b) => (Some(b), Ok(())),
            Err(e) => {
                let why = format!("the cameras could not be opened at {fps} fps: {e}");
                tracing::error!("{why}; opening them again at {running} fps");
                match open(running) {
                    Ok(b) => (Some(b), Err(ApplyError::Backend(why))),
                    Err(e2) => {
                        let why =
                            format!("{why}; nor again at {running} fps: {e2}; restart the node");
                        lock(&self.inner).problem = Some(why.clone());
                        (None, Err(ApplyError::Backend(why)))
                    }
                }
            }
        };
        if let Some(b) = &backend {
            *self.cameras.write().unwrap_or_else(|e| e.into_inner()) = b.cameras().to_vec();
            *self.phase.write().unwrap_or_else(|e| e.into_inner()) = b.phase();
            if let Some(s) = &self.settings {
                s.reopened(b.controls());
            }
        }
        *slot = backend;
        result
    }

    pub(crate) fn stop_take(&self, req: &StopRequest) -> Result<CommandReply, CommandError> {
        let Some(t) = self.active() else {
            return Err(CommandError::Conflict(
                "no take is armed or recording".into(),
            ));
        };
        if req.stop_at_ns <= t.start_at {
            // A STOP for an instant at or before the take's start: the take ends before it
            // began. Armed only, nothing was kept: cancel it (its directory goes, as an
            // aborted arm's does). Already keeping frames (a STOP sent with a clock behind
            // ours): stop now, keeping every frame.
            let recording = t.is_recording();
            let reason = if recording {
                StopReason::Requested
            } else {
                StopReason::Aborted
            };
            tracing::info!(take = %t.take, stop_at_ns = req.stop_at_ns, start_at_ns = t.start_at, recording, "STOP before the start instant: take cancelled");
            t.stop_now(reason);
            return Ok(self.reply(&req.command_id, &Some(t)));
        }
        t.set_stop_at(req.stop_at_ns);
        tracing::info!(take = %t.take, stop_at_ns = req.stop_at_ns, "stop scheduled");
        Ok(self.reply(&req.command_id, &Some(t)))
    }

    pub(crate) fn mark_take(&self, req: &MarkRequest) -> Result<CommandReply, CommandError> {
        let Some(t) = self.active() else {
            return Err(CommandError::Conflict(
                "no take is armed or recording; MARK needs one".into(),
            ));
        };
        let frames = t.mark(req.at_ns, req.note.clone());
        let mut reply = self.reply(&req.command_id, &Some(t));
        reply.marker_frames = frames;
        Ok(reply)
    }

    pub(crate) fn abort_take(&self, req: &AbortRequest) -> Result<CommandReply, CommandError> {
        let Some(t) = self.active() else {
            return Ok(self.reply(&req.command_id, &None));
        };
        tracing::info!(take = %t.take, recording = t.is_recording(), "take aborted");
        t.stop_now(StopReason::Aborted);
        let reply = self.reply(&req.command_id, &Some(t));
        Ok(reply)
    }

    /// `DELETE /v1/takes/{take}`: never the take being armed, recorded or finished right
    /// now; the rest is [`deletion::delete`]. Runs under the command lock so a START
    /// cannot race it.
    pub(crate) fn delete_take(
        &self,
        take: &TakeName,
        verified: &[camrig_protocol::manifest::FileEntry],
    ) -> Result<camrig_protocol::api::DeleteTakeReply, CommandError> {
        let _one_at_a_time = lock(&self.command_lock);
        if let Some(t) = self.active().filter(|t| &t.take == take) {
            let state = if t.stop_at().is_some() {
                "stopping"
            } else {
                t.armed_or_recording()
            };
            return Err(CommandError::Conflict(format!(
                "take {take} is {state} on this node; it can be deleted once it is complete and downloaded"
            )));
        }
        deletion::delete(&self.recordings_dir(), take, verified).map_err(|e| match e {
            deletion::DeleteError::Unknown(_) => CommandError::NotFound(e.to_string()),
            deletion::DeleteError::Refused(m) => CommandError::Conflict(m),
            e @ deletion::DeleteError::Io { .. } => CommandError::internal(e),
        })
    }

    /// Stops whatever records now and waits (bounded) until its files are final.
    pub(super) async fn stop_everything(&self, reason: StopReason) {
        if let Some(t) = self.active() {
            t.stop_now(reason);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.active().is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.active().is_some() {
            tracing::error!("take did not finish within 20 s of shutdown");
        }
    }

    /// Once a second: fps, disk guard, STATUS=, and the watchdog when there is no camera.
    pub(super) async fn status_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Vec<FrameCount> = self.stats.iter().map(CameraStats::frame_count).collect();
        loop {
            ticker.tick().await;
            for (s, last) in self.stats.iter().zip(&mut last) {
                s.measure_fps(last);
            }
            if let Some(t) = self.active() {
                if t.is_recording() {
                    if let Ok(free) = disk_space::free_bytes(&self.config.data_dir) {
                        let floor = self.config.min_free_bytes();
                        if free < floor {
                            tracing::warn!(
                                free,
                                floor,
                                "free space below the floor: stopping the take"
                            );
                            t.stop_with_problem(
                                StopReason::DiskFull,
                                take_recorder::disk_full_problem(free, floor),
                            );
                        }
                    }
                }
            }
            if self.camera_count() == 0 {
                // Nothing produces frames, but the service is alive and says why in STATUS;
                // restarting it in a loop would not find a camera either.
                self.progress.tick();
            }
            let status = self.status();
            camrig_systemd::notify::status(&status_line::render(&status));
        }
    }

    /// Standalone recorder: every camera from now until shutdown, in a new dated directory.
    pub(super) fn start_standalone(self: &Arc<Self>) -> std::io::Result<()> {
        let node = self;
        let now: UnixNanos = now_unix_ns();
        let stamp = naming::stamp(now);
        let recordings = node.recordings_dir();
        // A restart within the same second must still get a new directory, never reuse one.
        let mut dir = recordings.join(&stamp);
        let mut n = 1;
        while let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
            n += 1;
            dir = recordings.join(format!("{stamp}_{n}"));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let take = TakeName::parse(&name).map_err(std::io::Error::other)?;
        let codec = node.config.recording.standalone_codec;
        let spec = TakeSpec {
            take,
            dir: dir.clone(),
            node: node.label.clone(),
            start_at: now,
            codec,
            segment_seconds: 0,
            cameras: node.cameras(),
            encoder: node.encoder_settings(codec),
            new_encoder: node.new_encoder,
            min_free_bytes: node.config.min_free_bytes(),
            data_dir: node.config.data_dir.clone(),
            layout: Layout::Standalone,
            counters: node.stats.iter().map(|s| s.counters.clone()).collect(),
            settings: node.camera_settings_now(),
            phase: node.phase_monitors(),
        };
        node.launch(spec)?;
        tracing::info!(dir = %dir.display(), "standalone recording started");
        Ok(())
    }
}

/// The node's `<node>` label: the configured name, else its IP address.
fn node_label(config: &NodeConfig) -> String {
    let ip = if config.listen.ip().is_unspecified() {
        first_lan_ipv4().unwrap_or(config.listen.ip())
    } else {
        config.listen.ip()
    };
    naming::node_label(Some(config.name.as_str()), ip)
}

fn first_lan_ipv4() -> Option<IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = sin.ip();
            if !ip.is_loopback() {
                return Some(IpAddr::V4(ip));
            }
        }
    }
    None
}
