//! Finding the V4L2 memory-to-memory encoder by what it can do (a multi-planar M2M node whose
//! CAPTURE queue offers the coded format and whose OUTPUT queue takes I420), never by a fixed
//! path; and opening a device node.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::V4l2Error;
use super::sys;

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

pub(super) fn open(path: &Path) -> Result<File, V4l2Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| V4l2Error::device(path, format!("cannot open: {e}")))
}

pub(super) fn ioctl<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl Fn(nix::Error) -> V4l2Error + 'a {
    move |errno| V4l2Error::Ioctl {
        device: path.to_path_buf(),
        what,
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probing_something_that_is_not_a_device_says_why() {
        let err = probe(Path::new("/nonexistent/video0"), &[sys::PIX_FMT_H264]).unwrap_err();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }
}
