//! Software encoders for any machine: MJPEG ([`MjpegEncoder`], `jpeg-encoder`) and H.264
//! ([`SoftH264Encoder`], OpenH264), and [`encode_jpeg`] for preview stills.

use jpeg_encoder::{Encoder as JpegEncoder, JpegColorType, SamplingFactor};
use openh264::encoder::{
    BitRate, Encoder as H264Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

use super::{EncodeError, Encoded, EncoderSettings, FrameEncoder};
use crate::camera::Frame;

pub struct MjpegEncoder {
    pub quality: u8,
    /// Where a camera picture in another format is converted to I420.
    pub scratch: Vec<u8>,
}

impl FrameEncoder for MjpegEncoder {
    fn encode(&mut self, frame: &Frame, _key: bool, out: &mut Vec<u8>) -> Encoded {
        let pixels = frame.i420(&mut self.scratch);
        encode_jpeg(&I420Image::of(frame, &pixels), self.quality, out)?;
        Ok(pixels.path)
    }
}

/// Encodes an I420 image as a 4:2:0 baseline JPEG.
pub fn encode_jpeg(
    image: &I420Image<'_>,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut enc = JpegEncoder::new(out, quality);
    enc.set_sampling_factor(SamplingFactor::F_2_2);
    enc.encode_image(image.clone())?;
    Ok(())
}

/// An I420 picture borrowed for the JPEG encoder (which asks for full-resolution rows and
/// subsamples them again itself).
#[derive(Clone)]
pub struct I420Image<'a> {
    pub width: usize,
    pub height: usize,
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
}

impl<'a> I420Image<'a> {
    pub fn of(frame: &Frame, pixels: &'a crate::camera::I420Planes<'_>) -> I420Image<'a> {
        I420Image {
            width: frame.width as usize,
            height: frame.height as usize,
            y: pixels.y,
            u: pixels.u,
            v: pixels.v,
        }
    }
}

impl jpeg_encoder::ImageBuffer for I420Image<'_> {
    fn get_jpeg_color_type(&self) -> JpegColorType {
        JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width as u16
    }

    fn height(&self) -> u16 {
        self.height as u16
    }

    fn fill_buffers(&self, row: u16, buffers: &mut [Vec<u8>; 4]) {
        let row = row as usize;
        let cw = self.width / 2;
        buffers[0].extend_from_slice(&self.y[row * self.width..(row + 1) * self.width]);
        let c_row = (row / 2) * cw;
        for x in 0..self.width {
            let i = c_row + (x / 2).min(cw - 1);
            buffers[1].push(self.u[i]);
            buffers[2].push(self.v[i]);
        }
    }
}

pub struct SoftH264Encoder {
    inner: H264Encoder,
    scratch: Vec<u8>,
}

impl SoftH264Encoder {
    pub fn new(settings: EncoderSettings) -> Result<SoftH264Encoder, EncodeError> {
        let fps = settings.fps as f32;
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(settings.h264_bitrate_kbps * 1000))
            .max_frame_rate(FrameRate::from_hz(fps))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            // Skipped frames would leave a timestamp without a picture.
            .skip_frames(false)
            // A key frame every second keeps files seekable and limits what a damaged
            // byte can spoil; segment starts force one anyway.
            .intra_frame_period(IntraFramePeriod::from_num_frames(
                settings.fps.round().max(1.0) as u32,
            ))
            .num_threads(1);
        let inner = H264Encoder::with_api_config(OpenH264API::from_source(), config)?;
        Ok(SoftH264Encoder {
            inner,
            scratch: Vec::new(),
        })
    }
}

impl FrameEncoder for SoftH264Encoder {
    fn encode(&mut self, frame: &Frame, key: bool, out: &mut Vec<u8>) -> Encoded {
        let w = frame.width as usize;
        let h = frame.height as usize;
        let pixels = frame.i420(&mut self.scratch);
        let src = YUVSlices::new((pixels.y, pixels.u, pixels.v), (w, h), (w, w / 2, w / 2));
        if key {
            self.inner.force_intra_frame();
        }
        let stream = self.inner.encode(&src)?;
        if matches!(stream.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Err(EncodeError::H264Skipped);
        }
        stream.write_vec(out);
        Ok(pixels.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::PixelPath;
    use crate::encode::HardwareEncoder;
    use camrig_protocol::naming::Codec;

    fn frame(w: u32, h: u32) -> Frame {
        let mut p = crate::camera::test_pattern::TestPattern::new(w, h, 0, "cam1");
        Frame {
            camera: 0,
            sequence: 0,
            timestamp_ns: 0,
            width: w,
            height: h,
            pixels: crate::camera::FramePixels::I420(p.render(0, 0)),
            applied: None,
        }
    }

    #[test]
    fn mjpeg_frames_are_whole_jpegs() {
        let mut e = MjpegEncoder {
            quality: 80,
            scratch: Vec::new(),
        };
        let mut out = Vec::new();
        let path = e.encode(&frame(64, 48), true, &mut out).unwrap();
        assert_eq!(path, PixelPath::Memory);
        assert_eq!(&out[..2], &[0xFF, 0xD8]);
        assert_eq!(&out[out.len() - 2..], &[0xFF, 0xD9]);
    }

    #[test]
    fn h264_key_frames_carry_sps_and_pps() {
        let mut e = SoftH264Encoder::new(EncoderSettings {
            codec: Codec::H264,
            mjpeg_quality: 80,
            h264_bitrate_kbps: 500,
            fps: 30.0,
            hardware: HardwareEncoder::Software,
        })
        .unwrap();
        let f = frame(64, 48);
        for i in 0..3 {
            let mut out = Vec::new();
            e.encode(&f, i == 2, &mut out).unwrap();
            let types = crate::take::access_units::nal_types(&out);
            if i == 0 || i == 2 {
                assert!(
                    types.contains(&7) && types.contains(&8) && types.contains(&5),
                    "{types:?}"
                );
            }
        }
    }

    /// A raw segment declares its frame rate: ffprobe reads 30/1 and 60 frames last 2 s.
    #[test]
    fn raw_h264_declares_its_frame_rate_to_ffprobe() {
        let mut e = crate::service::run::new_encoder(EncoderSettings {
            codec: Codec::H264,
            mjpeg_quality: 80,
            h264_bitrate_kbps: 300,
            fps: 30.0,
            hardware: HardwareEncoder::Software,
        })
        .unwrap();
        let f = frame(64, 48);
        let mut out = Vec::new();
        for i in 0..60 {
            e.encode(&f, i == 0, &mut out).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.h264");
        std::fs::write(&path, &out).unwrap();
        let probe = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
            .args([
                "-show_entries",
                "stream=r_frame_rate,avg_frame_rate,nb_read_frames",
            ])
            .args(["-of", "default=nw=1"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&probe.stdout);
        assert!(text.contains("r_frame_rate=30/1"), "{text}");
        assert!(text.contains("avg_frame_rate=30/1"), "{text}");
        assert!(text.contains("nb_read_frames=60"), "{text}");
        // Wrapped without telling ffmpeg any rate: the stream's own timing places the frames.
        let mkv = dir.path().join("seg.mkv");
        let wrap = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-c", "copy"])
            .arg(&mkv)
            .status()
            .unwrap();
        assert!(wrap.success());
        let duration = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "packet=pts_time",
                "-of",
                "csv=p=0",
            ])
            .arg(&mkv)
            .output()
            .unwrap();
        let last: f64 = String::from_utf8_lossy(&duration.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .fold(0.0, f64::max);
        assert!(
            (last - 59.0 / 30.0).abs() < 0.0015,
            "last frame at {last} s"
        );
    }
}
