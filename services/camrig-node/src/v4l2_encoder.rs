//! Hardware encoding through a V4L2 memory-to-memory *stateful* encoder (the Pi 4's
//! bcm2835-codec H.264 and JPEG encoders; the kernel's vicodec FWHT encoder in tests).
//!
//! The device is found by what it can do, never by a fixed path: a multi-planar M2M node whose
//! CAPTURE queue offers the coded format and whose OUTPUT queue takes I420. Frames go in
//! through mmap'ed OUTPUT buffers (the node's frames are already I420 in memory, so one copy
//! into the device's buffer, honouring its line stride); each encoded picture comes back in a
//! CAPTURE buffer and is appended to the caller's stream. Encoding is synchronous, one picture
//! out per picture in (stateful encoders without B-frames work that way), which keeps the
//! node's segment bookkeeping exact: a segment's first frame is encoded after
//! `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`, so every segment starts on a key frame. A device
//! without that control gets a GOP of one instead (every picture a key frame), said in the log.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use camrig_protocol::naming::Codec;

use crate::capture::Frame;
use crate::encoder::{EncodeError, EncoderSettings, FrameEncoder};
use crate::v4l2_sys as sys;

/// How long one picture may take in the encoder before the device is declared stuck.
const PICTURE_TIMEOUT_MS: i32 = 5_000;
const OUTPUT_BUFFERS: u32 = 4;
const CAPTURE_BUFFERS: u32 = 4;

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
    #[error("frame is {got_w}x{got_h} but the encoder was set up for {want_w}x{want_h}")]
    SizeChanged {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}

impl V4l2Error {
    fn device(device: &Path, problem: impl Into<String>) -> V4l2Error {
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

/// A memory-to-memory encoder found on this machine.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderDevice {
    pub path: PathBuf,
    /// The driver's card name, e.g. `bcm2835-codec-encode`, `vicodec`.
    pub card: String,
    pub driver: String,
    /// The coded format chosen among those asked for.
    pub coded: u32,
}

/// The first `/dev/video*` (in numeric order) that encodes I420 into one of `coded`.
pub fn find_encoder(coded: &[u32]) -> Option<EncoderDevice> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes
        .into_iter()
        .find_map(|(_, path)| probe(&path, coded).ok().flatten())
}

/// `Some` if `path` is a multi-planar M2M encoder from I420 to one of `coded`.
pub fn probe(path: &Path, coded: &[u32]) -> Result<Option<EncoderDevice>, V4l2Error> {
    let file = open(path)?;
    let fd = file.as_fd();
    let cap = sys::querycap(fd).map_err(ioctl(path, "VIDIOC_QUERYCAP"))?;
    let caps = if cap.capabilities & sys::CAP_DEVICE_CAPS != 0 {
        cap.device_caps
    } else {
        cap.capabilities
    };
    let m2m = caps & sys::CAP_VIDEO_M2M_MPLANE != 0
        || caps & (sys::CAP_VIDEO_CAPTURE_MPLANE | sys::CAP_VIDEO_OUTPUT_MPLANE)
            == (sys::CAP_VIDEO_CAPTURE_MPLANE | sys::CAP_VIDEO_OUTPUT_MPLANE);
    if !m2m || caps & sys::CAP_STREAMING == 0 {
        return Ok(None);
    }
    let out_formats = formats(fd, sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE);
    let Some(&chosen) = coded.iter().find(|c| out_formats.contains(c)) else {
        return Ok(None);
    };
    if !formats(fd, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE).contains(&sys::PIX_FMT_YUV420) {
        return Ok(None);
    }
    Ok(Some(EncoderDevice {
        path: path.to_path_buf(),
        card: sys::c_str(&cap.card),
        driver: sys::c_str(&cap.driver),
        coded: chosen,
    }))
}

fn formats(fd: BorrowedFd<'_>, type_: u32) -> Vec<u32> {
    (0..64)
        .map_while(|i| sys::enum_fmt(fd, type_, i).ok())
        .map(|d| d.pixelformat)
        .collect()
}

fn open(path: &Path) -> Result<File, V4l2Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| V4l2Error::device(path, format!("cannot open: {e}")))
}

fn ioctl<'a>(path: &'a Path, what: &'static str) -> impl Fn(nix::Error) -> V4l2Error + 'a {
    move |errno| V4l2Error::Ioctl {
        device: path.to_path_buf(),
        what,
        errno,
    }
}

/// What the encoder is asked to produce.
#[derive(Clone, Copy, Debug)]
pub struct V4l2Settings {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub bitrate_kbps: u32,
    pub jpeg_quality: u8,
}

/// How a key frame is obtained at a segment start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFrames {
    /// `V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME` before the picture.
    Forced,
    /// The device has no force control: a GOP of one makes every picture a key frame.
    EveryPicture,
}

/// An opened, streaming M2M encoder.
pub struct V4l2Encoder {
    // Mappings before the file: fields drop in order, and the buffers must be unmapped
    // before the device is closed.
    output: Vec<sys::Mapping>,
    capture: Vec<sys::Mapping>,
    output_free: Vec<u32>,
    device: EncoderDevice,
    key_frames: KeyFrames,
    width: u32,
    height: u32,
    /// OUTPUT line stride and the height the device lays planes out with.
    stride: usize,
    plane_height: usize,
    pictures: u64,
    file: File,
}

impl V4l2Encoder {
    pub fn open(device: EncoderDevice, s: V4l2Settings) -> Result<V4l2Encoder, V4l2Error> {
        let path = device.path.clone();
        let file = open(&path)?;
        let fd = file.as_fd();

        // Stateful encoder protocol: the coded (CAPTURE) format first, then the raw one.
        let mut cf = sys::g_fmt(fd, sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE)
            .map_err(ioctl(&path, "VIDIOC_G_FMT capture"))?;
        {
            let pm = pix_mp(&mut cf);
            pm.width = s.width;
            pm.height = s.height;
            pm.pixelformat = device.coded;
            pm.field = sys::FIELD_NONE;
            pm.num_planes = 1;
            let min = (s.width * s.height * 3 / 2).max(1 << 16);
            let cur = pm.plane_fmt[0].sizeimage;
            pm.plane_fmt[0].sizeimage = cur.max(min);
        }
        sys::s_fmt(fd, &mut cf).map_err(ioctl(&path, "VIDIOC_S_FMT capture"))?;
        if pix_mp(&mut cf).pixelformat != device.coded {
            return Err(V4l2Error::device(
                &path,
                format!("refused coded format {}", fourcc_name(device.coded)),
            ));
        }

        let mut of = sys::g_fmt(fd, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE)
            .map_err(ioctl(&path, "VIDIOC_G_FMT output"))?;
        {
            let pm = pix_mp(&mut of);
            pm.width = s.width;
            pm.height = s.height;
            pm.pixelformat = sys::PIX_FMT_YUV420;
            pm.field = sys::FIELD_NONE;
            pm.num_planes = 1;
            pm.plane_fmt[0].bytesperline = s.width;
        }
        sys::s_fmt(fd, &mut of).map_err(ioctl(&path, "VIDIOC_S_FMT output"))?;
        let (stride, plane_height) = {
            let pm = pix_mp(&mut of);
            let (w, h, f, n) = (pm.width, pm.height, pm.pixelformat, pm.num_planes);
            let bpl = pm.plane_fmt[0].bytesperline;
            if f != sys::PIX_FMT_YUV420 || n != 1 || w < s.width || h < s.height {
                return Err(V4l2Error::device(
                    &path,
                    format!(
                        "wants {}x{} {} in {n} plane(s) for {}x{} I420",
                        w,
                        h,
                        fourcc_name(f),
                        s.width,
                        s.height
                    ),
                ));
            }
            (bpl.max(w) as usize, h as usize)
        };

        // Rate and quality are best effort: not every encoder has every control.
        let fps = s.fps.round().max(1.0) as i32;
        let optional = [
            (sys::CID_MPEG_VIDEO_BITRATE, (s.bitrate_kbps * 1000) as i32),
            (sys::CID_MPEG_VIDEO_H264_I_PERIOD, fps),
            // SPS/PPS before every IDR, so each segment decodes alone.
            (sys::CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1),
            (sys::CID_JPEG_COMPRESSION_QUALITY, i32::from(s.jpeg_quality)),
        ];
        for (id, value) in optional {
            if let Err(e) = sys::s_ctrl(fd, id, value) {
                tracing::debug!(device = %path.display(), control = id, error = %e, "optional encoder control not set");
            }
        }
        let key_frames = if device.coded == sys::PIX_FMT_MJPEG || device.coded == sys::PIX_FMT_JPEG
        {
            KeyFrames::EveryPicture
        } else if sys::s_ctrl(fd, sys::CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1).is_ok() {
            KeyFrames::Forced
        } else {
            sys::s_ctrl(fd, sys::CID_MPEG_VIDEO_GOP_SIZE, 1).map_err(|_| {
                V4l2Error::device(
                    &path,
                    "has neither a force-key-frame nor a GOP size control: segments could not start on key frames",
                )
            })?;
            tracing::warn!(device = %path.display(), "encoder cannot force key frames: every picture is a key frame");
            KeyFrames::EveryPicture
        };

        let output = map_buffers(fd, &path, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, OUTPUT_BUFFERS)?;
        let capture = map_buffers(
            fd,
            &path,
            sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE,
            CAPTURE_BUFFERS,
        )?;
        for i in 0..capture.len() as u32 {
            queue_capture(fd, &path, i)?;
        }
        sys::streamon(fd, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE)
            .map_err(ioctl(&path, "VIDIOC_STREAMON output"))?;
        sys::streamon(fd, sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE)
            .map_err(ioctl(&path, "VIDIOC_STREAMON capture"))?;
        tracing::info!(
            device = %path.display(),
            card = %device.card,
            format = %fourcc_name(device.coded),
            width = s.width,
            height = s.height,
            key_frames = ?key_frames,
            "v4l2 encoder streaming"
        );
        let output_free = (0..output.len() as u32).rev().collect();
        Ok(V4l2Encoder {
            output,
            capture,
            output_free,
            device,
            key_frames,
            width: s.width,
            height: s.height,
            stride,
            plane_height,
            pictures: 0,
            file,
        })
    }

    pub fn device(&self) -> &EncoderDevice {
        &self.device
    }

    pub fn key_frames(&self) -> KeyFrames {
        self.key_frames
    }

    /// Encodes one I420 picture (tightly packed planes of `width`×`height`) and appends the
    /// encoded picture to `out`; returns whether the device flagged it as a key frame.
    pub fn encode_i420(
        &mut self,
        planes: (&[u8], &[u8], &[u8]),
        width: u32,
        height: u32,
        key: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, V4l2Error> {
        if (width, height) != (self.width, self.height) {
            return Err(V4l2Error::SizeChanged {
                got_w: width,
                got_h: height,
                want_w: self.width,
                want_h: self.height,
            });
        }
        let path = self.device.path.clone();
        let index = self.free_output()?;
        let used = self.fill(index, planes);
        let fd = self.file.as_fd();
        if key && self.key_frames == KeyFrames::Forced {
            sys::s_ctrl(fd, sys::CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
                .map_err(ioctl(&path, "force key frame"))?;
        }
        let mut b = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, index);
        b.buf.length = 1;
        b.buf.field = sys::FIELD_NONE;
        // The picture counter rides along as the timestamp, so the encoded picture that comes
        // back can be matched to the frame that went in.
        self.pictures += 1;
        b.buf.timestamp.tv_sec = (self.pictures / 1_000_000) as libc::time_t;
        b.buf.timestamp.tv_usec = (self.pictures % 1_000_000) as libc::suseconds_t;
        b.planes[0].bytesused = used as u32;
        b.planes[0].length = self.output[index as usize].as_slice().len() as u32;
        sys::qbuf(fd, &mut b).map_err(ioctl(&path, "VIDIOC_QBUF output"))?;

        // Wait for the encoded picture.
        loop {
            if !sys::poll(fd, libc::POLLIN, PICTURE_TIMEOUT_MS).map_err(ioctl(&path, "poll"))? {
                return Err(V4l2Error::Timeout(path));
            }
            let mut c = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, 0);
            c.buf.length = 1;
            match sys::dqbuf(fd, &mut c) {
                Ok(()) => {}
                Err(nix::Error::EAGAIN) => continue,
                Err(e) => return Err(ioctl(&path, "VIDIOC_DQBUF capture")(e)),
            }
            let i = c.buf.index;
            let p = c.planes[0];
            let data = self.capture[i as usize].as_slice();
            let start = (p.data_offset as usize).min(data.len());
            let end = (p.bytesused as usize).clamp(start, data.len());
            let error = c.buf.flags & sys::BUF_FLAG_ERROR != 0;
            let is_key = c.buf.flags & sys::BUF_FLAG_KEYFRAME != 0;
            if !error {
                out.extend_from_slice(&data[start..end]);
            }
            queue_capture(fd, &path, i)?;
            if error {
                return Err(V4l2Error::device(
                    &path,
                    "encoder flagged the picture as bad",
                ));
            }
            if end > start {
                return Ok(is_key || self.key_frames == KeyFrames::EveryPicture);
            }
        }
    }

    /// A free OUTPUT buffer: reclaims the ones the encoder has finished with.
    fn free_output(&mut self) -> Result<u32, V4l2Error> {
        let path = self.device.path.clone();
        let fd = self.file.as_fd();
        loop {
            let mut b = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, 0);
            b.buf.length = 1;
            match sys::dqbuf(fd, &mut b) {
                Ok(()) => self.output_free.push(b.buf.index),
                Err(nix::Error::EAGAIN) if !self.output_free.is_empty() => break,
                Err(nix::Error::EAGAIN) => {
                    if !sys::poll(fd, libc::POLLOUT, PICTURE_TIMEOUT_MS)
                        .map_err(ioctl(&path, "poll"))?
                    {
                        return Err(V4l2Error::Timeout(path));
                    }
                }
                Err(e) => return Err(ioctl(&path, "VIDIOC_DQBUF output")(e)),
            }
        }
        Ok(self.output_free.pop().expect("checked non-empty"))
    }

    /// Copies the picture into OUTPUT buffer `index` at the device's stride; returns bytes used.
    fn fill(&mut self, index: u32, (y, u, v): (&[u8], &[u8], &[u8])) -> usize {
        let (w, h) = (self.width as usize, self.height as usize);
        let (stride, ph) = (self.stride, self.plane_height);
        let dst = self.output[index as usize].as_mut_slice();
        let c_stride = stride / 2;
        let u_off = stride * ph;
        let v_off = u_off + c_stride * ph / 2;
        let used = v_off + c_stride * ph / 2;
        copy_plane(dst, 0, stride, y, w, h);
        copy_plane(dst, u_off, c_stride, u, w / 2, h / 2);
        copy_plane(dst, v_off, c_stride, v, w / 2, h / 2);
        used.min(dst.len())
    }
}

impl Drop for V4l2Encoder {
    fn drop(&mut self) {
        let fd = self.file.as_fd();
        let _ = sys::streamoff(fd, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE);
        let _ = sys::streamoff(fd, sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE);
    }
}

/// Copies `rows` rows of `width` bytes from a tightly packed plane into `dst` at `stride`.
fn copy_plane(dst: &mut [u8], offset: usize, stride: usize, src: &[u8], width: usize, rows: usize) {
    for r in 0..rows {
        let d = offset + r * stride;
        let s = r * width;
        if d + width > dst.len() || s + width > src.len() {
            break;
        }
        dst[d..d + width].copy_from_slice(&src[s..s + width]);
    }
}

fn pix_mp(f: &mut sys::Format) -> &mut sys::PixFormatMplane {
    sys::pix_mp(f)
}

fn map_buffers(
    fd: BorrowedFd<'_>,
    path: &Path,
    type_: u32,
    count: u32,
) -> Result<Vec<sys::Mapping>, V4l2Error> {
    let n = sys::reqbufs(fd, type_, count).map_err(ioctl(path, "VIDIOC_REQBUFS"))?;
    if n == 0 {
        return Err(V4l2Error::device(path, "granted no buffers"));
    }
    (0..n)
        .map(|i| {
            let mut b = sys::MplaneBuffer::new(type_, i);
            sys::querybuf(fd, &mut b).map_err(ioctl(path, "VIDIOC_QUERYBUF"))?;
            let p = b.planes[0];
            sys::Mapping::new(fd, p.length, p.m).map_err(ioctl(path, "mmap"))
        })
        .collect()
}

fn queue_capture(fd: BorrowedFd<'_>, path: &Path, index: u32) -> Result<(), V4l2Error> {
    let mut b = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_CAPTURE_MPLANE, index);
    b.buf.length = 1;
    sys::qbuf(fd, &mut b).map_err(ioctl(path, "VIDIOC_QBUF capture"))
}

/// The node's [`FrameEncoder`] on a V4L2 device: opened at the first frame (which gives the
/// size), so a take on a machine without the device fails at its first frame with a clear
/// reason rather than at start.
pub struct V4l2FrameEncoder {
    device: EncoderDevice,
    settings: EncoderSettings,
    open: Option<V4l2Encoder>,
}

impl V4l2FrameEncoder {
    pub fn new(device: EncoderDevice, settings: EncoderSettings) -> V4l2FrameEncoder {
        V4l2FrameEncoder {
            device,
            settings,
            open: None,
        }
    }
}

impl FrameEncoder for V4l2FrameEncoder {
    fn encode(&mut self, frame: &Frame, key: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.open.is_none() {
            self.open = Some(V4l2Encoder::open(
                self.device.clone(),
                V4l2Settings {
                    width: frame.width,
                    height: frame.height,
                    fps: self.settings.fps,
                    bitrate_kbps: self.settings.h264_bitrate_kbps,
                    jpeg_quality: self.settings.mjpeg_quality,
                },
            )?);
        }
        let enc = self.open.as_mut().expect("opened above");
        let got_key = enc.encode_i420(frame.planes(), frame.width, frame.height, key, out)?;
        if key && !got_key {
            return Err(EncodeError::NotKey);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_land_at_the_device_stride() {
        // 4x2 picture into a device with stride 8: Y rows at 0 and 8, U at 16, V at 20.
        let mut dst = vec![0u8; 24];
        copy_plane(&mut dst, 0, 8, &[1, 2, 3, 4, 5, 6, 7, 8], 4, 2);
        copy_plane(&mut dst, 16, 4, &[9, 10], 2, 1);
        copy_plane(&mut dst, 20, 4, &[11, 12], 2, 1);
        assert_eq!(
            dst,
            [1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8, 0, 0, 0, 0, 9, 10, 0, 0, 11, 12, 0, 0]
        );
    }

    #[test]
    fn fourcc_names_read_back() {
        assert_eq!(fourcc_name(sys::PIX_FMT_FWHT), "FWHT");
        assert_eq!(coded_formats(Codec::H264), &[sys::PIX_FMT_H264]);
    }

    #[test]
    fn probing_something_that_is_not_a_device_says_why() {
        let err = probe(Path::new("/nonexistent/video0"), &[sys::PIX_FMT_H264]).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }
}
