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
use camrig_protocol::health::NodeHealth;
use camrig_protocol::manifest::StopReason;
use camrig_protocol::naming::{self, TakeFiles};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::{now_unix_ns, UnixNanos};
use camrig_systemd::watchdog::Progress;

use super::health::HealthProbe;
use super::metrics::NodeMetrics;
use super::status::{CameraStats, FrameCount};
use super::{clock_health, disk_space, status_line};
use crate::camera::{CameraInfo, Frame};
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

#[derive(Default)]
struct Inner {
    replies: HashMap<String, Result<CommandReply, CommandError>>,
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
    pub(crate) cameras: Vec<CameraInfo>,
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
    new_encoder: NewEncoder,
    pub(crate) metrics: NodeMetrics,
    health: HealthProbe,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// The node for `config` with the cameras its backend opened (none, and why, when it
    /// could not), the takes recovery finalised at start, and how its takes get encoders.
    pub(super) fn new(
        config: NodeConfig,
        token: Option<String>,
        cameras: Vec<CameraInfo>,
        camera_problem: Option<String>,
        recovered: Vec<TakeName>,
        new_encoder: NewEncoder,
    ) -> Arc<Node> {
        let metrics = NodeMetrics::new(cameras.len());
        Arc::new(Node {
            label: node_label(&config),
            token,
            stats: (0..cameras.len())
                .map(|i| CameraStats::new(metrics.camera(i)))
                .collect(),
            metrics,
            health: HealthProbe::new(config.health.sysfs_root.clone()),
            cameras,
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
        let n = self.cameras.len();
        let cameras = self
            .cameras
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let l = live.get(index).cloned().unwrap_or_default();
                self.stats[index].camera_status(index, n, c, l)
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
        let cameras = self.cameras.len().max(1) as f64;
        let c = &self.config.camera;
        let per_camera = match self.config.recording.codec {
            naming::Codec::H264 => {
                f64::from(self.config.recording.h264_bitrate_kbps) * 1000.0 / 8.0
            }
            naming::Codec::Mjpeg => f64::from(c.width) * f64::from(c.height) * c.fps * 2.0 / 8.0,
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

    /// Runs a command once per command_id; repeats get the first answer again.
    pub(crate) fn command(
        &self,
        command_id: &str,
        run: impl FnOnce() -> Result<CommandReply, CommandError>,
    ) -> Result<CommandReply, CommandError> {
        let _one_at_a_time = lock(&self.command_lock);
        if let Some(answer) = lock(&self.inner).replies.get(command_id) {
            return answer.clone();
        }
        let answer = run();
        let mut inner = lock(&self.inner);
        inner.replies.insert(command_id.to_owned(), answer.clone());
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
            let state = if t.is_recording() {
                "recording"
            } else {
                "armed"
            };
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
            cameras: self.cameras.clone(),
            encoder: self.encoder_settings(self.config.recording.codec),
            new_encoder: self.new_encoder,
            min_free_bytes: floor,
            data_dir: self.config.data_dir.clone(),
            layout: Layout::Take(TakeFiles::new(&req.take, &self.label, req.start_at_ns)),
            counters: self.stats.iter().map(|s| s.counters.clone()).collect(),
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

    fn encoder_settings(&self, codec: naming::Codec) -> EncoderSettings {
        EncoderSettings {
            codec,
            mjpeg_quality: self.config.recording.mjpeg_quality,
            h264_bitrate_kbps: self.config.recording.h264_bitrate_kbps,
            fps: self.config.camera.fps,
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

    pub(crate) fn stop_take(&self, req: &StopRequest) -> Result<CommandReply, CommandError> {
        let Some(t) = self.active() else {
            return Err(CommandError::Conflict(
                "no take is armed or recording".into(),
            ));
        };
        if req.stop_at_ns < t.start_at {
            return Err(CommandError::BadRequest(format!(
                "stop_at_ns {} is before the take's start_at_ns {}",
                req.stop_at_ns, t.start_at
            )));
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
            } else if t.is_recording() {
                "recording"
            } else {
                "armed"
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
            if self.cameras.is_empty() {
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
            cameras: node.cameras.clone(),
            encoder: node.encoder_settings(codec),
            new_encoder: node.new_encoder,
            min_free_bytes: node.config.min_free_bytes(),
            data_dir: node.config.data_dir.clone(),
            layout: Layout::Standalone,
            counters: node.stats.iter().map(|s| s.counters.clone()).collect(),
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
