//! Real cameras through libcamera (cargo feature `libcamera`; the node's .deb and images are
//! built with it, a plain workspace build is not, so PCs need no libcamera headers).
//!
//! One thread owns the camera manager and every camera on it (libcamera objects stay on the
//! thread that made them): it lists the cameras, picks them per `[camera]` (index, libcamera
//! id or sensor model), configures size, pixel format and frame rate (FrameDurationLimits),
//! optional manual exposure and gain, allocates and maps the buffers, and reports the opened
//! cameras back before anything streams. Started, it turns each completed request into a
//! [`Frame`]: libcamera's frame sequence (widened to 64 bits; a gap is a drop), the sensor
//! timestamp mapped to wall clock (FrameWallClock where libcamera reports it, minding its unit
//! change in 0.5.2; otherwise a paired CLOCK_MONOTONIC/CLOCK_REALTIME reading taken as the
//! request completes), and the pixels read under DMA-BUF sync straight from the mapped buffer
//! into the frame's I420 (the one copy the node needs, since the buffer goes straight back to
//! the camera), then requeues the request.
//!
//! [`borrow_frames`] is the no-copy way in: it lends each completed buffer (its dma-buf planes,
//! [`BorrowedFrame`]) to a callback on the calling thread and requeues the request only when the
//! callback has returned, so a V4L2 encoder importing the dma-buf
//! ([`crate::v4l2_encoder::V4l2Encoder::encode_dmabuf`]) has released it by then.

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

use camrig_protocol::UnixNanos;

use crate::capture::{CameraInfo, CaptureBackend, CaptureError, Frame, FrameSink};
use crate::config::CameraConfig;
use crate::dma_buf;
use crate::libcamera_support::{self as support, ClockPair, Layout, ListedCamera, SequenceWidener};
use crate::v4l2_encoder::{DmaBufPlane, RawLayout};

type Mapped = MemoryMappedFrameBuffer<FrameBuffer>;

enum Command {
    Start(FrameSink),
    Stop,
}

pub struct LibcameraBackend {
    cameras: Vec<CameraInfo>,
    commands: mpsc::Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Opens the configured cameras, or says why not (no camera, too few, no usable format...).
pub fn open(config: &CameraConfig) -> Result<LibcameraBackend, CaptureError> {
    let (opened_tx, opened_rx) = mpsc::channel();
    let (commands, command_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let config = config.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("libcamera".into())
        .spawn(move || camera_thread(config, opened_tx, command_rx, thread_stop))
        .map_err(CaptureError::Thread)?;
    match opened_rx.recv() {
        Ok(Ok(cameras)) => Ok(LibcameraBackend {
            cameras,
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
}

impl Drop for LibcameraBackend {
    fn drop(&mut self) {
        self.stop();
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
    sequence: SequenceWidener,
    wall_clock_id: Option<u32>,
    model: String,
}

fn camera_thread(
    config: CameraConfig,
    opened_tx: mpsc::Sender<Result<Vec<CameraInfo>, String>>,
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
            let _ = opened_tx.send(Err(e.to_string()));
            return;
        }
    };

    let (done_tx, done_rx) = mpsc::channel::<(usize, Request)>();
    let mut opened: Vec<Opened<'_>> = Vec::new();
    let mut allocators = Vec::new();
    for (n, &i) in picked.iter().enumerate() {
        let Some(cam) = list.get(i) else {
            let _ = opened_tx.send(Err(format!("camera {i} disappeared")));
            return;
        };
        match open_one(&cam, &config, &listed[i], n, done_tx.clone()) {
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
    let _ = opened_tx.send(Ok(infos));

    let sink = match commands.recv() {
        Ok(Command::Start(sink)) => sink,
        Ok(Command::Stop) | Err(_) => return,
    };
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
    tracing::info!(cameras = opened.len(), "libcamera streaming");

    let mut i420 = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if let Ok(Command::Stop) = commands.try_recv() {
            break;
        }
        let (n, mut req) = match done_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // Read the clocks as close to completion as possible, for the fallback mapping.
        let clocks = ClockPair::now();
        let o = &mut opened[n];
        if req.status() == RequestStatus::Complete {
            if let Some(frame) = o.frame(n, &req, clocks, version, &mut i420) {
                sink(frame);
            }
        }
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Err((_, e)) = o.cam.queue_request(req) {
            tracing::warn!(camera = %o.model, error = %e, "cannot requeue a request");
        }
    }
    for o in opened.iter_mut() {
        let _ = o.cam.stop();
    }
    // Drop order: requests (the stop's cancelled ones wait in the channel) and cameras before
    // the allocators and the manager; a request outliving its camera crashes the process.
    drop(done_rx);
    drop(opened);
    drop(allocators);
    drop(list);
    drop(mgr);
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

/// One completed camera buffer lent to [`borrow_frames`]'s callback, still owned by its
/// libcamera request: its dma-buf planes as libcamera allocated them (to import into an
/// encoder) and, for the copy path, a CPU reading of the picture.
pub struct BorrowedFrame<'a> {
    pub sequence: u64,
    pub timestamp_ns: UnixNanos,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane.
    pub stride: u32,
    pub layout: Layout,
    pub planes: Vec<DmaBufPlane>,
    buffer: &'a Mapped,
}

impl BorrowedFrame<'_> {
    /// The buffer's layout in V4L2 terms, what an importing encoder is set up with.
    pub fn raw_layout(&self) -> RawLayout {
        RawLayout {
            fourcc: self.layout.v4l2_fourcc(),
            width: self.width,
            height: self.height,
            stride: self.stride,
        }
    }

    /// The picture as tightly packed I420 in `out`, read under DMA-BUF sync (the copy path).
    pub fn to_i420(&self, out: &mut Vec<u8>) {
        let _access = dma_buf::ReadAccess::begin(self.planes.iter().map(|p| p.fd));
        let data = self.buffer.data();
        support::to_i420(
            self.layout,
            &data,
            self.stride as usize,
            self.width as usize,
            self.height as usize,
            out,
        );
    }
}

/// Streams the first configured camera (`config.select`, else camera 0) until `frames`
/// pictures have been handed to `each`, one at a time on the calling thread; each buffer goes
/// back to the camera only when `each` has returned, so a consumer that reads it in place (a
/// V4L2 encoder importing the dma-buf) is done with it by then. For checks and benchmarks
/// (`camrig-camera-check`); the node's recording path is [`open`]. A picture that takes more
/// than `timeout` is an error, as is any error `each` returns.
pub fn borrow_frames(
    config: &CameraConfig,
    frames: usize,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedFrame<'_>) -> Result<(), String>,
) -> Result<CameraInfo, CaptureError> {
    let fail = CaptureError::Camera;
    let mgr = CameraManager::new()
        .map_err(|e| fail(format!("cannot start libcamera's camera manager: {e}")))?;
    let version = support::parse_version(mgr.version()).unwrap_or((0, 0, 0));
    let list = mgr.cameras();
    let listed = list_cameras(&list);
    let picked = support::select(&listed, &config.select, 1).map_err(|e| fail(e.to_string()))?;
    let i = picked[0];
    let cam = list
        .get(i)
        .ok_or_else(|| fail(format!("camera {i} disappeared")))?;
    let (done_tx, done_rx) = mpsc::channel::<(usize, Request)>();
    let opened = open_one(&cam, config, &listed[i], 0, done_tx);
    // The acquired camera holds its own reference: this one must not outlive the manager.
    drop(cam);
    let (mut o, alloc) =
        opened.map_err(|e| fail(format!("camera {i} ({}): {e}", listed[i].model)))?;
    let info = CameraInfo {
        model: o.model.clone(),
        width: o.width,
        height: o.height,
        fps: config.fps,
    };
    let mut result = o
        .cam
        .start(Some(&o.controls))
        .map_err(|e| fail(format!("cannot start the camera: {e}")));
    if result.is_ok() {
        for req in o.requests.drain(..) {
            if let Err((_, e)) = o.cam.queue_request(req) {
                result = Err(fail(format!("cannot queue a request: {e}")));
            }
        }
    }
    let mut got = 0;
    while result.is_ok() && got < frames {
        let mut req = match done_rx.recv_timeout(timeout) {
            Ok((_, r)) => r,
            Err(_) => {
                result = Err(fail(format!(
                    "no picture from the camera within {} s ({got} of {frames} so far)",
                    timeout.as_secs()
                )));
                break;
            }
        };
        let clocks = ClockPair::now();
        if req.status() == RequestStatus::Complete {
            if let Some(frame) = o.borrowed(&req, clocks, version) {
                if let Err(e) = each(&frame) {
                    result = Err(fail(e));
                    break;
                }
                got += 1;
            }
        }
        req.reuse(ReuseFlag::REUSE_BUFFERS);
        if let Err((_, e)) = o.cam.queue_request(req) {
            result = Err(fail(format!("cannot requeue a request: {e}")));
        }
    }
    let _ = o.cam.stop();
    // Requests cancelled by the stop wait in the channel: gone before the camera.
    drop(done_rx);
    drop(o);
    drop(alloc);
    drop(list);
    drop(mgr);
    result.map(|()| info)
}

fn open_one<'d>(
    cam: &libcamera::camera::Camera<'d>,
    config: &CameraConfig,
    listed: &ListedCamera,
    n: usize,
    done: mpsc::Sender<(usize, Request)>,
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
        cfg.set_buffer_count(4);
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
    let buffers = alloc
        .alloc(&stream)
        .map_err(|e| format!("cannot allocate buffers: {e}"))?;
    let mut requests = Vec::new();
    for (i, buf) in buffers.into_iter().enumerate() {
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
        let _ = done.send((n, req));
    });

    // Start controls: frame rate, and exposure/gain when set. Only what the camera lists is
    // sent; the rest is said in the log (vimc, for one, has no frame duration control).
    let available = cam.controls();
    let has = |id: u32| available.find(id).is_ok();
    let mut controls = ControlList::new();
    let period_us = (1e6 / config.fps).round() as i64;
    if has(controls::FrameDurationLimits::ID) {
        let _ = controls.set(controls::FrameDurationLimits([period_us, period_us]));
    } else {
        tracing::warn!(camera = %listed.model, "camera has no FrameDurationLimits control: it runs at its own rate");
    }
    if config.exposure_us > 0 {
        if has(controls::ExposureTime::ID) {
            let _ = controls.set(controls::AeEnable(false));
            let _ = controls.set(controls::ExposureTime(config.exposure_us as i32));
        } else {
            tracing::warn!(camera = %listed.model, "camera has no ExposureTime control: camera.exposure_us ignored");
        }
    }
    if config.analogue_gain > 0.0 {
        if has(controls::AnalogueGain::ID) {
            let _ = controls.set(controls::AnalogueGain(config.analogue_gain as f32));
        } else {
            tracing::warn!(camera = %listed.model, "camera has no AnalogueGain control: camera.analogue_gain ignored");
        }
    }
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
            sequence: SequenceWidener::default(),
            wall_clock_id: None,
            model: listed.model.clone(),
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
        let timestamp_ns = match self.wall_clock_id {
            Some(id) if id != 0 && metadata.contains(id) => match metadata_value(metadata, id) {
                Some(v) => support::frame_wall_clock_ns(v, version),
                None => clocks.to_wall(sensor_ns),
            },
            _ => clocks.to_wall(sensor_ns),
        };
        Some((sequence, timestamp_ns))
    }

    /// The completed request's buffer lent as it is (no copy), or None if it has no picture.
    fn borrowed<'r>(
        &mut self,
        req: &'r Request,
        clocks: ClockPair,
        version: (u32, u32, u32),
    ) -> Option<BorrowedFrame<'r>> {
        let buf: &Mapped = req.buffer(&self.stream)?;
        let (sequence, timestamp_ns) = self.stamp(req, buf, clocks, version)?;
        let list = buf.planes();
        let planes = (0..list.len())
            .filter_map(|i| list.get(i))
            .map(|p| DmaBufPlane {
                fd: p.fd(),
                offset: p.offset().unwrap_or(0) as u32,
                length: p.len() as u32,
            })
            .collect();
        Some(BorrowedFrame {
            sequence,
            timestamp_ns,
            width: self.width,
            height: self.height,
            stride: self.stride as u32,
            layout: self.layout,
            planes,
            buffer: buf,
        })
    }

    /// The completed request as a node frame, or None (logged) if it carries no picture.
    fn frame(
        &mut self,
        camera: usize,
        req: &Request,
        clocks: ClockPair,
        version: (u32, u32, u32),
        i420: &mut Vec<u8>,
    ) -> Option<Frame> {
        let buf: &Mapped = req.buffer(&self.stream)?;
        let (sequence, timestamp_ns) = self.stamp(req, buf, clocks, version)?;

        let planes = buf.planes();
        let fds: Vec<i32> = (0..planes.len())
            .filter_map(|i| planes.get(i).map(|p| p.fd()))
            .collect();
        {
            let _access = dma_buf::ReadAccess::begin(fds);
            let data = buf.data();
            support::to_i420(
                self.layout,
                &data,
                self.stride,
                self.width as usize,
                self.height as usize,
                i420,
            );
        }
        Some(Frame {
            camera,
            sequence,
            timestamp_ns,
            width: self.width,
            height: self.height,
            i420: Arc::new(std::mem::take(i420)),
        })
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
