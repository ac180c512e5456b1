//! The encoder seam: a [`FrameEncoder`] turns frames into a byte stream that can be
//! concatenated into a segment file. [`software`] has MJPEG (one baseline JPEG per frame,
//! `jpeg-encoder`) and software H.264 (OpenH264, Annex-B with SPS/PPS before every IDR);
//! [`v4l2`] the hardware path (V4L2 M2M on a Pi 4). Every H.264 encoder is wrapped in
//! [`WithTiming`], so each SPS declares the frame rate ([`h264_vui`]). Which one a take gets is chosen by
//! [`HardwareEncoder`] in the composition root ([`crate::service::run`]), handed to the take as
//! a [`NewEncoder`].

use camrig_protocol::naming::Codec;

use crate::camera::{Frame, PixelPath};

pub mod h264_vui;
pub(crate) mod software;
pub mod v4l2;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("jpeg encoding failed: {0}")]
    Jpeg(#[from] jpeg_encoder::EncodingError),
    #[error("h264 encoding failed: {0}")]
    H264(#[from] openh264::Error),
    #[error("h264 encoder produced no picture for a frame")]
    H264Skipped,
    #[error("hardware encoder: {0}")]
    V4l2(#[from] v4l2::V4l2Error),
    #[error("hardware encoder did not make a key frame where one was asked for")]
    NotKey,
}

/// What [`FrameEncoder::encode`] answers: how the frame's pixels reached the encoder.
pub type Encoded = Result<PixelPath, EncodeError>;

/// Encodes frames one by one into a byte stream that can be concatenated into a file.
pub trait FrameEncoder: Send {
    /// Appends the encoded frame to `out`. `key` asks for a frame that decodes alone (the
    /// first of a segment); for H.264 it carries SPS/PPS too. Returns how the frame's pixels
    /// reached the encoder (imported, read in place, converted, copied).
    fn encode(&mut self, frame: &Frame, key: bool, out: &mut Vec<u8>) -> Encoded;
}

#[derive(Clone, Copy, Debug)]
pub struct EncoderSettings {
    pub codec: Codec,
    pub mjpeg_quality: u8,
    pub h264_bitrate_kbps: u32,
    pub fps: f64,
    pub hardware: HardwareEncoder,
}

/// `recording.encoder` (the config owns the setting; the encoders are chosen by it).
pub use camrig_config::node::HardwareEncoder;

/// Makes a take's encoder for its settings, at the take's first frame: the composition root's
/// choice among the backends ([`crate::service::run::new_encoder`]).
pub type NewEncoder = fn(EncoderSettings) -> Result<Box<dyn FrameEncoder>, EncodeError>;

/// An H.264 encoder whose sequence parameter sets declare the frame rate (VUI
/// `timing_info`, see [`h264_vui`]), so a raw segment plays at its true speed.
pub struct WithTiming<E> {
    inner: E,
    fps: f64,
}

impl<E: FrameEncoder> WithTiming<E> {
    pub fn new(inner: E, fps: f64) -> WithTiming<E> {
        WithTiming { inner, fps }
    }
}

impl<E: FrameEncoder> FrameEncoder for WithTiming<E> {
    fn encode(&mut self, frame: &Frame, key: bool, out: &mut Vec<u8>) -> Encoded {
        let from = out.len();
        let path = self.inner.encode(frame, key, out)?;
        // Every SPS, not only a segment's first: periodic key frames repeat it.
        h264_vui::add_timing(out, from, self.fps);
        Ok(path)
    }
}
