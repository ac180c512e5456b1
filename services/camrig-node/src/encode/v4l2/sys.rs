//! The slice of the V4L2 kernel ABI that the memory-to-memory encoder needs, for 64-bit
//! Linux (aarch64 Pi, x86_64 test vehicle): the `videodev2.h` structures as `#[repr(C)]`
//! mirrors, the ioctls on them, and mmap'ed buffer planes. Kept to what
//! [`crate::encode::v4l2`] uses, so the whole unsafe surface is in this one file; every
//! structure's size is checked at compile time against the kernel header's (the ioctl
//! numbers encode the size, so a wrong layout could never reach the kernel silently).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use camrig_protocol::naming::Codec;

pub const fn fourcc(code: &[u8; 4]) -> u32 {
    (code[0] as u32) | ((code[1] as u32) << 8) | ((code[2] as u32) << 16) | ((code[3] as u32) << 24)
}

/// `V4L2_PIX_FMT_YUV420` (I420).
pub const PIX_FMT_YUV420: u32 = fourcc(b"YU12");
pub const PIX_FMT_H264: u32 = fourcc(b"H264");
pub const PIX_FMT_MJPEG: u32 = fourcc(b"MJPG");
pub const PIX_FMT_JPEG: u32 = fourcc(b"JPEG");
/// vicodec's Fast Walsh Hadamard Transform codec (the kernel's test codec).
pub const PIX_FMT_FWHT: u32 = fourcc(b"FWHT");
/// `V4L2_PIX_FMT_NV12`: Y plane, then interleaved CbCr.
pub const PIX_FMT_NV12: u32 = fourcc(b"NV12");
/// `V4L2_PIX_FMT_YUYV`: packed 4:2:2.
pub const PIX_FMT_YUYV: u32 = fourcc(b"YUYV");
/// `V4L2_PIX_FMT_RGB24`: bytes R, G, B in memory (libcamera calls this `BGR888`).
pub const PIX_FMT_RGB24: u32 = fourcc(b"RGB3");
/// `V4L2_PIX_FMT_BGR24`: bytes B, G, R in memory (libcamera calls this `RGB888`).
pub const PIX_FMT_BGR24: u32 = fourcc(b"BGR3");

pub const BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
pub const BUF_TYPE_VIDEO_OUTPUT_MPLANE: u32 = 10;
pub const MEMORY_MMAP: u32 = 1;
/// Buffers are dma-bufs the application passes in by fd (import, no copy).
pub const MEMORY_DMABUF: u32 = 4;
pub const FIELD_NONE: u32 = 1;

pub const CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x0000_1000;
pub const CAP_VIDEO_OUTPUT_MPLANE: u32 = 0x0000_2000;
pub const CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
pub const CAP_STREAMING: u32 = 0x0400_0000;
pub const CAP_DEVICE_CAPS: u32 = 0x8000_0000;

pub const BUF_FLAG_KEYFRAME: u32 = 0x0000_0008;
pub const BUF_FLAG_ERROR: u32 = 0x0000_0040;

const CID_CODEC_BASE: u32 = 0x0099_0000 | 0x900;
pub const CID_MPEG_VIDEO_GOP_SIZE: u32 = CID_CODEC_BASE + 203;
pub const CID_MPEG_VIDEO_BITRATE: u32 = CID_CODEC_BASE + 207;
pub const CID_MPEG_VIDEO_REPEAT_SEQ_HEADER: u32 = CID_CODEC_BASE + 226;
pub const CID_MPEG_VIDEO_FORCE_KEY_FRAME: u32 = CID_CODEC_BASE + 229;
pub const CID_MPEG_VIDEO_H264_I_PERIOD: u32 = CID_CODEC_BASE + 358;
pub const CID_JPEG_COMPRESSION_QUALITY: u32 = 0x009d_0900 + 3;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FmtDesc {
    pub index: u32,
    pub type_: u32,
    pub flags: u32,
    pub description: [u8; 32],
    pub pixelformat: u32,
    pub mbus_code: u32,
    pub reserved: [u32; 3],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct PlanePixFormat {
    pub sizeimage: u32,
    pub bytesperline: u32,
    pub reserved: [u16; 6],
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct PixFormatMplane {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub colorspace: u32,
    pub plane_fmt: [PlanePixFormat; 8],
    pub num_planes: u8,
    pub flags: u8,
    pub ycbcr_enc: u8,
    pub quantization: u8,
    pub xfer_func: u8,
    pub reserved: [u8; 7],
}

/// `struct v4l2_format`: the union is 200 bytes, 8-aligned (it holds pointers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Format {
    pub type_: u32,
    pub fmt: FormatUnion,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub union FormatUnion {
    pub pix_mp: PixFormatMplane,
    pub raw_data: [u8; 200],
    _align: [u64; 25],
}

/// The multi-planar member of a format (the one for `*_MPLANE` buffer types, all this
/// module uses).
pub fn pix_mp(f: &mut Format) -> &mut PixFormatMplane {
    // SAFETY: every bit pattern is a valid PixFormatMplane (integers only), so reading the
    // union through this member is sound whatever the kernel wrote.
    unsafe { &mut f.fmt.pix_mp }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RequestBuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub timestamp: libc::timeval,
    pub timecode: Timecode,
    pub sequence: u32,
    pub memory: u32,
    /// For the multi-planar API: the `struct v4l2_plane *` array.
    pub planes: *mut Plane,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Plane {
    pub bytesused: u32,
    pub length: u32,
    /// `mem_offset` for MMAP buffers, the dma-buf fd for DMABUF ones (a union with userptr;
    /// both live in the low 32 bits on little-endian machines, see [`Plane::set_fd`]).
    pub m: u64,
    pub data_offset: u32,
    pub reserved: [u32; 11],
}

impl Plane {
    /// Stores a dma-buf fd in the `m` union (`__s32 fd`, at offset 0 of the union).
    pub fn set_fd(&mut self, fd: i32) {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&fd.to_ne_bytes());
        self.m = u64::from_ne_bytes(bytes);
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Control {
    pub id: u32,
    pub value: i32,
}

const _: () = {
    assert!(std::mem::size_of::<Capability>() == 104);
    assert!(std::mem::size_of::<FmtDesc>() == 64);
    assert!(std::mem::size_of::<PixFormatMplane>() == 192);
    assert!(std::mem::size_of::<Format>() == 208);
    assert!(std::mem::size_of::<RequestBuffers>() == 20);
    assert!(std::mem::size_of::<Buffer>() == 88);
    assert!(std::mem::size_of::<Plane>() == 64);
    assert!(std::mem::size_of::<Control>() == 8);
};

macro_rules! zeroed {
    ($t:ty) => {
        // SAFETY: every type here is plain old data (integers, arrays, a raw pointer) for
        // which all-zero bytes are a valid value, as the kernel ABI expects.
        unsafe { std::mem::zeroed::<$t>() }
    };
}

impl Default for Capability {
    fn default() -> Self {
        zeroed!(Capability)
    }
}
impl Default for FmtDesc {
    fn default() -> Self {
        zeroed!(FmtDesc)
    }
}
impl Default for Format {
    fn default() -> Self {
        zeroed!(Format)
    }
}
impl Default for Buffer {
    fn default() -> Self {
        zeroed!(Buffer)
    }
}
impl Default for Plane {
    fn default() -> Self {
        zeroed!(Plane)
    }
}

/// The V4L2 pixel formats a camrig codec can be carried as (the Pi's JPEG encoder says JPEG,
/// others MJPEG: both are a JPEG per frame).
pub fn coded_formats(codec: Codec) -> &'static [u32] {
    match codec {
        Codec::H264 => &[PIX_FMT_H264],
        Codec::Mjpeg => &[PIX_FMT_MJPEG, PIX_FMT_JPEG],
    }
}

/// `H264`, `FWHT`, ...
pub fn fourcc_name(f: u32) -> String {
    f.to_le_bytes().iter().map(|&b| b as char).collect()
}

mod raw {
    use super::*;
    nix::ioctl_read!(querycap, b'V', 0, Capability);
    nix::ioctl_readwrite!(enum_fmt, b'V', 2, FmtDesc);
    nix::ioctl_readwrite!(g_fmt, b'V', 4, Format);
    nix::ioctl_readwrite!(s_fmt, b'V', 5, Format);
    nix::ioctl_readwrite!(reqbufs, b'V', 8, RequestBuffers);
    nix::ioctl_readwrite!(querybuf, b'V', 9, Buffer);
    nix::ioctl_readwrite!(qbuf, b'V', 15, Buffer);
    nix::ioctl_readwrite!(dqbuf, b'V', 17, Buffer);
    nix::ioctl_write_ptr!(streamon, b'V', 18, libc::c_int);
    nix::ioctl_write_ptr!(streamoff, b'V', 19, libc::c_int);
    nix::ioctl_readwrite!(s_ctrl, b'V', 28, Control);
}

pub type Result<T> = std::result::Result<T, nix::Error>;

// SAFETY (all wrappers below): `fd` is an open V4L2 device for the borrow's lifetime, and each
// ioctl gets a pointer to a properly sized, initialised structure of the type its number
// encodes; the kernel only writes within that structure (and, for buffers, within the plane
// array `planes` points to, which the callers size to `length`).
pub fn querycap(fd: BorrowedFd<'_>) -> Result<Capability> {
    let mut c = Capability::default();
    unsafe { raw::querycap(fd.as_raw_fd(), &mut c) }?;
    Ok(c)
}

pub fn enum_fmt(fd: BorrowedFd<'_>, type_: u32, index: u32) -> Result<FmtDesc> {
    let mut d = FmtDesc {
        index,
        type_,
        ..FmtDesc::default()
    };
    unsafe { raw::enum_fmt(fd.as_raw_fd(), &mut d) }?;
    Ok(d)
}

pub fn g_fmt(fd: BorrowedFd<'_>, type_: u32) -> Result<Format> {
    let mut f = Format {
        type_,
        ..Format::default()
    };
    unsafe { raw::g_fmt(fd.as_raw_fd(), &mut f) }?;
    Ok(f)
}

pub fn s_fmt(fd: BorrowedFd<'_>, f: &mut Format) -> Result<()> {
    unsafe { raw::s_fmt(fd.as_raw_fd(), f) }.map(drop)
}

/// Asks for `count` buffers of `memory` (MEMORY_MMAP or MEMORY_DMABUF); 0 frees them all.
pub fn reqbufs(fd: BorrowedFd<'_>, type_: u32, memory: u32, count: u32) -> Result<u32> {
    let mut r = RequestBuffers {
        count,
        type_,
        memory,
        capabilities: 0,
        flags: 0,
        reserved: [0; 3],
    };
    unsafe { raw::reqbufs(fd.as_raw_fd(), &mut r) }?;
    Ok(r.count)
}

/// A `struct v4l2_buffer` with its plane array, for the multi-planar API.
pub struct MplaneBuffer {
    pub buf: Buffer,
    pub planes: [Plane; 8],
}

impl MplaneBuffer {
    pub fn new(type_: u32, index: u32) -> MplaneBuffer {
        MplaneBuffer {
            buf: Buffer {
                index,
                type_,
                memory: MEMORY_MMAP,
                length: 8,
                ..Buffer::default()
            },
            planes: [Plane::default(); 8],
        }
    }

    fn wire(&mut self) -> &mut Buffer {
        self.buf.planes = self.planes.as_mut_ptr();
        self.buf.length = self.buf.length.min(8);
        &mut self.buf
    }
}

pub fn querybuf(fd: BorrowedFd<'_>, b: &mut MplaneBuffer) -> Result<()> {
    unsafe { raw::querybuf(fd.as_raw_fd(), b.wire()) }.map(drop)
}

pub fn qbuf(fd: BorrowedFd<'_>, b: &mut MplaneBuffer) -> Result<()> {
    unsafe { raw::qbuf(fd.as_raw_fd(), b.wire()) }.map(drop)
}

pub fn dqbuf(fd: BorrowedFd<'_>, b: &mut MplaneBuffer) -> Result<()> {
    unsafe { raw::dqbuf(fd.as_raw_fd(), b.wire()) }.map(drop)
}

pub fn streamon(fd: BorrowedFd<'_>, type_: u32) -> Result<()> {
    let t = type_ as libc::c_int;
    unsafe { raw::streamon(fd.as_raw_fd(), &t) }.map(drop)
}

pub fn streamoff(fd: BorrowedFd<'_>, type_: u32) -> Result<()> {
    let t = type_ as libc::c_int;
    unsafe { raw::streamoff(fd.as_raw_fd(), &t) }.map(drop)
}

pub fn s_ctrl(fd: BorrowedFd<'_>, id: u32, value: i32) -> Result<()> {
    let mut c = Control { id, value };
    unsafe { raw::s_ctrl(fd.as_raw_fd(), &mut c) }.map(drop)
}

/// Waits until `fd` signals `events` (POLLIN: a CAPTURE buffer is done; POLLOUT: an OUTPUT
/// buffer is free) or `timeout_ms` passes; true if ready.
pub fn poll(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if n < 0 {
        return Err(nix::Error::last());
    }
    Ok(n > 0 && p.revents & events != 0)
}

/// One mmap'ed buffer plane, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is exclusively owned; access goes through &self/&mut self.
unsafe impl Send for Mapping {}

impl Mapping {
    pub fn new(fd: BorrowedFd<'_>, len: u32, offset: u64) -> Result<Mapping> {
        let len = len as usize;
        // SAFETY: a fresh shared mapping of the device's buffer at the offset QUERYBUF gave;
        // the kernel checks offset and length against the buffer.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(nix::Error::last());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mmap returned.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A NUL-padded C string field as text.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_matches_the_kernel_header() {
        // videodev2.h: V4L2_PIX_FMT_H264 = v4l2_fourcc('H','2','6','4') = 0x34363248.
        assert_eq!(PIX_FMT_H264, 0x3436_3248);
        assert_eq!(PIX_FMT_YUV420, 0x3231_5559);
        // V4L2_PIX_FMT_RGB24 = v4l2_fourcc('R','G','B','3').
        assert_eq!(PIX_FMT_RGB24, 0x3342_4752);
    }

    #[test]
    fn a_dma_buf_fd_lands_in_the_low_word_of_the_plane_union() {
        let mut p = Plane::default();
        p.set_fd(7);
        assert_eq!(p.m & 0xffff_ffff, 7);
        p.set_fd(-1);
        assert_eq!(p.m, 0xffff_ffff);
    }

    #[test]
    fn control_ids_match_the_kernel_header() {
        assert_eq!(CID_MPEG_VIDEO_FORCE_KEY_FRAME, 0x0099_09e5);
        assert_eq!(CID_MPEG_VIDEO_GOP_SIZE, 0x0099_09cb);
    }

    #[test]
    fn c_strings_stop_at_nul() {
        assert_eq!(c_str(b"vicodec\0\0\0"), "vicodec");
        assert_eq!(c_str(b"abc"), "abc");
    }
}
