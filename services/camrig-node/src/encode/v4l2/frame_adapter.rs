//! The node's [`FrameEncoder`] on a V4L2 device ([`V4l2FrameEncoder`]): turns frames into
//! device pictures, import first, copy when the device refuses.

use super::device::EncoderDevice;
use super::encoder::{V4l2Encoder, V4l2Settings};
use super::error::V4l2Error;
use super::import::{layout_fourcc, InputPath, RawLayout};
use crate::camera::{Frame, FramePixels, PixelPath};
use crate::encode::{EncodeError, Encoded, EncoderSettings, FrameEncoder};

/// The node's [`FrameEncoder`] on a V4L2 device: opened at the first frame (which gives the
/// size, and whether pictures come as camera buffers), so a take on a machine without the
/// device fails at its first frame with a clear reason rather than at start. A camera's lent
/// buffer is imported by dma-buf when the device takes it (no copy); a refusal falls back to
/// copying, said once in the log, and every frame's [`PixelPath`] tells the take which way.
pub struct V4l2FrameEncoder {
    device: EncoderDevice,
    settings: EncoderSettings,
    open: Option<V4l2Encoder>,
    scratch: Vec<u8>,
}

impl V4l2FrameEncoder {
    pub fn new(device: EncoderDevice, settings: EncoderSettings) -> V4l2FrameEncoder {
        V4l2FrameEncoder {
            device,
            settings,
            open: None,
            scratch: Vec::new(),
        }
    }

    /// The device and how pictures reach it (once the first frame opened it).
    pub fn encoder(&self) -> Option<&V4l2Encoder> {
        self.open.as_ref()
    }
}

impl FrameEncoder for V4l2FrameEncoder {
    fn encode(&mut self, frame: &Frame, key: bool, out: &mut Vec<u8>) -> Encoded {
        if self.open.is_none() {
            let s = V4l2Settings {
                width: frame.width,
                height: frame.height,
                fps: self.settings.fps,
                bitrate_kbps: self.settings.h264_bitrate_kbps,
                jpeg_quality: self.settings.mjpeg_quality,
            };
            let device = self.device.clone();
            self.open = Some(match &frame.pixels {
                FramePixels::Camera(buf) => V4l2Encoder::open_import(
                    device,
                    s,
                    RawLayout {
                        fourcc: layout_fourcc(buf.layout),
                        width: frame.width,
                        height: frame.height,
                        stride: buf.stride,
                    },
                )?,
                FramePixels::I420(_) => V4l2Encoder::open_copy(
                    device,
                    s,
                    "frames are pictures in memory (synthetic camera)".into(),
                )?,
            });
        }
        let enc = self.open.as_mut().expect("opened above");
        if let FramePixels::Camera(buf) = &frame.pixels {
            if *enc.input() == InputPath::DmaBufImport {
                match enc.encode_dmabuf(&buf.planes, key, out) {
                    Ok(got_key) => return keyed(key, got_key, PixelPath::Imported),
                    // Refused now (said once in the log): this and every later frame take
                    // the copy path below.
                    Err(V4l2Error::ImportRefused { reason, .. }) => {
                        out.clear();
                        enc.fall_back_to_copy(reason)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let pixels = frame.i420(&mut self.scratch);
        let got_key = enc.encode_i420(
            (pixels.y, pixels.u, pixels.v),
            frame.width,
            frame.height,
            key,
            out,
        )?;
        // Into the device's own buffers: a copy, whether the picture came from memory or from
        // a camera buffer the device would not import.
        let path = match pixels.path {
            PixelPath::Memory => PixelPath::Memory,
            _ => PixelPath::Copied,
        };
        keyed(key, got_key, path)
    }
}

/// A picture that had to start a segment but came out as no key frame is an error.
fn keyed(key: bool, got_key: bool, path: PixelPath) -> Encoded {
    if key && !got_key {
        return Err(EncodeError::NotKey);
    }
    Ok(path)
}
