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

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use camrig_protocol::naming::Codec;

use crate::capture::{Frame, FramePixels, PixelPath};
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

/// How the camera lays out its buffers: what the OUTPUT queue is set to when it imports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLayout {
    /// V4L2 pixel format, e.g. [`sys::PIX_FMT_RGB24`] for libcamera's `BGR888`.
    pub fourcc: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the first plane.
    pub stride: u32,
}

/// One plane of a camera buffer: the dma-buf holding it, where in it the plane starts and
/// how long it is (libcamera's `FrameBuffer::Plane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBufPlane {
    pub fd: RawFd,
    pub offset: u32,
    pub length: u32,
}

/// How pictures reach the encoder's OUTPUT queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputPath {
    /// The camera's dma-buf is queued as it is (`V4L2_MEMORY_DMABUF`): no CPU copy.
    DmaBufImport,
    /// I420 copied into the device's own mmap'ed buffers; `why` says why not an import.
    CopyI420 { why: String },
}

impl InputPath {
    /// `dma-buf import` or `copy (why)`, for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            InputPath::DmaBufImport => "dma-buf import".into(),
            InputPath::CopyI420 { why } => format!("copy ({why})"),
        }
    }
}

/// Why the OUTPUT format the device settled on cannot carry the camera's buffers as they
/// are, or None when it can (same format, size, single plane, and line stride).
pub fn layout_mismatch(
    want: &RawLayout,
    got_fourcc: u32,
    got_width: u32,
    got_height: u32,
    got_planes: u8,
    got_stride: u32,
) -> Option<String> {
    if got_fourcc != want.fourcc {
        return Some(format!(
            "the encoder does not take {} (it offered {})",
            fourcc_name(want.fourcc),
            fourcc_name(got_fourcc)
        ));
    }
    if (got_width, got_height) != (want.width, want.height) {
        return Some(format!(
            "the encoder wants {got_width}x{got_height} for a {}x{} camera",
            want.width, want.height
        ));
    }
    if got_planes != 1 {
        return Some(format!(
            "the encoder wants {got_planes} memory planes, the camera gives one buffer"
        ));
    }
    if got_stride != want.stride {
        return Some(format!(
            "the encoder wants lines of {got_stride} bytes, the camera's are {}",
            want.stride
        ));
    }
    None
}

/// The dma-buf and the byte count to queue for a camera buffer whose planes are `planes`,
/// when the encoder reads `sizeimage` bytes from one buffer: every plane must live in the
/// same dma-buf, the first at offset 0, and together they must cover `sizeimage` (a
/// multi-planar camera buffer is then laid out as the encoder's single-buffer format is,
/// which [`layout_mismatch`] checked through the stride).
pub fn import_plan(planes: &[DmaBufPlane], sizeimage: u32) -> Result<(RawFd, u32), String> {
    let first = planes.first().ok_or("the camera buffer has no planes")?;
    if first.offset != 0 {
        return Err(format!(
            "the camera's picture starts at offset {} in its dma-buf",
            first.offset
        ));
    }
    if planes.iter().any(|p| p.fd != first.fd) {
        return Err("the camera's planes are in separate dma-bufs".into());
    }
    let extent = planes
        .iter()
        .map(|p| u64::from(p.offset) + u64::from(p.length))
        .max()
        .unwrap_or(0);
    if extent < u64::from(sizeimage) {
        return Err(format!(
            "the camera's buffer holds {extent} bytes, the encoder reads {sizeimage}"
        ));
    }
    Ok((first.fd, extent.min(u64::from(u32::MAX)) as u32))
}

/// What the OUTPUT queue is set up for.
#[derive(Clone, Copy)]
enum Raw {
    I420,
    Import(RawLayout),
}

/// An opened, streaming M2M encoder.
pub struct V4l2Encoder {
    // Mappings before the file: fields drop in order, and the buffers must be unmapped
    // before the device is closed.
    /// The copy path's OUTPUT buffers (empty when importing).
    output: Vec<sys::Mapping>,
    capture: Vec<sys::Mapping>,
    output_free: Vec<u32>,
    /// Import path: which dma-buf each OUTPUT slot was last given, so a camera buffer keeps
    /// its slot (the kernel keeps the attachment) instead of being re-attached every time.
    slots: Vec<Option<RawFd>>,
    next_slot: usize,
    /// Bytes the device reads per OUTPUT picture.
    sizeimage: u32,
    input: InputPath,
    device: EncoderDevice,
    settings: V4l2Settings,
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
    /// The copy path: pictures come as I420 in memory ([`V4l2Encoder::encode_i420`]).
    pub fn open(device: EncoderDevice, s: V4l2Settings) -> Result<V4l2Encoder, V4l2Error> {
        Self::open_copy(
            device,
            s,
            "pictures come from memory, not from camera dma-bufs".into(),
        )
    }

    /// The copy path, with the reason it is not an import (logged and kept in
    /// [`V4l2Encoder::input`]).
    pub fn open_copy(
        device: EncoderDevice,
        s: V4l2Settings,
        why: String,
    ) -> Result<V4l2Encoder, V4l2Error> {
        Self::setup(device, s, Raw::I420, InputPath::CopyI420 { why })
    }

    /// The import path for a camera whose buffers are laid out as `layout`
    /// ([`V4l2Encoder::encode_dmabuf`]); if the device refuses (format, stride, size, or no
    /// `V4L2_MEMORY_DMABUF` on its OUTPUT queue), the copy path instead, saying why once in
    /// the log and in [`V4l2Encoder::input`].
    pub fn open_import(
        device: EncoderDevice,
        s: V4l2Settings,
        layout: RawLayout,
    ) -> Result<V4l2Encoder, V4l2Error> {
        match Self::setup(
            device.clone(),
            s,
            Raw::Import(layout),
            InputPath::DmaBufImport,
        ) {
            Ok(enc) => Ok(enc),
            Err(e) => {
                let why = match e {
                    V4l2Error::ImportRefused { reason, .. } => reason,
                    other => other.to_string(),
                };
                let path = device.path.clone();
                let enc = Self::setup(device, s, Raw::I420, InputPath::CopyI420 { why })?;
                tracing::warn!(device = %path.display(), input = %enc.input.describe(), "encoder cannot import the camera's dma-bufs: frames are copied");
                Ok(enc)
            }
        }
    }

    /// Gives up importing (a QBUF of a camera buffer was refused): reopens the device on the
    /// copy path, saying why once in the log and in [`V4l2Encoder::input`].
    pub fn fall_back_to_copy(&mut self, why: String) -> Result<(), V4l2Error> {
        let device = self.device.clone();
        let path = device.path.clone();
        // A second context on the device while the first still exists: M2M devices give
        // every open file its own.
        *self = Self::setup(
            device,
            self.settings,
            Raw::I420,
            InputPath::CopyI420 { why },
        )?;
        tracing::warn!(device = %path.display(), input = %self.input.describe(), "encoder refused a camera dma-buf: frames are copied from now on");
        Ok(())
    }

    fn setup(
        device: EncoderDevice,
        s: V4l2Settings,
        raw: Raw,
        input: InputPath,
    ) -> Result<V4l2Encoder, V4l2Error> {
        let path = device.path.clone();
        let file = open(&path)?;
        let fd = file.as_fd();
        let refused = |reason: String| V4l2Error::ImportRefused {
            device: path.clone(),
            reason,
        };

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

        let (fourcc, stride) = match raw {
            Raw::I420 => (sys::PIX_FMT_YUV420, s.width),
            Raw::Import(l) => (l.fourcc, l.stride),
        };
        let mut of = sys::g_fmt(fd, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE)
            .map_err(ioctl(&path, "VIDIOC_G_FMT output"))?;
        {
            let pm = pix_mp(&mut of);
            pm.width = s.width;
            pm.height = s.height;
            pm.pixelformat = fourcc;
            pm.field = sys::FIELD_NONE;
            pm.num_planes = 1;
            pm.plane_fmt[0].bytesperline = stride;
        }
        if let Err(e) = sys::s_fmt(fd, &mut of) {
            return Err(match raw {
                Raw::I420 => ioctl(&path, "VIDIOC_S_FMT output")(e),
                Raw::Import(l) => refused(format!(
                    "VIDIOC_S_FMT output {}: {e}",
                    fourcc_name(l.fourcc)
                )),
            });
        }
        let (stride, plane_height, sizeimage) = {
            let pm = pix_mp(&mut of);
            let (w, h, f, n) = (pm.width, pm.height, pm.pixelformat, pm.num_planes);
            let bpl = pm.plane_fmt[0].bytesperline;
            let sizeimage = pm.plane_fmt[0].sizeimage;
            match raw {
                Raw::I420 => {
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
                }
                Raw::Import(l) => {
                    if let Some(why) = layout_mismatch(&l, f, w, h, n, bpl) {
                        return Err(refused(why));
                    }
                }
            }
            (bpl.max(w) as usize, h as usize, sizeimage)
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

        let (output, slots) = match raw {
            Raw::I420 => (
                map_buffers(fd, &path, sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, OUTPUT_BUFFERS)?,
                Vec::new(),
            ),
            Raw::Import(_) => {
                let n = sys::reqbufs(
                    fd,
                    sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE,
                    sys::MEMORY_DMABUF,
                    OUTPUT_BUFFERS,
                )
                .map_err(|e| refused(format!("VIDIOC_REQBUFS with V4L2_MEMORY_DMABUF: {e}")))?;
                if n == 0 {
                    return Err(refused("granted no dma-buf OUTPUT buffers".into()));
                }
                (Vec::new(), vec![None; n as usize])
            }
        };
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
            input_format = %fourcc_name(fourcc),
            width = s.width,
            height = s.height,
            key_frames = ?key_frames,
            input = %input.describe(),
            "v4l2 encoder streaming"
        );
        let output_free = (0..output.len() as u32).rev().collect();
        Ok(V4l2Encoder {
            output,
            capture,
            output_free,
            slots,
            next_slot: 0,
            sizeimage,
            input,
            device,
            settings: s,
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

    /// How pictures reach the device (import, or copy and why).
    pub fn input(&self) -> &InputPath {
        &self.input
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
        if self.input == InputPath::DmaBufImport {
            return Err(V4l2Error::device(
                &self.device.path,
                "set up to import camera dma-bufs, given an I420 picture in memory",
            ));
        }
        let path = self.device.path.clone();
        let index = self.free_output()?;
        let used = self.fill(index, planes);
        self.force_key(key)?;
        let mut b = self.output_buffer(index, sys::MEMORY_MMAP);
        b.planes[0].bytesused = used as u32;
        b.planes[0].length = self.output[index as usize].as_slice().len() as u32;
        sys::qbuf(self.file.as_fd(), &mut b).map_err(ioctl(&path, "VIDIOC_QBUF output"))?;
        self.receive(out)
    }

    /// Encodes one camera buffer in place (import path): its dma-buf is queued on the OUTPUT
    /// queue, the encoded picture appended to `out`, and the buffer dequeued again before this
    /// returns, so the caller may hand it back to the camera as soon as it has the result.
    /// Returns whether the picture is a key frame. [`V4l2Error::ImportRefused`] means the
    /// device (or the buffer's layout) does not allow the import: the caller falls back with
    /// [`V4l2Encoder::fall_back_to_copy`] and copies this picture.
    pub fn encode_dmabuf(
        &mut self,
        planes: &[DmaBufPlane],
        key: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, V4l2Error> {
        let path = self.device.path.clone();
        if self.input != InputPath::DmaBufImport {
            return Err(V4l2Error::device(
                &path,
                "set up for I420 copies, given a camera dma-buf",
            ));
        }
        let refused = |reason: String| V4l2Error::ImportRefused {
            device: path.clone(),
            reason,
        };
        let (dmabuf, length) = import_plan(planes, self.sizeimage).map_err(&refused)?;
        let index = self.slot_for(dmabuf);
        self.force_key(key)?;
        let mut b = self.output_buffer(index, sys::MEMORY_DMABUF);
        b.planes[0].set_fd(dmabuf);
        b.planes[0].length = length;
        b.planes[0].bytesused = self.sizeimage;
        if let Err(e) = sys::qbuf(self.file.as_fd(), &mut b) {
            self.slots[index as usize] = None;
            return Err(refused(format!("VIDIOC_QBUF of a camera dma-buf: {e}")));
        }
        let result = self.receive(out);
        // The camera buffer goes back to the camera only once the device has let go of it.
        let released = self.release_output(index);
        let is_key = result?;
        released?;
        Ok(is_key)
    }

    /// The OUTPUT slot for a dma-buf: the one it had before, else the next in turn.
    fn slot_for(&mut self, dmabuf: RawFd) -> u32 {
        if let Some(i) = self.slots.iter().position(|s| *s == Some(dmabuf)) {
            return i as u32;
        }
        let i = self.next_slot % self.slots.len();
        self.next_slot = i + 1;
        self.slots[i] = Some(dmabuf);
        i as u32
    }

    fn force_key(&self, key: bool) -> Result<(), V4l2Error> {
        if key && self.key_frames == KeyFrames::Forced {
            sys::s_ctrl(self.file.as_fd(), sys::CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
                .map_err(ioctl(&self.device.path, "force key frame"))?;
        }
        Ok(())
    }

    /// An OUTPUT buffer description for slot `index`, stamped with the picture counter.
    fn output_buffer(&mut self, index: u32, memory: u32) -> sys::MplaneBuffer {
        let mut b = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, index);
        b.buf.memory = memory;
        b.buf.length = 1;
        b.buf.field = sys::FIELD_NONE;
        // The picture counter rides along as the timestamp, so the encoded picture that comes
        // back can be matched to the frame that went in.
        self.pictures += 1;
        b.buf.timestamp.tv_sec = (self.pictures / 1_000_000) as libc::time_t;
        b.buf.timestamp.tv_usec = (self.pictures % 1_000_000) as libc::suseconds_t;
        b
    }

    /// Waits for the encoded picture and appends it to `out`; whether it is a key frame.
    fn receive(&mut self, out: &mut Vec<u8>) -> Result<bool, V4l2Error> {
        let path = self.device.path.clone();
        let fd = self.file.as_fd();
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

    /// Import path: dequeues OUTPUT buffers until slot `index` is back from the device.
    fn release_output(&mut self, index: u32) -> Result<(), V4l2Error> {
        let path = self.device.path.clone();
        let fd = self.file.as_fd();
        loop {
            let mut b = sys::MplaneBuffer::new(sys::BUF_TYPE_VIDEO_OUTPUT_MPLANE, 0);
            b.buf.memory = sys::MEMORY_DMABUF;
            b.buf.length = 1;
            match sys::dqbuf(fd, &mut b) {
                Ok(()) if b.buf.index == index => return Ok(()),
                Ok(()) => {}
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
    let n =
        sys::reqbufs(fd, type_, sys::MEMORY_MMAP, count).map_err(ioctl(path, "VIDIOC_REQBUFS"))?;
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
    fn encode(
        &mut self,
        frame: &Frame,
        key: bool,
        out: &mut Vec<u8>,
    ) -> Result<PixelPath, EncodeError> {
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
                        fourcc: buf.layout.v4l2_fourcc(),
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
fn keyed(key: bool, got_key: bool, path: PixelPath) -> Result<PixelPath, EncodeError> {
    if key && !got_key {
        return Err(EncodeError::NotKey);
    }
    Ok(path)
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

    const VIMC: RawLayout = RawLayout {
        fourcc: sys::PIX_FMT_RGB24,
        width: 160,
        height: 120,
        stride: 480,
    };

    #[test]
    fn a_matching_output_format_allows_import() {
        assert_eq!(
            layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 1, 480),
            None
        );
    }

    #[test]
    fn output_format_mismatches_say_what_differs() {
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_YUV420, 160, 120, 1, 160).unwrap();
        assert!(
            why.contains("does not take RGB3") && why.contains("YU12"),
            "{why}"
        );
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 1, 512).unwrap();
        assert!(why.contains("512") && why.contains("480"), "{why}");
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 128, 1, 480).unwrap();
        assert!(why.contains("160x128"), "{why}");
        let why = layout_mismatch(&VIMC, sys::PIX_FMT_RGB24, 160, 120, 3, 480).unwrap();
        assert!(why.contains("3 memory planes"), "{why}");
    }

    #[test]
    fn one_dma_buf_covering_the_picture_is_imported_whole() {
        let plane = |fd, offset, length| DmaBufPlane { fd, offset, length };
        assert_eq!(import_plan(&[plane(9, 0, 57_600)], 57_600), Ok((9, 57_600)));
        // YUV420 as three planes of one dma-buf (the Pi's ISP): queued as one buffer.
        let yuv = [
            plane(5, 0, 4096),
            plane(5, 4096, 1024),
            plane(5, 5120, 1024),
        ];
        assert_eq!(import_plan(&yuv, 6144), Ok((5, 6144)));
    }

    #[test]
    fn buffers_the_encoder_cannot_read_in_place_are_refused_with_the_reason() {
        let plane = |fd, offset, length| DmaBufPlane { fd, offset, length };
        let err = import_plan(&[plane(9, 0, 1000)], 57_600).unwrap_err();
        assert!(err.contains("1000") && err.contains("57600"), "{err}");
        let err = import_plan(&[plane(9, 64, 57_600)], 57_600).unwrap_err();
        assert!(err.contains("offset 64"), "{err}");
        let err = import_plan(&[plane(5, 0, 4096), plane(6, 0, 2048)], 6144).unwrap_err();
        assert!(err.contains("separate dma-bufs"), "{err}");
        assert!(import_plan(&[], 1).is_err());
    }

    #[test]
    fn input_paths_describe_themselves() {
        assert_eq!(InputPath::DmaBufImport.describe(), "dma-buf import");
        let copy = InputPath::CopyI420 {
            why: "the encoder does not take RGB3".into(),
        };
        assert_eq!(copy.describe(), "copy (the encoder does not take RGB3)");
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
