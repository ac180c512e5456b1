//! The capture seam: a [`CaptureBackend`] opens the node's cameras and pushes every frame
//! into a [`FrameSink`] from its own threads. This module owns the types every backend and
//! every frame reader shares ([`Frame`], [`FramePixels`], [`CameraBuffer`], [`DmaBufPlane`],
//! [`PixelPath`]); the backends are [`synthetic`] (with [`test_pattern`], timed by
//! [`capture_timing`]) on any PC and `libcamera_backend` (cargo feature `libcamera`, with
//! [`libcamera_support`], [`dma_buf`] and [`buffer_lease`]) for real cameras. Which one runs is
//! chosen in the composition root ([`crate::service::run`]), never here. The synthetic
//! camera is a [`sensor_model`]; behind the seam each backend runs every camera's
//! [`phase_lock`] and shows it through [`CaptureBackend::phase`]. Camera settings
//! (exposure, gain, colour, focus) go through [`CameraControls`]; [`synthetic_exposure`] is the
//! synthetic camera's state for them, [`libcamera_controls`] their libcamera mapping.
//!
//! Contract for backends: frames arrive in order per camera; `timestamp_ns` is the
//! wall-clock (CLOCK_REALTIME) instant the frame's exposure started, as the camera pipeline
//! reports it (a sensor's start-of-frame time mapped to wall clock), never an idealised grid
//! value nor the instant a thread handled the frame;
//! `sequence` counts sensor frames so a gap means a lost frame; the sink never blocks.
//!
//! Pixels are not copied on the way: a camera backend lends its own buffer
//! ([`FramePixels::Camera`]) and gets it back when the frame is dropped; an encoder imports its
//! dma-buf or reads it in place under DMA-BUF sync ([`Frame::i420`]).

use std::os::fd::RawFd;
use std::sync::Arc;

use camrig_protocol::camera_settings::{AppliedControls, CameraLimits, CameraSettings};
use camrig_protocol::manifest::PixelPathCounts;
use camrig_protocol::UnixNanos;

use libcamera_support::{self as support, Layout};
use phase_lock::PhaseMonitor;

// Only the libcamera backend lends buffers; without it this is built for the tests alone.
#[cfg_attr(not(feature = "libcamera"), allow(dead_code))]
pub(crate) mod buffer_lease;
pub(crate) mod capture_timing;
pub(crate) mod dma_buf;
#[cfg(feature = "libcamera")]
pub mod libcamera_backend;
pub mod libcamera_controls;
pub mod libcamera_support;
pub mod phase_lock;
pub mod sensor_model;
pub(crate) mod synthetic;
pub(crate) mod synthetic_exposure;
pub mod test_pattern;

/// One captured picture: where and when, and its pixels ([`FramePixels`]).
#[derive(Clone, Debug)]
pub struct Frame {
    /// 0-based camera index on the node.
    pub camera: usize,
    pub sequence: u64,
    pub timestamp_ns: UnixNanos,
    pub width: u32,
    pub height: u32,
    pub pixels: FramePixels,
    /// Exposure, gain, colour gains and lens position the camera applied to this frame,
    /// where it reports them (written to the segment's `_metadata.csv`).
    pub applied: Option<AppliedControls>,
}

/// Where a frame's pixels are.
#[derive(Clone, Debug)]
pub enum FramePixels {
    /// Tightly packed I420 in memory (Y, U, V planes, no padding): the synthetic camera.
    I420(Arc<Vec<u8>>),
    /// The camera's own buffer, lent to the frame: it goes back to the camera when the last
    /// clone of the frame is dropped (encoded, dropped for a full queue, replaced as the
    /// preview's latest frame).
    Camera(Arc<CameraBuffer>),
}

/// How a frame's pixels reached an encoder (tallied per take in the manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelPath {
    /// A hardware encoder read the camera buffer's dma-buf itself.
    Imported,
    /// A software encoder read the mapped camera buffer in place (it already was I420).
    InPlace,
    /// A software encoder needed I420 and the camera gave another format: converted once.
    Converted,
    /// The picture was copied whole into the encoder's memory (a camera buffer the hardware
    /// encoder would not import, or any in-memory picture on the V4L2 copy path).
    Copied,
    /// The picture never was in a camera buffer (synthetic): read from memory.
    Memory,
}

impl PixelPath {
    /// Adds one frame to a take's counts.
    pub fn count(self, frame: &Frame, counts: &mut PixelPathCounts) {
        if matches!(frame.pixels, FramePixels::Camera(_)) {
            counts.borrowed += 1;
        }
        match self {
            PixelPath::Imported => counts.imported += 1,
            PixelPath::InPlace => counts.in_place += 1,
            PixelPath::Converted => counts.converted += 1,
            PixelPath::Copied => counts.copied += 1,
            PixelPath::Memory => counts.memory += 1,
        }
    }
}

/// One plane of a camera buffer: the dma-buf holding it, where in it the plane starts and
/// how long it is (libcamera's `FrameBuffer::Plane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBufPlane {
    pub fd: RawFd,
    pub offset: u32,
    pub length: u32,
}

/// A camera buffer lent to the node's frame path: its layout, its dma-buf planes (for an
/// encoder that imports them) and read access to its mapping. Dropping it gives the buffer
/// back to the camera (the backend's [`CameraMemory`] owns that duty).
pub struct CameraBuffer {
    pub layout: Layout,
    /// Bytes per line of the first plane.
    pub stride: u32,
    pub planes: Vec<DmaBufPlane>,
    pub memory: Box<dyn CameraMemory>,
}

impl std::fmt::Debug for CameraBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraBuffer")
            .field("layout", &self.layout)
            .field("stride", &self.stride)
            .field("planes", &self.planes)
            .finish_non_exhaustive()
    }
}

/// The mapped memory of a lent camera buffer, one slice per plane as the camera laid them out.
/// Implementations give the buffer back to the camera when dropped.
pub trait CameraMemory: Send + Sync {
    fn planes(&self) -> Vec<&[u8]>;
}

/// A frame's picture as I420 planes for a CPU reader, with the DMA-BUF read access held for
/// as long as the planes are borrowed.
pub struct I420Planes<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub path: PixelPath,
    _access: Option<dma_buf::ReadAccess>,
}

impl Frame {
    /// The picture as tightly packed I420 for a CPU reader: in memory or the camera buffer
    /// read in place when it already is I420 (under DMA-BUF sync, held by the result), else
    /// converted once into `scratch`.
    pub fn i420<'a>(&'a self, scratch: &'a mut Vec<u8>) -> I420Planes<'a> {
        let (w, h) = (self.width as usize, self.height as usize);
        match &self.pixels {
            FramePixels::I420(data) => {
                let (y, u, v) = split_i420(data, w, h);
                I420Planes {
                    y,
                    u,
                    v,
                    path: PixelPath::Memory,
                    _access: None,
                }
            }
            FramePixels::Camera(buf) => {
                let access = dma_buf::ReadAccess::begin(buf.planes.iter().map(|p| p.fd));
                let planes = buf.memory.planes();
                if let Some((y, u, v)) =
                    support::i420_in_place(buf.layout, &planes, buf.stride as usize, w, h)
                {
                    return I420Planes {
                        y,
                        u,
                        v,
                        path: PixelPath::InPlace,
                        _access: Some(access),
                    };
                }
                support::to_i420(buf.layout, &planes, buf.stride as usize, w, h, scratch);
                drop(access);
                let (y, u, v) = split_i420(scratch, w, h);
                I420Planes {
                    y,
                    u,
                    v,
                    path: PixelPath::Converted,
                    _access: None,
                }
            }
        }
    }
}

/// The Y, U and V planes of tightly packed I420.
pub fn split_i420(data: &[u8], w: usize, h: usize) -> (&[u8], &[u8], &[u8]) {
    let y_len = w * h;
    let c_len = y_len / 4;
    let (y, rest) = data.split_at(y_len.min(data.len()));
    let (u, v) = rest.split_at(c_len.min(rest.len()));
    (y, u, &v[..c_len.min(v.len())])
}

/// What the node knows about one opened camera.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraInfo {
    /// e.g. `synthetic`, `imx219`, `imx477`.
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
}

impl CameraInfo {
    /// `1280x720@30`
    pub fn mode(&self) -> String {
        format!("{}x{}@{}", self.width, self.height, self.fps)
    }

    pub fn period_ns(&self) -> i64 {
        (1e9 / self.fps).round() as i64
    }
}

/// Receives every frame; called on the backend's threads, must return quickly.
pub type FrameSink = Arc<dyn Fn(Frame) + Send + Sync>;

pub trait CaptureBackend: Send {
    /// The opened cameras, index = [`Frame::camera`].
    fn cameras(&self) -> &[CameraInfo];
    /// Each camera's phase lock ([`crate::camera::phase_lock`]), index = [`Frame::camera`]: the
    /// backend runs the loops on its capture threads, the node reads them.
    fn phase(&self) -> Vec<Arc<PhaseMonitor>>;
    /// Starts delivering frames to `sink` until [`CaptureBackend::stop`].
    fn start(&mut self, sink: FrameSink) -> Result<(), CaptureError>;
    /// Stops delivery and joins the backend's threads.
    fn stop(&mut self);
    /// The cameras' controls (exposure, gain, colour, …), usable from any thread.
    fn controls(&self) -> Arc<dyn CameraControls>;
}

/// Settings for the opened cameras, from the node's API thread while frames flow.
pub trait CameraControls: Send + Sync {
    /// What camera `camera` reports it supports (its controls and their ranges).
    fn limits(&self, camera: usize) -> CameraLimits;
    /// Applies settings the node has checked against [`CameraControls::limits`]; they take
    /// effect within a few frames, as a sensor's controls do.
    fn apply(&self, camera: usize, settings: &CameraSettings) -> Result<(), CaptureError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no camera found (libcamera backend not built in)")]
    LibcameraNotBuilt,
    /// From the libcamera backend: "no camera found: ...", a selection or configuration problem.
    #[error("{0}")]
    Camera(String),
    #[error("cannot start camera thread: {0}")]
    Thread(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::buffer_lease::{Lease, Lender};
    use std::sync::mpsc;

    /// A camera buffer in ordinary memory, lent like a libcamera request.
    struct LentVec {
        data: Vec<u8>,
        _lease: Lease<u32>,
    }

    impl CameraMemory for LentVec {
        fn planes(&self) -> Vec<&[u8]> {
            vec![&self.data]
        }
    }

    fn camera_frame(lender: &Lender<u32>, layout: Layout, w: u32, h: u32, data: Vec<u8>) -> Frame {
        let stride = if layout == Layout::Bgr888 { w * 3 } else { w };
        Frame {
            camera: 0,
            sequence: 1,
            timestamp_ns: 1,
            width: w,
            height: h,
            pixels: FramePixels::Camera(Arc::new(CameraBuffer {
                layout,
                stride,
                planes: Vec::new(),
                memory: Box::new(LentVec {
                    data,
                    _lease: lender.lend(7).expect("lendable"),
                }),
            })),
            applied: None,
        }
    }

    #[test]
    fn an_i420_camera_buffer_is_read_in_place_and_other_formats_are_converted() {
        let (tx, _rx) = mpsc::channel();
        let lender = Lender::new(4, move |n| tx.send(n).map_err(|e| e.0));
        let yuv: Vec<u8> = (0..24).collect();
        let f = camera_frame(&lender, Layout::Yuv420, 4, 4, yuv.clone());
        let mut scratch = Vec::new();
        let p = f.i420(&mut scratch);
        assert_eq!(p.path, PixelPath::InPlace);
        assert_eq!((p.y, p.u, p.v), (&yuv[..16], &yuv[16..20], &yuv[20..24]));
        assert!(scratch.is_empty(), "nothing copied");

        let f = camera_frame(&lender, Layout::Bgr888, 2, 2, vec![255; 12]);
        let mut scratch = Vec::new();
        let p = f.i420(&mut scratch);
        assert_eq!(p.path, PixelPath::Converted);
        assert_eq!(p.y.len() + p.u.len() + p.v.len(), 6);
    }

    #[test]
    fn the_buffer_goes_back_when_the_last_clone_of_the_frame_is_dropped() {
        let (tx, rx) = mpsc::channel();
        let lender = Lender::new(1, move |n| tx.send(n).map_err(|e| e.0));
        let f = camera_frame(&lender, Layout::Yuv420, 2, 2, vec![0; 6]);
        let queued = f.clone();
        assert!(
            lender.lend(8).is_err(),
            "one lendable buffer, and it is out"
        );
        drop(f);
        assert!(rx.try_recv().is_err(), "still in the queue");
        drop(queued);
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(lender.out(), 0);
    }

    #[test]
    fn a_frame_a_full_queue_refuses_gives_its_buffer_back_at_once() {
        let (tx, rx) = mpsc::channel();
        let lender = Lender::new(2, move |n| tx.send(n).map_err(|e| e.0));
        // The writer's bounded queue, full: `TakeHandle::offer` uses try_send like this.
        let (queue, _writer) = mpsc::sync_channel(1);
        queue
            .try_send(camera_frame(&lender, Layout::Yuv420, 2, 2, vec![0; 6]))
            .unwrap();
        let refused = queue.try_send(camera_frame(&lender, Layout::Yuv420, 2, 2, vec![0; 6]));
        assert!(matches!(refused, Err(mpsc::TrySendError::Full(_))));
        drop(refused);
        assert_eq!(rx.try_recv(), Ok(7), "the dropped frame's buffer is back");
        assert_eq!(lender.out(), 1, "the queued one is still lent");
    }

    #[test]
    fn pixel_paths_are_counted_per_frame() {
        let (tx, _rx) = mpsc::channel();
        let lender = Lender::new(1, move |n| tx.send(n).map_err(|e| e.0));
        let mut counts = PixelPathCounts::default();
        let f = camera_frame(&lender, Layout::Yuv420, 2, 2, vec![0; 6]);
        PixelPath::Imported.count(&f, &mut counts);
        let synthetic = Frame {
            pixels: FramePixels::I420(Arc::new(vec![0; 6])),
            ..f.clone()
        };
        PixelPath::Memory.count(&synthetic, &mut counts);
        assert_eq!(
            counts,
            PixelPathCounts {
                borrowed: 1,
                imported: 1,
                memory: 1,
                ..Default::default()
            }
        );
    }
}
