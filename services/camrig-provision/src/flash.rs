//! `flash IMAGE DEVICE`: writes a disk image to a card, then reads it back and compares
//! sha256 sums, so a card that silently drops writes (fake capacity, worn out) is caught at
//! the bench instead of during a take.
//!
//! Before anything is opened for writing, the target is checked: it must be a whole-disk
//! block device (a regular file only with `allow_file`, for tests and for making copies),
//! not mounted, not held by device-mapper/RAID, not swap, not the disk this system runs
//! from, and large enough. The device is then opened with `O_EXCL`, which the kernel
//! refuses for a block device that is mounted or claimed: a second line of defence.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use nix::fcntl::{posix_fadvise, OFlag, PosixFadviseAdvice};
use sha2::{Digest, Sha256};

use crate::block_device::{self, BlockDevice, BlockDeviceError, SystemView};

const CHUNK: usize = 4 << 20;

#[derive(Debug, Clone, Default)]
pub struct FlashOptions {
    /// Accept a regular file as the target (tests, copies). Never needed for a card.
    pub allow_file: bool,
    /// Draw progress bars (only shown on a terminal in any case).
    pub progress: bool,
}

/// What was written and how long it took.
#[derive(Debug, Clone)]
pub struct FlashReport {
    pub bytes: u64,
    pub sha256: String,
    pub write_time: Duration,
    pub verify_time: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("cannot read image {}: {source}", path.display())]
    Image { path: PathBuf, source: io::Error },
    #[error("image {} is empty or not a regular file; give the raw .img that image/build made", path.display())]
    NotAnImage { path: PathBuf },
    #[error(
        "image {} is compressed ({ext}); flash the raw image next to it, or decompress it first (like `{tool} -dk {}`)",
        path.display(), path.display()
    )]
    Compressed {
        path: PathBuf,
        ext: String,
        tool: &'static str,
    },
    #[error(
        "{} is a regular file, not a block device; give the card's device (like /dev/sdb or /dev/mmcblk0, see `lsblk`), or --allow-file to write an image file",
        path.display()
    )]
    RegularFile { path: PathBuf },
    #[error("{} is neither a block device nor a regular file; give the card's device (see `lsblk`)", path.display())]
    NotADevice { path: PathBuf },
    #[error(transparent)]
    Device(#[from] BlockDeviceError),
    #[error(
        "{} is a partition of {disk}; give the whole card, /dev/{disk}",
        path.display()
    )]
    Partition { path: PathBuf, disk: String },
    #[error("refusing to write {}: {}", path.display(), reasons.join("; "))]
    InUse { path: PathBuf, reasons: Vec<String> },
    #[error("cannot read the system's mounts to check {}: {source}", path.display())]
    SystemView { path: PathBuf, source: io::Error },
    #[error(
        "{} holds {device_size} bytes, the image needs {image_size}; use a larger card",
        path.display()
    )]
    TooSmall {
        path: PathBuf,
        device_size: u64,
        image_size: u64,
    },
    #[error("cannot open {} for writing: {source}{hint}", path.display())]
    Open {
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("writing {} failed after {written} bytes: {source}", path.display())]
    Write {
        path: PathBuf,
        written: u64,
        source: io::Error,
    },
    #[error("reading {} back failed: {source}", path.display())]
    ReadBack { path: PathBuf, source: io::Error },
    #[error(
        "{} does not hold what was written (sha256 {actual}, image {expected}); the card is faulty or counterfeit: use another one",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// What kind of target the checks found.
#[derive(Debug, Clone)]
pub enum Target {
    Card(BlockDevice),
    File(PathBuf),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Card(d) => format!(
                "{} ({}, {:.1} GB{})",
                d.path.display(),
                d.name,
                d.size as f64 / 1e9,
                if d.model.is_empty() {
                    String::new()
                } else {
                    format!(", {}", d.model)
                }
            ),
            Target::File(p) => format!("{} (a regular file)", p.display()),
        }
    }
}

/// Checks the image: a non-empty regular file, not compressed. Returns its size.
pub fn check_image(image: &Path) -> Result<u64, FlashError> {
    for (ext, tool) in [
        ("xz", "xz"),
        ("zst", "zstd"),
        ("gz", "gzip"),
        ("bz2", "bzip2"),
    ] {
        if image.extension().is_some_and(|e| e == ext) {
            return Err(FlashError::Compressed {
                path: image.to_owned(),
                ext: format!(".{ext}"),
                tool,
            });
        }
    }
    let meta = std::fs::metadata(image).map_err(|source| FlashError::Image {
        path: image.to_owned(),
        source,
    })?;
    if !meta.is_file() || meta.len() == 0 {
        return Err(FlashError::NotAnImage {
            path: image.to_owned(),
        });
    }
    Ok(meta.len())
}

/// Decides whether `device` may be written with an image of `image_size` bytes.
pub fn check_target(
    device: &Path,
    image_size: u64,
    opts: &FlashOptions,
) -> Result<Target, FlashError> {
    let meta = match std::fs::metadata(device) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound && opts.allow_file => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BlockDeviceError::Missing {
                path: device.to_owned(),
            }
            .into())
        }
        Err(source) => {
            return Err(BlockDeviceError::Io {
                path: device.to_owned(),
                source,
            }
            .into())
        }
    };
    match meta {
        None => Ok(Target::File(device.to_owned())),
        Some(m) if m.is_file() => {
            if opts.allow_file {
                Ok(Target::File(device.to_owned()))
            } else {
                Err(FlashError::RegularFile {
                    path: device.to_owned(),
                })
            }
        }
        Some(m) if m.file_type().is_block_device() => {
            let dev = block_device::inspect(device)?;
            let system = SystemView::read().map_err(|source| FlashError::SystemView {
                path: device.to_owned(),
                source,
            })?;
            let reasons = block_device::refusals(&dev, &system);
            if !reasons.is_empty() {
                return Err(FlashError::InUse {
                    path: device.to_owned(),
                    reasons,
                });
            }
            if dev.is_partition {
                return Err(FlashError::Partition {
                    path: device.to_owned(),
                    disk: dev.disk,
                });
            }
            if dev.size < image_size {
                return Err(FlashError::TooSmall {
                    path: device.to_owned(),
                    device_size: dev.size,
                    image_size,
                });
            }
            Ok(Target::Card(dev))
        }
        Some(_) => Err(FlashError::NotADevice {
            path: device.to_owned(),
        }),
    }
}

fn bar(show: bool, len: u64, msg: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:7} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(msg);
    bar
}

/// Writes `image` to `target` (already checked by [`check_target`]) and verifies it.
pub fn write_and_verify(
    image: &Path,
    target: &Target,
    opts: &FlashOptions,
) -> Result<FlashReport, FlashError> {
    let image_err = |source| FlashError::Image {
        path: image.to_owned(),
        source,
    };
    let mut src = File::open(image).map_err(image_err)?;
    let size = src.metadata().map_err(image_err)?.len();
    let (path, mut out) = match target {
        Target::Card(dev) => {
            // O_EXCL on a block device: the kernel refuses it while the device is mounted
            // or claimed, even if the checks above missed a way it is in use.
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(OFlag::O_EXCL.bits())
                .open(&dev.path)
                .map_err(|source| FlashError::Open {
                    path: dev.path.clone(),
                    hint: if source.raw_os_error() == Some(nix::libc::EBUSY) {
                        "; it is in use (mounted or held by another device)"
                    } else if source.kind() == io::ErrorKind::PermissionDenied {
                        "; run as root (sudo)"
                    } else {
                        ""
                    },
                    source,
                })?;
            (dev.path.clone(), f)
        }
        Target::File(p) => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|source| FlashError::Open {
                    path: p.clone(),
                    hint: "",
                    source,
                })?;
            (p.clone(), f)
        }
    };

    let started = Instant::now();
    let progress = bar(opts.progress, size, "write");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    let write_err = |written, source| FlashError::Write {
        path: path.clone(),
        written,
        source,
    };
    loop {
        let n = read_full(&mut src, &mut buf).map_err(image_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| write_err(written, e))?;
        written += n as u64;
        progress.set_position(written);
    }
    out.sync_all().map_err(|e| write_err(written, e))?;
    // Drop the written pages from the cache so the read-back comes from the card itself.
    let _ = posix_fadvise(
        out.as_raw_fd(),
        0,
        0,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    drop(out);
    progress.finish_and_clear();
    let write_time = started.elapsed();
    let expected = hex::encode(hasher.finalize());

    let started = Instant::now();
    let progress = bar(opts.progress, written, "verify");
    let read_err = |source| FlashError::ReadBack {
        path: path.clone(),
        source,
    };
    let mut back = File::open(&path).map_err(read_err)?;
    let _ = posix_fadvise(
        back.as_raw_fd(),
        0,
        0,
        PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut hasher = Sha256::new();
    let mut remaining = written;
    while remaining > 0 {
        let want = remaining.min(CHUNK as u64) as usize;
        let n = read_full(&mut back, &mut buf[..want]).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        remaining -= n as u64;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if remaining != 0 || actual != expected {
        return Err(FlashError::Mismatch {
            path,
            expected,
            actual,
        });
    }
    Ok(FlashReport {
        bytes: written,
        sha256: expected,
        write_time,
        verify_time: started.elapsed(),
    })
}

/// Reads until `buf` is full or the end of the input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_images_are_refused_with_the_tool_to_use() {
        let err = check_image(Path::new("/x/camrig-node-amd64.img.zst")).unwrap_err();
        assert!(err.to_string().contains("zstd -dk"), "{err}");
    }

    #[test]
    fn read_full_fills_across_short_reads() {
        let data = [7u8; 10];
        let mut r = io::Cursor::new(&data[..]).chain(io::Cursor::new(&data[..]));
        let mut buf = [0u8; 15];
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 15);
        assert_eq!(read_full(&mut r, &mut buf).unwrap(), 5);
    }
}
