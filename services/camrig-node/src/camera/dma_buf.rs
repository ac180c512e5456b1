//! CPU access to DMA-BUF memory (camera frame buffers), bracketed by `DMA_BUF_IOCTL_SYNC`:
//! on machines whose camera DMA is not cache-coherent (the Pi's ISP), reading a buffer without
//! SYNC_START may see stale cache lines, and SYNC_END hands it back to the device.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

const SYNC_READ: u64 = 1 << 0;
const SYNC_START: u64 = 0;
const SYNC_END: u64 = 1 << 2;

#[repr(C)]
struct DmaBufSync {
    flags: u64,
}

nix::ioctl_write_ptr!(dma_buf_ioctl_sync, b'b', 0, DmaBufSync);

fn sync(fd: RawFd, flags: u64) -> nix::Result<()> {
    let s = DmaBufSync { flags };
    // SAFETY: the ioctl reads one u64 from a live struct; a non-dmabuf fd just fails (ENOTTY).
    unsafe { dma_buf_ioctl_sync(fd, &s) }.map(drop)
}

/// Read access to a set of dma-bufs for as long as the guard lives.
pub struct ReadAccess {
    fds: Vec<RawFd>,
}

impl ReadAccess {
    /// Starts CPU read access on every distinct fd. An fd that is not a dma-buf (some
    /// pipelines hand out memfds) needs no sync and is skipped.
    pub fn begin(fds: impl IntoIterator<Item = RawFd>) -> ReadAccess {
        let mut started = Vec::new();
        for fd in fds {
            if started.contains(&fd) {
                continue;
            }
            if sync(fd, SYNC_START | SYNC_READ).is_ok() {
                started.push(fd);
            }
        }
        ReadAccess { fds: started }
    }

    /// How many buffers were synchronised (0 when none were dma-bufs).
    #[cfg(test)]
    pub fn synced(&self) -> usize {
        self.fds.len()
    }
}

impl Drop for ReadAccess {
    fn drop(&mut self) {
        for &fd in &self.fds {
            let _ = sync(fd, SYNC_END | SYNC_READ);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn files_that_are_not_dma_bufs_are_skipped() {
        let f = tempfile::tempfile().unwrap();
        let a = ReadAccess::begin([f.as_raw_fd(), f.as_raw_fd()]);
        assert_eq!(a.synced(), 0);
    }
}
