//! What the V4L2 encoder's rooms fail with, and how long a picture may take.

use std::path::{Path, PathBuf};

/// How long one picture may take in the encoder before the device is declared stuck.
pub(super) const PICTURE_TIMEOUT_MS: i32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum V4l2Error {
    #[error("no V4L2 memory-to-memory encoder for {0} found under /dev (video*)")]
    NoDevice(String),
    #[error("{}: {what}: {errno}", .device.display())]
    Ioctl {
        device: PathBuf,
        what: &'static str,
        errno: nix::Error,
    },
    #[error("{}: {problem}", .device.display())]
    Device { device: PathBuf, problem: String },
    #[error("{}: no encoded picture within {PICTURE_TIMEOUT_MS} ms", .0.display())]
    Timeout(PathBuf),
    /// The device cannot read the camera's buffers in place (the caller copies instead).
    #[error("{}: dma-buf import refused: {reason}", .device.display())]
    ImportRefused { device: PathBuf, reason: String },
    #[error("frame is {got_w}x{got_h} but the encoder was set up for {want_w}x{want_h}")]
    SizeChanged {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}

impl V4l2Error {
    pub(super) fn device(device: &Path, problem: impl Into<String>) -> V4l2Error {
        V4l2Error::Device {
            device: device.to_path_buf(),
            problem: problem.into(),
        }
    }
}
