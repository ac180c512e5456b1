//! Hardware encoding through a V4L2 memory-to-memory *stateful* encoder (the Pi 4's
//! bcm2835-codec H.264 and JPEG encoders; the kernel's vicodec FWHT encoder in tests).
//!
//! The device is found by what it can do, never by a fixed path: a multi-planar M2M node whose
//! CAPTURE queue offers the coded format and whose OUTPUT queue takes I420. Pictures go in one
//! of two ways ([`InputPath`]):
//! - **dma-buf import** ([`V4l2Encoder::open_import`], [`V4l2Encoder::encode_dmabuf`]): the
//!   OUTPUT queue is set to the camera's own pixel format, size and line stride in
//!   `V4L2_MEMORY_DMABUF` mode and the camera buffer's dma-buf fd is queued as it is, no CPU
//!   copy; the buffer is dequeued again before the call returns, so the camera gets it back
//!   only when the device is done with it. When the device refuses (format or stride it will
//!   not take, REQBUFS or QBUF with DMABUF failing) the encoder falls back to the copy path and
//!   says why, once, in the log and in [`V4l2Encoder::input`].
//! - **copy** ([`V4l2Encoder::open`], [`V4l2Encoder::encode_i420`]): I420 in memory copied
//!   into the device's mmap'ed OUTPUT buffers, honouring its line stride.
//!
//! Each encoded picture comes back in a CAPTURE buffer and is appended to the caller's stream. Encoding is synchronous, one picture
//! out per picture in (stateful encoders without B-frames work that way), which keeps the
//! node's segment bookkeeping exact: a segment's first frame is encoded after
//! `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`, so every segment starts on a key frame. A device
//! without that control gets a GOP of one instead (every picture a key frame), said in the log.
//!
//! The rooms: [`device`] finds the encoder by what it can do, [`import`] decides whether a
//! camera buffer can be queued as it is, [`encoder`] drives the device ([`V4l2Encoder`]),
//! [`frame_adapter`] is the node's [`crate::encode::FrameEncoder`] on it, and [`sys`] holds the
//! kernel ABI (structs, ioctls, mappings).

use std::path::{Path, PathBuf};

use camrig_protocol::naming::Codec;

mod device;
mod encoder;
mod frame_adapter;
mod import;
pub mod sys;

pub use device::{find_encoder, probe, EncoderDevice};
pub use encoder::{KeyFrames, V4l2Encoder, V4l2Settings};
pub use frame_adapter::V4l2FrameEncoder;
pub use import::{import_plan, layout_fourcc, layout_mismatch, InputPath, RawLayout};

/// How long one picture may take in the encoder before the device is declared stuck.
const PICTURE_TIMEOUT_MS: i32 = 5_000;

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

/// The V4L2 pixel formats a camrig codec can be carried as (the Pi's JPEG encoder says JPEG,
/// others MJPEG: both are a JPEG per frame).
pub fn coded_formats(codec: Codec) -> &'static [u32] {
    match codec {
        Codec::H264 => &[sys::PIX_FMT_H264],
        Codec::Mjpeg => &[sys::PIX_FMT_MJPEG, sys::PIX_FMT_JPEG],
    }
}

/// `H264`, `FWHT`, ...
pub fn fourcc_name(f: u32) -> String {
    f.to_le_bytes().iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_names_read_back() {
        assert_eq!(fourcc_name(sys::PIX_FMT_FWHT), "FWHT");
        assert_eq!(coded_formats(Codec::H264), &[sys::PIX_FMT_H264]);
    }
}
