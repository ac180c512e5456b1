//! The capture seam: a [`CaptureBackend`] opens the node's cameras and pushes every frame
//! into a [`FrameSink`] from its own threads. The synthetic camera implements it today; the
//! libcamera backend (issue 7) plugs in behind the same trait without touching the rest.
//!
//! Contract for backends: frames arrive in order per camera; `timestamp_ns` is the
//! wall-clock (CLOCK_REALTIME) instant the backend actually read for the frame (for a
//! sensor: its exposure start mapped to wall clock), never an idealised grid value;
//! `sequence` counts sensor frames so a gap means a lost frame; the sink never blocks.

use std::sync::Arc;

use camrig_protocol::UnixNanos;

use crate::config::{CameraSource, NodeConfig};

/// One captured picture, YUV 4:2:0 planar (I420: Y plane, then U, then V, no padding).
#[derive(Clone, Debug)]
pub struct Frame {
    /// 0-based camera index on the node.
    pub camera: usize,
    pub sequence: u64,
    pub timestamp_ns: UnixNanos,
    pub width: u32,
    pub height: u32,
    pub i420: Arc<Vec<u8>>,
}

impl Frame {
    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y_len = (self.width * self.height) as usize;
        let c_len = y_len / 4;
        let (y, rest) = self.i420.split_at(y_len);
        let (u, v) = rest.split_at(c_len);
        (y, u, &v[..c_len])
    }
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
    /// Starts delivering frames to `sink` until [`CaptureBackend::stop`].
    fn start(&mut self, sink: FrameSink) -> Result<(), CaptureError>;
    /// Stops delivery and joins the backend's threads.
    fn stop(&mut self);
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no camera found (libcamera backend not built in)")]
    LibcameraNotBuilt,
    #[error("cannot start camera thread: {0}")]
    Thread(std::io::Error),
}

/// Opens the cameras the config asks for. Never falls back to the synthetic camera: a node
/// records the test pattern only when configured to.
pub fn open(config: &NodeConfig) -> Result<Box<dyn CaptureBackend>, CaptureError> {
    match config.camera.source {
        CameraSource::Synthetic => Ok(Box::new(crate::synthetic_camera::SyntheticBackend::new(
            &config.camera,
            &config.synthetic,
        ))),
        CameraSource::Libcamera => Err(CaptureError::LibcameraNotBuilt),
    }
}
