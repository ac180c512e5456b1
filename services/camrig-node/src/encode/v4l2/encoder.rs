//! [`V4l2Encoder`]: an opened, streaming M2M encoder, fed by dma-buf import or by copying
//! I420 into its own buffers (see the [module above](super) for the two paths).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::Path;

use super::device::{ioctl, open, EncoderDevice};
use super::error::{V4l2Error, PICTURE_TIMEOUT_MS};
use super::import::{import_plan, layout_mismatch, InputPath, RawLayout};
use super::sys::{self, fourcc_name};
use crate::camera::DmaBufPlane;

const OUTPUT_BUFFERS: u32 = 4;
const CAPTURE_BUFFERS: u32 = 4;

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
}
