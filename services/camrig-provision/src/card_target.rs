//! Putting a device's `camrig.toml` where the card will read it: into a finished per-card
//! image (a copy of the base image with the identity in its FAT partition), or onto an
//! already-flashed card — its block device (whole card or boot partition), an image file,
//! or its boot partition mounted as a directory. Nothing is mounted by this tool.

use std::path::{Path, PathBuf};

use crate::block_device::{self, BlockDeviceError, SystemView};
use crate::fat_image::{self, FatError};

/// The identity's file name in the root of the boot partition.
pub const IDENTITY_FILE: &str = "camrig.toml";
/// The camera wiring include beside it (`config.txt` ends with `include camrig-cameras.txt`).
pub use camrig_identity::camera_wiring::BOOT_CONFIG_FILE;

/// What a card's identity puts on its boot partition: camrig.toml and the camera wiring
/// include made from it. Both are written every time, so re-provisioning a card replaces
/// the wiring with the identity.
#[derive(Debug, Clone, Copy)]
pub struct IdentityFiles<'a> {
    pub identity: &'a str,
    pub boot_config: &'a str,
}

impl IdentityFiles<'_> {
    /// (file name, contents), the wiring first: a card never has the new camrig.toml
    /// without its wiring.
    fn files(&self) -> [(&'static str, &str); 2] {
        [
            (BOOT_CONFIG_FILE, self.boot_config),
            (IDENTITY_FILE, self.identity),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(transparent)]
    Fat(#[from] FatError),
    #[error(transparent)]
    Device(#[from] BlockDeviceError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to write {}: {}", path.display(), reasons.join("; "))]
    InUse { path: PathBuf, reasons: Vec<String> },
    #[error(
        "{} is neither a card (block device), an image file, nor a mounted boot directory",
        path.display()
    )]
    UnknownTarget { path: PathBuf },
    #[error(
        "base image {} does not exist; build it with `image/build --role {role} --arch amd64|arm64`",
        path.display()
    )]
    NoBaseImage { path: PathBuf, role: String },
}

/// Where the identity went.
#[derive(Debug, Clone)]
pub struct Written {
    pub description: String,
    /// The hostname of the identity that was there before, if any.
    pub replaced: Option<String>,
}

/// Makes `out` from `base` with `identity` in its boot partition. Written to a temporary
/// file next to `out` first, so `out` is either the finished card image or absent.
pub fn make_card_image(
    base: &Path,
    out: &Path,
    identity: IdentityFiles<'_>,
) -> Result<(), CardError> {
    let tmp = out.with_extension("img.partial");
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| CardError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::copy(base, &tmp).map_err(io("copy the base image to", &tmp))?;
    let result = (|| {
        let offset = fat_image::boot_partition_offset(&tmp)?;
        for (name, contents) in identity.files() {
            fat_image::write_file(&tmp, offset, name, contents.as_bytes())?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &tmp))?;
        std::fs::rename(&tmp, out).map_err(io("rename into place", out))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks that `base` is a disk image with a FAT boot partition.
pub fn check_base_image(base: &Path, role: &str) -> Result<(), CardError> {
    if !base.is_file() {
        return Err(CardError::NoBaseImage {
            path: base.to_owned(),
            role: role.to_owned(),
        });
    }
    fat_image::boot_partition_offset(base)?;
    Ok(())
}

/// Writes `identity` onto an already-flashed card or image at `target`.
pub fn write_identity(target: &Path, identity: IdentityFiles<'_>) -> Result<Written, CardError> {
    let meta = std::fs::metadata(target).map_err(|source| CardError::Io {
        action: "read",
        path: target.to_owned(),
        source,
    })?;
    let previous = |text: Option<String>| {
        text.and_then(|t| {
            camrig_identity::parse(&t)
                .ok()
                .map(|id| id.hostname)
                .or(Some("an invalid camrig.toml".into()))
        })
    };
    if meta.is_dir() {
        let path = target.join(IDENTITY_FILE);
        let before = std::fs::read_to_string(&path).ok();
        for (name, contents) in identity.files() {
            let file = target.join(name);
            camrig_fs::write_atomic_with(
                &file,
                contents.as_bytes(),
                camrig_fs::Access::mode(0o600),
            )
            .map_err(|source| CardError::Io {
                action: "write",
                path: file.clone(),
                source,
            })?;
        }
        return Ok(Written {
            description: format!("{} (boot partition directory)", path.display()),
            replaced: previous(before),
        });
    }
    use std::os::unix::fs::FileTypeExt;
    let offset = if meta.is_file() {
        fat_image::boot_partition_offset(target)?
    } else if meta.file_type().is_block_device() {
        let dev = block_device::inspect(target)?;
        let system = SystemView::read().map_err(|source| CardError::Io {
            action: "read the system's mounts to check",
            path: target.to_owned(),
            source,
        })?;
        // For a partition only it is checked (and the disk it is on for being the system's):
        // a card whose other partitions a desktop mounted is fine to write raw FAT to, as
        // long as the FAT itself is not mounted.
        let reasons = block_device::refusals(&dev, &system);
        if !reasons.is_empty() {
            let mount_hint = system
                .mounts
                .iter()
                .find(|m| m.dev == dev.dev)
                .map(|m| format!("give the mounted directory {} instead", m.mount_point));
            return Err(CardError::InUse {
                path: target.to_owned(),
                reasons: reasons.into_iter().chain(mount_hint).collect(),
            });
        }
        if dev.is_partition {
            0
        } else {
            fat_image::boot_partition_offset(target)?
        }
    } else {
        return Err(CardError::UnknownTarget {
            path: target.to_owned(),
        });
    };
    let before = if fat_image::has_file(target, offset, IDENTITY_FILE)? {
        Some(fat_image::read_file(target, offset, IDENTITY_FILE)?)
    } else {
        None
    };
    for (name, contents) in identity.files() {
        fat_image::write_file(target, offset, name, contents.as_bytes())?;
    }
    Ok(Written {
        description: format!(
            "{}{} (FAT at byte {offset})",
            target.display(),
            format_args!("::/{IDENTITY_FILE}")
        ),
        replaced: previous(before),
    })
}
