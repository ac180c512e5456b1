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
//! [`frame_adapter`] is the node's [`crate::encode::FrameEncoder`] on it, [`error`] is what
//! they fail with, and [`sys`] holds the kernel ABI (structs, ioctls, mappings, format names).

mod device;
mod encoder;
mod error;
mod frame_adapter;
mod import;
pub mod sys;

pub use device::{find_encoder, probe, EncoderDevice};
pub use encoder::{KeyFrames, V4l2Encoder, V4l2Settings};
pub use error::V4l2Error;
pub use frame_adapter::V4l2FrameEncoder;
pub use import::{import_plan, layout_fourcc, layout_mismatch, InputPath, RawLayout};
pub use sys::{coded_formats, fourcc_name};

#[cfg(test)]
mod tests {
    use super::*;
    use camrig_protocol::naming::Codec;

    #[test]
    fn fourcc_names_read_back() {
        assert_eq!(fourcc_name(sys::PIX_FMT_FWHT), "FWHT");
        assert_eq!(coded_formats(Codec::H264), &[sys::PIX_FMT_H264]);
    }
}
