//! Real cameras through libcamera (cargo feature `libcamera`; the node's .deb and images are
//! built with it, a plain workspace build is not, so PCs need no libcamera headers).
//!
//! One thread owns the camera manager and every camera on it (libcamera objects stay on the
//! thread that made them): it lists the cameras, picks them per `[camera]` (index, libcamera
//! id or sensor model), configures size, pixel format and frame rate (FrameDurationLimits),
//! allocates and maps the buffers, and reports the opened cameras (with the controls each
//! lists, as [`CameraLimits`]) back before anything streams. Camera settings arrive as
//! commands ([`crate::camera::libcamera_controls`] maps them to controls by name) and ride on the
//! next request queued; each frame carries the exposure, gain, colour gains and lens
//! position its request's metadata reports. Started, it turns each completed request into a
//! [`Frame`]: libcamera's frame sequence (widened to 64 bits; a gap is a drop), the sensor
//! timestamp mapped to wall clock (FrameWallClock where libcamera reports it, minding its unit
//! change in 0.5.2; otherwise a paired CLOCK_MONOTONIC/CLOCK_REALTIME reading taken as the
//! request completes), and the camera's own buffer *lent* to the frame, no copy
//! ([`FramePixels::Camera`]): the request goes back to this thread, which requeues it, when
//! the last clone of the frame is dropped ([`crate::camera::buffer_lease`]). An encoder imports the
//! buffer's dma-buf or reads it under DMA-BUF sync ([`Frame::i420`]).
//!
//! A frame's timestamp is its start of exposure (SensorTimestamp or FrameWallClock, both the
//! start of readout, minus the frame's ExposureTime), and each camera's phase lock
//! ([`crate::camera::phase_lock`]) is fed it on this thread; the frame duration it asks for is set as
//! `FrameDurationLimits` (min = max, µs) on every request requeued from then on. A camera
//! without that control (vimc) is `unavailable`, with the reason, and records unlocked.
//!
//! At most [`lendable`] buffers are out at once, so the camera always has buffers to fill;
//! a frame that completes while that many are out is dropped at once (requeued, and counted
//! by the writer as a sequence gap), exactly as a full frame queue would drop it. Stopping
//! waits for the lent buffers to come back before anything of libcamera is freed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use libcamera::camera::{ActiveCamera, CameraConfigurationStatus};
use libcamera::camera_manager::CameraManager;
use libcamera::control::{ControlEntry, ControlList};
use libcamera::control_value::ControlValue;
use libcamera::framebuffer::AsFrameBuffer;
use libcamera::framebuffer_allocator::{FrameBuffer, FrameBufferAllocator};
use libcamera::framebuffer_map::MemoryMappedFrameBuffer;
use libcamera::geometry::Size;
use libcamera::pixel_format::PixelFormat;
use libcamera::request::{Request, RequestStatus, ReuseFlag};
use libcamera::stream::{Stream, StreamRole};
use libcamera::{controls, properties};

use camrig_protocol::camera_settings::{AppliedControls, CameraLimits, CameraSettings};
use camrig_protocol::UnixNanos;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::camera::buffer_lease::{lendable, Lease, Lender};
use crate::camera::libcamera_controls::{
    self as mapping, ControlSetting, ListedControl, MetadataValue,
};
use crate::camera::libcamera_support::{
    self as support, ClockPair, Layout, ListedCamera, SequenceWidener,
};
use crate::camera::phase_lock::{LockSettings, PhaseLock, PhaseMonitor};
use crate::camera::{
    CameraBuffer, CameraControls, CameraInfo, CameraMemory, CaptureBackend, CaptureError,
    DmaBufPlane, Frame, FramePixels, FrameSink,
};
use crate::config::{CameraConfig, PhaseConfig};
use camrig_protocol::grid::FrameGrid;

type Mapped = MemoryMappedFrameBuffer<FrameBuffer>;

/// Buffers per camera. Six, so that with [`lendable`] four can wait in the frame path (the
/// writer's queue, the encoder, the preview's latest frame) while two stay with the camera.
const BUFFERS: u32 = 6;
/// How long stopping waits for lent buffers to come back before it leaks the camera instead
/// of freeing it under them (a writer finishing its last frame takes well under this).
const RETURN_WAIT: Duration = Duration::from_secs(5);

/// What reaches the camera thread: a request libcamera completed, or one the frame path gave
/// back.
enum Event {
    Completed(usize, Request),
    Returned(usize, Request),
}

impl Event {
    fn into_request(self) -> Request {
        match self {
            Event::Completed(_, r) | Event::Returned(_, r) => r,
        }
    }
}

/// A lent request and where its mapped planes are.
struct LentRequest {
    planes: Vec<(*const u8, usize)>,
    _lease: Lease<Request>,
}

// SAFETY: the pointers point into the buffer's mmap, which the request owns (unmapped only
// when the request is destroyed) and the lease keeps alive while this exists; they are only
// read, from any thread, and mmap'ed memory is not tied to a thread. A request still lent
// when its camera stops is leaked, never destroyed, so the mapping outlives every reader.
#[allow(unsafe_code)]
unsafe impl Send for LentRequest {}
#[allow(unsafe_code)]
unsafe impl Sync for LentRequest {}

impl CameraMemory for LentRequest {
    fn planes(&self) -> Vec<&[u8]> {
        self.planes
            .iter()
            // SAFETY: see the Send/Sync note: live, read-only mapping of `len` bytes.
            .map(|&(ptr, len)| {
                #[allow(unsafe_code)]
                unsafe {
                    std::slice::from_raw_parts(ptr, len)
                }
            })
            .collect()
    }
}

enum Command {
    Start(FrameSink),
    Stop,
    /// Controls for a camera's next request.
    Apply(usize, Vec<ControlSetting>),
}

/// What the camera thread reports once the cameras are open.
struct OpenedCameras {
    infos: Vec<CameraInfo>,
    listed: Vec<Vec<ListedControl>>,
    monitors: Vec<Arc<PhaseMonitor>>,
}

pub struct LibcameraBackend {
    cameras: Vec<CameraInfo>,
    controls: Arc<LibcameraControls>,
    phase: Vec<Arc<PhaseMonitor>>,
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Opens the configured cameras, or says why not (no camera, too few, no usable format...).
pub fn open(config: &CameraConfig, phase: &PhaseConfig) -> Result<LibcameraBackend, CaptureError> {
    wait_for_udev_coldplug();
    let (opened_tx, opened_rx) = mpsc::channel();
    let (commands, command_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_config = config.clone();
    let thread_phase = phase.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("libcamera".into())
        .spawn(move || {
            camera_thread(
                thread_config,
                thread_phase,
                opened_tx,
                command_rx,
                thread_stop,
            )
        })
        .map_err(CaptureError::Thread)?;
    match opened_rx.recv() {
        Ok(Ok(opened)) => Ok(LibcameraBackend {
            controls: Arc::new(LibcameraControls {
                limits: opened.listed.iter().map(|l| mapping::limits(l)).collect(),
                listed: opened.listed,
                fps: config.fps,
                commands: Mutex::new(commands.clone()),
            }),
            cameras: opened.infos,
            phase: opened.monitors,
            commands,
            stop,
            thread: Some(thread),
        }),
        Ok(Err(problem)) => {
            let _ = thread.join();
            Err(CaptureError::Camera(problem))
        }
        Err(_) => {
            let _ = thread.join();
            Err(CaptureError::Camera(
                "the libcamera thread ended while opening".into(),
            ))
        }
    }
}

impl CaptureBackend for LibcameraBackend {
    fn cameras(&self) -> &[CameraInfo] {
        &self.cameras
    }

    fn phase(&self) -> Vec<Arc<PhaseMonitor>> {
        self.phase.clone()
    }

    fn start(&mut self, sink: FrameSink) -> Result<(), CaptureError> {
        self.commands
            .send(Command::Start(sink))
            .map_err(|_| CaptureError::Camera("the libcamera thread has ended".into()))
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn controls(&self) -> Arc<dyn CameraControls> {
        self.controls.clone()
    }
}

/// The opened cameras' controls as listed at open, and the way to the camera thread.
struct LibcameraControls {
    limits: Vec<CameraLimits>,
    listed: Vec<Vec<ListedControl>>,
    fps: f64,
    commands: Mutex<mpsc::Sender<Command>>,
}

impl CameraControls for LibcameraControls {
    fn limits(&self, camera: usize) -> CameraLimits {
        self.limits.get(camera).cloned().unwrap_or_default()
    }

    fn apply(&self, camera: usize, settings: &CameraSettings) -> Result<(), CaptureError> {
        let listed = self
            .listed
            .get(camera)
            .ok_or_else(|| CaptureError::Camera(format!("no camera {camera}")))?;
        let controls = mapping::controls_for(settings, listed, self.fps);
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Command::Apply(camera, controls))
            .map_err(|_| CaptureError::Camera("the libcamera thread has ended".into()))
    }
}

impl Drop for LibcameraBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a node at boot waits for udev before looking for cameras anyway.
const UDEV_SETTLE_TIMEOUT_SECS: u32 = 60;

/// Waits until udev has handled every queued device event, when udev runs here.
///
/// At boot the node starts once udev's coldplug has been *triggered*, not finished; a camera
/// exists for libcamera only after that coldplug loaded the sensor and receiver drivers and
/// gave `/dev/media*` and `/dev/video*` the video group (libcamera lists only the devices udev
/// has initialised). Without this wait a Pi can boot into "no camera" with a camera attached.
/// Later starts (udev idle) return at once. Waiting works without privileges (`udevadm settle`
/// watches udev's queue); a timeout or a missing udevadm is logged and the cameras are looked
/// for anyway, so the node still says plainly what it found.
fn wait_for_udev_coldplug() {
    if !std::path::Path::new("/run/udev/control").exists() {
        return;
    }
    let began = std::time::Instant::now();
    let settled = std::process::Command::new("udevadm")
        .arg("settle")
        .arg(format!("--timeout={UDEV_SETTLE_TIMEOUT_SECS}"))
        .status();
    let waited_ms = began.elapsed().as_millis() as u64;
    match settled {
        Ok(s) if s.success() => tracing::info!(waited_ms, "udev has set up every device"),
        Ok(s) => tracing::warn!(
            waited_ms,
            status = %s,
            "udev did not settle; looking for cameras anyway"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot run udevadm settle; looking for cameras anyway"
        ),
    }
}

/// One opened camera's streaming state.
struct Opened<'d> {
    cam: ActiveCamera<'d>,
    stream: Stream,
    requests: Vec<Request>,
    layout: Layout,
    stride: usize,
    width: u32,
    height: u32,
    controls: libcamera::utils::UniquePtr<ControlList>,
    /// Control ids by libcamera name, for the controls this camera lists.
    ids: HashMap<String, u32>,
    /// Settings waiting for the next request queued.
    pending: Option<Vec<ControlSetting>>,
    sequence: SequenceWidener,
    wall_clock_id: Option<u32>,
    /// The camera's phase lock, fed every frame's start of exposure.
    phase: PhaseLock,
    /// The frame duration the loop last asked for, set on every request requeued from then on.
    frame_duration_us: Option<[i64; 2]>,
    model: String,
    buffers: usize,
    /// Said once in the log when a frame is dropped for want of a lendable buffer.
    told_behind: bool,
    /// The controls the camera lists (for limits and the settings mapping).
    listed: Vec<ListedControl>,
}

fn camera_thread(
    config: CameraConfig,
    phase: PhaseConfig,
    opened_tx: mpsc::Sender<Result<OpenedCameras, String>>,
    commands: mpsc::Receiver<Command>,
    stop: Arc<AtomicBool>,
) {
    let mgr = match CameraManager::new() {
        Ok(m) => m,
        Err(e) => {
            let _ = opened_tx.send(Err(format!("cannot start libcamera's camera manager: {e}")));
            return;
        }
    };
    let version = support::parse_version(mgr.version()).unwrap_or((0, 0, 0));
    let list = mgr.cameras();
    let listed = list_cameras(&list);
    tracing::info!(
        libcamera = mgr.version(),
        cameras = %support::describe(&listed),
        "libcamera cameras"
    );
    let picked = match support::select(&listed, &config.select, config.count) {
        Ok(p) => p,
        Err(e) => {
            // The status names the libcamera the node runs with: on a card whose camera is
            // not found, the first thing to know (image/README.md, "First boot on a Pi").
            let _ = opened_tx.send(Err(format!("{e} (libcamera {})", mgr.version())));
            return;
        }
    };

    let (done_tx, done_rx) = mpsc::channel::<Event>();
    let mut opened: Vec<Opened<'_>> = Vec::new();
    let mut allocators = Vec::new();
    for (n, &i) in picked.iter().enumerate() {
        let Some(cam) = list.get(i) else {
            let _ = opened_tx.send(Err(format!("camera {i} disappeared")));
            return;
        };
        match open_one(&cam, &config, &phase, &listed[i], n, done_tx.clone()) {
            Ok((o, alloc)) => {
                opened.push(o);
                allocators.push(alloc);
            }
            Err(e) => {
                let _ = opened_tx.send(Err(format!("camera {} ({}): {e}", i, listed[i].model)));
                return;
            }
        }
    }
    let infos = opened
        .iter()
        .map(|o| CameraInfo {
            model: o.model.clone(),
            width: o.width,
            height: o.height,
            fps: config.fps,
        })
        .collect();
    let listed = opened.iter().map(|o| o.listed.clone()).collect();
    let monitors = opened.iter().map(|o| o.phase.monitor()).collect();
    let _ = opened_tx.send(Ok(OpenedCameras {
        infos,
        listed,
        monitors,
    }));
    let lenders: Vec<Lender<Request>> = opened
        .iter()
        .enumerate()
        .map(|(n, o)| {
            let back = done_tx.clone();
            Lender::new(lendable(o.buffers), move |req| {
                back.send(Event::Returned(n, req))
                    .map_err(|e| e.0.into_request())
            })
        })
        .collect();
    drop(done_tx);

    // Settings given before streaming (the config's) go with the start controls.
    let sink = loop {
        match commands.recv() {
            Ok(Command::Start(sink)) => break Some(sink),
            Ok(Command::Apply(n, settings)) => {
                if let Some(o) = opened.get_mut(n) {
                    o.set_start_controls(&settings);
                }
            }
            Ok(Command::Stop) | Err(_) => break None,
        }
    };
    if let Some(sink) = sink {
        stream(
            &mut opened,
            &lenders,
            &done_rx,
            &sink,
            &commands,
            &stop,
            version,
        );
    }
    for o in opened.iter_mut() {
        let _ = o.cam.stop();
    }
    // Every lent buffer must be back before a request, camera or allocator is freed.
    let still_out: usize = lenders.iter().map(|l| l.close(RETURN_WAIT)).sum();
    // Drop order: requests (the stop's cancelled ones and the returned ones wait in the
    // channel) and cameras before the allocators and the manager; a request outliving its
    // camera crashes the process.
    drop(done_rx);
    if still_out > 0 {
        // Something still reads a lent buffer: freeing libcamera under it would be a
        // use-after-free. Leak it all instead (the process is stopping the camera for good).
        tracing::error!(
            buffers = still_out,
            "lent camera buffers not given back in time: libcamera's objects are leaked, not freed"
        );
        std::mem::forget(opened);
        std::mem::forget(allocators);
        std::mem::forget(list);
        std::mem::forget(mgr);
        return;
    }
    drop(opened);
    drop(allocators);
    drop(list);
    drop(mgr);
}

/// Delivers frames until told to stop: completed requests are lent to the sink, given-back
/// ones requeued.
fn stream(
    opened: &mut [Opened<'_>],
    lenders: &[Lender<Request>],
    events: &mpsc::Receiver<Event>,
    sink: &FrameSink,
    commands: &mpsc::Receiver<Command>,
    stop: &AtomicBool,
    version: (u32, u32, u32),
) {
    for o in opened.iter_mut() {
        if let Err(e) = o.cam.start(Some(&o.controls)) {
            tracing::error!(camera = %o.model, error = %e, "cannot start the camera");
            return;
        }
        for req in o.requests.drain(..) {
            if let Err((_, e)) = o.cam.queue_request(req) {
                tracing::error!(camera = %o.model, error = %e, "cannot queue a request");
            }
        }
    }
    tracing::info!(
        cameras = opened.len(),
        buffers = BUFFERS,
        lendable = lenders.first().map(Lender::limit),
        "libcamera streaming (camera buffers lent to the encoder, no copy)"
    );
    while !stop.load(Ordering::SeqCst) {
        match commands.try_recv() {
            Ok(Command::Stop) => break,
            Ok(Command::Apply(n, settings)) => {
                if let Some(o) = opened.get_mut(n) {
                    o.pending = Some(settings);
                }
            }
            _ => {}
        }
        let (n, req) = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Completed(n, req)) => {
                // Read the clocks as close to completion as possible, for the fallback mapping.
                let clocks = ClockPair::now();
                if req.status() != RequestStatus::Complete {
                    (n, req)
                } else {
                    match opened[n].lend(n, req, clocks, version, &lenders[n]) {
                        Ok(frame) => {
                            // The request comes back as `Event::Returned` when the frame (and
                            // every clone of it) is gone.
                            sink(frame);
                            continue;
                        }
                        Err(req) => (n, req),
                    }
                }
            }
            Ok(Event::Returned(n, req)) => (n, req),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        opened[n].requeue(req);
    }
}

/// Every camera libcamera lists, with its model.
fn list_cameras(list: &libcamera::camera_manager::CameraList<'_>) -> Vec<ListedCamera> {
    (0..list.len())
        .filter_map(|i| list.get(i))
        .map(|c| ListedCamera {
            id: c.id().to_string(),
            model: c
                .properties()
                .get::<properties::Model>()
                .map(|m| m.0)
                .unwrap_or_else(|_| "unknown".into()),
        })
        .collect()
}

fn open_one<'d>(
    cam: &libcamera::camera::Camera<'d>,
    config: &CameraConfig,
    phase: &PhaseConfig,
    listed: &ListedCamera,
    n: usize,
    done: mpsc::Sender<Event>,
) -> Result<(Opened<'d>, FrameBufferAllocator), String> {
    let mut cam = cam
        .acquire()
        .map_err(|e| format!("cannot acquire (in use by another program?): {e}"))?;
    let mut cfgs = cam
        .generate_configuration(&[StreamRole::VideoRecording])
        .ok_or("no configuration for video recording")?;
    let (format, layout) = {
        let cfg = cfgs.get(0).ok_or("no stream configuration")?;
        let offered: Vec<PixelFormat> = cfg.formats().pixel_formats().into_iter().collect();
        let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
        let wanted: Vec<&str> = if config.pixel_format.is_empty() {
            Layout::PREFERRED.to_vec()
        } else {
            vec![config.pixel_format.as_str()]
        };
        let chosen = wanted
            .iter()
            .find(|w| names.iter().any(|n| n == *w))
            .ok_or_else(|| {
                format!(
                    "offers pixel formats [{}], none of which camrig reads (wanted: {})",
                    names.join(", "),
                    wanted.join(", ")
                )
            })?;
        let layout = Layout::from_name(chosen).ok_or_else(|| {
            format!("camera.pixel_format \"{chosen}\" is not one camrig converts (YUV420, NV12, YUYV, RGB888, BGR888)")
        })?;
        let format = offered[names.iter().position(|n| n == chosen).expect("found above")];
        (format, layout)
    };
    {
        let mut cfg = cfgs.get_mut(0).ok_or("no stream configuration")?;
        cfg.set_pixel_format(format);
        cfg.set_size(Size::new(config.width, config.height));
        cfg.set_buffer_count(BUFFERS);
    }
    match cfgs.validate() {
        CameraConfigurationStatus::Valid => {}
        CameraConfigurationStatus::Adjusted => {
            tracing::warn!(camera = %listed.model, config = ?cfgs, "libcamera adjusted the configuration");
        }
        CameraConfigurationStatus::Invalid => {
            return Err(format!(
                "refuses {}x{} {format}",
                config.width, config.height
            ))
        }
    }
    let (size, stride, got_format) = {
        let cfg = cfgs.get(0).ok_or("no stream configuration")?;
        (
            cfg.get_size(),
            cfg.get_stride() as usize,
            cfg.get_pixel_format(),
        )
    };
    if got_format != format {
        return Err(format!("changed pixel format {format} to {got_format}"));
    }
    if size.width % 2 != 0 || size.height % 2 != 0 {
        return Err(format!("gave an odd size {}x{}", size.width, size.height));
    }
    cam.configure(&mut cfgs)
        .map_err(|e| format!("cannot configure: {e}"))?;
    let stream = cfgs
        .get(0)
        .and_then(|c| c.stream())
        .ok_or("configured stream missing")?;

    let mut alloc = FrameBufferAllocator::new(&cam);
    let buffers_list = alloc
        .alloc(&stream)
        .map_err(|e| format!("cannot allocate buffers: {e}"))?;
    let mut requests = Vec::new();
    let buffers = buffers_list.len();
    for (i, buf) in buffers_list.into_iter().enumerate() {
        let mapped =
            MemoryMappedFrameBuffer::new(buf).map_err(|e| format!("cannot map a buffer: {e:?}"))?;
        let mut req = cam
            .create_request(Some(i as u64))
            .ok_or("cannot create a request")?;
        req.add_buffer(&stream, mapped)
            .map_err(|e| format!("cannot attach a buffer: {e}"))?;
        requests.push(req);
    }
    cam.on_request_completed(move |req| {
        let _ = done.send(Event::Completed(n, req));
    });

    // Start controls: the frame rate. Only what the camera lists is sent; the rest is said
    // in the log (vimc, for one, has no frame duration control). Camera settings (the
    // config's, then the API's) come as commands, mapped by control name.
    let available = cam.controls();
    let mut controls = ControlList::new();
    let period_us = (1e6 / config.fps).round() as i64;
    let label = format!("cam{} {}", n + 1, listed.model);
    let grid = FrameGrid::new(config.fps).map_err(|e| e.to_string())?;
    let settings = LockSettings {
        tolerance_ns: i64::from(phase.tolerance_us) * 1000,
        lock_frames: phase.lock_frames,
    };
    let phase_lock = if let Ok(info) = available.find(controls::FrameDurationLimits::ID) {
        let _ = controls.set(controls::FrameDurationLimits([period_us, period_us]));
        let first = |v: ControlValue| match v {
            ControlValue::Int64(v) => v.first().copied(),
            _ => None,
        };
        let control =
            support::frame_control(first(info.min()), first(info.max()), period_us, BUFFERS);
        match control {
            _ if !phase.lock => PhaseLock::unavailable(
                label,
                grid,
                settings,
                "phase lock is switched off (phase.lock = false): the camera free-runs".into(),
            ),
            Some(control) => PhaseLock::new(label, grid, control, settings),
            None => PhaseLock::unavailable(
                label,
                grid,
                settings,
                "the camera's FrameDurationLimits control gives no usable range".into(),
            ),
        }
    } else {
        PhaseLock::unavailable(
            label,
            grid,
            settings,
            "the camera has no FrameDurationLimits control: its frame duration cannot be set (vimc has none)".into(),
        )
    };
    let (listed_controls, ids) = list_controls(available);
    tracing::info!(
        camera = %listed.model,
        controls = %listed_controls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","),
        "camera controls"
    );
    tracing::info!(
        camera = %listed.model,
        id = %listed.id,
        format = %format,
        width = size.width,
        height = size.height,
        stride,
        fps = config.fps,
        "camera configured"
    );
    Ok((
        Opened {
            cam,
            stream,
            requests,
            layout,
            stride,
            width: size.width,
            height: size.height,
            controls,
            ids,
            pending: None,
            listed: listed_controls,
            sequence: SequenceWidener::default(),
            wall_clock_id: None,
            phase: phase_lock,
            frame_duration_us: None,
            model: listed.model.clone(),
            buffers,
            told_behind: false,
        },
        alloc,
    ))
}

impl Opened<'_> {
    /// The frame's sequence (widened) and wall-clock timestamp from the request's metadata.
    fn stamp(
        &mut self,
        req: &Request,
        buf: &Mapped,
        clocks: ClockPair,
        version: (u32, u32, u32),
    ) -> Option<(u64, UnixNanos)> {
        let meta = buf.metadata()?;
        let sequence = self.sequence.widen(meta.sequence());
        let metadata = req.metadata();
        let sensor_ns = metadata
            .get::<controls::SensorTimestamp>()
            .map(|t| t.0)
            .unwrap_or(meta.timestamp() as i64);
        if self.wall_clock_id.is_none() {
            // FrameWallClock (libcamera >= 0.5) is looked up by name: the 0.4 API has no type
            // for it, and its numeric id differs between versions.
            self.wall_clock_id = metadata
                .id_map()
                .and_then(|m| m.iter())
                .and_then(|mut it| it.find(|(_, c)| c.name() == "FrameWallClock"))
                .map(|(id, _)| id)
                .or(Some(0));
        }
        let readout_ns = match self.wall_clock_id {
            Some(id) if id != 0 && metadata.contains(id) => match metadata_value(metadata, id) {
                Some(v) => support::frame_wall_clock_ns(v, version),
                None => clocks.to_wall(sensor_ns),
            },
            _ => clocks.to_wall(sensor_ns),
        };
        let exposure_us = metadata.get::<controls::ExposureTime>().ok().map(|e| e.0);
        let timestamp_ns = support::exposure_start_ns(readout_ns, exposure_us);
        // The loop sees every frame the camera made, kept or not.
        if let Some(request) = self.phase.on_frame(sequence, timestamp_ns) {
            self.frame_duration_us = Some(support::frame_duration_limits_us(request.duration_ns));
        }
        Some((sequence, timestamp_ns))
    }

    /// The completed request's buffer lent to a frame as it is (no copy), or the request
    /// back when it has no picture or [`lendable`] buffers are already out (the frame is
    /// dropped; the writer counts the sequence gap).
    fn lend(
        &mut self,
        camera: usize,
        req: Request,
        clocks: ClockPair,
        version: (u32, u32, u32),
        lender: &Lender<Request>,
    ) -> Result<Frame, Request> {
        let applied = self.applied(&req);
        let (sequence, timestamp_ns, planes, data) = {
            let Some(buf) = req.buffer::<Mapped>(&self.stream) else {
                return Err(req);
            };
            let Some((sequence, timestamp_ns)) = self.stamp(&req, buf, clocks, version) else {
                return Err(req);
            };
            let list = buf.planes();
            let planes: Vec<DmaBufPlane> = (0..list.len())
                .filter_map(|i| list.get(i))
                .map(|p| DmaBufPlane {
                    fd: p.fd(),
                    offset: p.offset().unwrap_or(0) as u32,
                    length: p.len() as u32,
                })
                .collect();
            let data: Vec<(*const u8, usize)> =
                buf.data().iter().map(|d| (d.as_ptr(), d.len())).collect();
            (sequence, timestamp_ns, planes, data)
        };
        let lease = match lender.lend(req) {
            Ok(lease) => lease,
            Err(req) => {
                if !self.told_behind {
                    self.told_behind = true;
                    tracing::warn!(
                        camera = %self.model,
                        lent = lender.out(),
                        "encoder behind: every lendable camera buffer is waiting in the frame path, frames are dropped (and counted)"
                    );
                }
                return Err(req);
            }
        };
        Ok(Frame {
            camera,
            sequence,
            timestamp_ns,
            width: self.width,
            height: self.height,
            pixels: FramePixels::Camera(Arc::new(CameraBuffer {
                layout: self.layout,
                stride: self.stride as u32,
                planes,
                memory: Box::new(LentRequest {
                    planes: data,
                    _lease: lease,
                }),
            })),
            applied: Some(applied),
        })
    }

    /// Adds settings given before streaming to the controls the camera starts with.
    fn set_start_controls(&mut self, settings: &[ControlSetting]) {
        for s in settings {
            let (name, value) = control_value(s);
            match self.ids.get(name) {
                Some(&id) => {
                    let _ = self.controls.set_raw(id, value);
                }
                // The node checked the settings against this camera's list: not reached.
                None => {
                    tracing::error!(camera = %self.model, control = name, "camera does not list this control")
                }
            }
        }
    }

    /// Exposure, gain, colour gains and lens position from a completed request's metadata.
    fn applied(&self, req: &Request) -> AppliedControls {
        let names: HashMap<u32, &str> = [
            mapping::EXPOSURE_TIME,
            mapping::ANALOGUE_GAIN,
            mapping::COLOUR_GAINS,
            mapping::LENS_POSITION,
        ]
        .into_iter()
        .filter_map(|n| self.ids.get(n).map(|&id| (id, n)))
        .collect();
        mapping::applied_from_metadata(req.metadata().into_iter().filter_map(|(id, v)| {
            let name = *names.get(&id)?;
            let value = match v {
                ControlValue::Int32(v) => MetadataValue::Int(i64::from(*v.first()?)),
                ControlValue::Int64(v) => MetadataValue::Int(*v.first()?),
                ControlValue::Float(v) => MetadataValue::Floats(v.to_vec()),
                _ => return None,
            };
            Some((name, value))
        }))
    }

    /// Hands a request back to the camera for its next picture.
    fn requeue(&mut self, mut req: Request) {
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        if let Some(settings) = self.pending.take() {
            let list = req.controls_mut();
            for s in &settings {
                let (name, value) = control_value(s);
                if let Some(&id) = self.ids.get(name) {
                    let _ = list.set_raw(id, value);
                }
            }
        }
        if let Some(limits) = self.frame_duration_us {
            // min = max: the camera runs exactly this frame duration.
            let _ = req
                .controls_mut()
                .set(controls::FrameDurationLimits(limits));
        }
        if let Err((_, e)) = self.cam.queue_request(req) {
            tracing::warn!(camera = %self.model, error = %e, "cannot requeue a request");
        }
    }
}

fn metadata_value(list: &ControlList, id: u32) -> Option<i64> {
    list.into_iter()
        .find(|(k, _)| *k == id)
        .and_then(|(_, v)| match v {
            ControlValue::Int64(v) => v.first().copied(),
            _ => None,
        })
}

/// The controls a camera lists, by libcamera name (numbers as f64, enum values as i64), and
/// their ids.
fn list_controls(
    available: &libcamera::control::ControlInfoMap,
) -> (Vec<ListedControl>, HashMap<String, u32>) {
    let number = |v: ControlValue| -> Option<f64> {
        match v {
            ControlValue::Bool(v) => v.first().map(|b| f64::from(u8::from(*b))),
            ControlValue::Byte(v) => v.first().map(|x| f64::from(*x)),
            ControlValue::Int32(v) => v.first().map(|x| f64::from(*x)),
            ControlValue::Int64(v) => v.first().map(|x| *x as f64),
            ControlValue::Float(v) => v.first().map(|x| f64::from(*x)),
            _ => None,
        }
    };
    let mut listed = Vec::new();
    let mut ids = HashMap::new();
    for (id, info) in available {
        let Some(name) = controls::ControlId::from_id(id).map(|c| c.name()) else {
            continue;
        };
        let values = info
            .values()
            .into_iter()
            .filter_map(|v| match v {
                ControlValue::Int32(v) => v.first().map(|x| i64::from(*x)),
                _ => None,
            })
            .collect();
        listed.push(ListedControl {
            name: name.clone(),
            min: number(info.min()).unwrap_or(0.0),
            max: number(info.max()).unwrap_or(0.0),
            values,
        });
        ids.insert(name, id);
    }
    (listed, ids)
}

/// A control setting as libcamera's name and value.
fn control_value(s: &ControlSetting) -> (&'static str, ControlValue) {
    match s {
        ControlSetting::Bool(n, v) => (n, ControlValue::from(*v)),
        ControlSetting::Int32(n, v) => (n, ControlValue::from(*v)),
        ControlSetting::Float(n, v) => (n, ControlValue::from(*v)),
        ControlSetting::FloatPair(n, v) => (n, ControlValue::from(v.to_vec())),
        ControlSetting::Int64Pair(n, v) => (n, ControlValue::from(v.to_vec())),
    }
}
