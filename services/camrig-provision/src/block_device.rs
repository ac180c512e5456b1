//! What a block device is to this system, from /sys and /proc: whole disk or partition, its
//! size, and every reason writing to it would destroy something in use — mounted file
//! systems (/proc/self/mountinfo), holders (device-mapper, RAID, LVM: /sys/block/*/holders),
//! swap (/proc/swaps), and the disk the running system itself is on (the device of `/`,
//! followed through device-mapper to the disks beneath).
//!
//! Reading the system is separated from judging it: [`SystemView::read`] gathers the facts,
//! [`refusals`] is pure and unit-tested with literal mountinfo lines.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A device number, major:minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// Splits a Linux `dev_t` (glibc's encoding, as `st_dev`/`st_rdev` carry it).
    pub fn from_dev_t(dev: u64) -> DevNum {
        DevNum {
            major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)) as u32,
            minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0xff)) as u32,
        }
    }

    /// Parses `254:0` (mountinfo and sysfs `dev` files).
    pub fn parse(s: &str) -> Option<DevNum> {
        let (major, minor) = s.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of /proc/self/mountinfo, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub dev: DevNum,
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
}

/// Parses /proc/self/mountinfo (see proc(5)): `id parent maj:min root mountpoint opts
/// [optional fields] - fstype source superopts`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            Some(Mount {
                dev: DevNum::parse(left.get(2)?)?,
                mount_point: unescape(left.get(4)?),
                fs_type: right.next()?.to_owned(),
                source: unescape(right.next()?),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |k: usize| u32::from(bytes[i + k] - b'0');
            // Escapes are of single bytes; a larger value is not one mountinfo writes.
            out.push(u8::try_from(digit(1) * 64 + digit(2) * 8 + digit(3)).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A block device as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The path the user gave.
    pub path: PathBuf,
    /// Kernel name (`sdb`, `mmcblk0p1`).
    pub name: String,
    pub dev: DevNum,
    /// The whole disk's kernel name (itself for a disk).
    pub disk: String,
    pub is_partition: bool,
    pub size: u64,
    /// This device and, for a disk, its partitions: (kernel name, number).
    pub members: Vec<(String, DevNum)>,
    /// Devices stacked on any member (dm-0, md0…).
    pub holders: Vec<String>,
    /// Vendor and model, when sysfs has them.
    pub model: String,
}

/// Why a path could not be looked at as a block device.
#[derive(Debug, thiserror::Error)]
pub enum BlockDeviceError {
    #[error("{} does not exist; list the cards with `lsblk`", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{} is not a block device", path.display())]
    NotBlock { path: PathBuf },
}

const SYS: &str = "/sys";

fn sys_dir(dev: DevNum) -> io::Result<PathBuf> {
    fs::canonicalize(format!("{SYS}/dev/block/{dev}"))
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Looks a block device up in sysfs.
pub fn inspect(path: &Path) -> Result<BlockDevice, BlockDeviceError> {
    let meta = fs::metadata(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            BlockDeviceError::Missing {
                path: path.to_owned(),
            }
        } else {
            BlockDeviceError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if !meta.file_type().is_block_device() {
        return Err(BlockDeviceError::NotBlock {
            path: path.to_owned(),
        });
    }
    let dev = DevNum::from_dev_t(meta.rdev());
    let dir = sys_dir(dev).map_err(|source| BlockDeviceError::Io {
        path: PathBuf::from(format!("{SYS}/dev/block/{dev}")),
        source,
    })?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_partition = dir.join("partition").exists();
    let disk_dir = if is_partition {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir.clone())
    } else {
        dir.clone()
    };
    let disk = disk_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // sysfs sizes are in 512-byte sectors whatever the device's own sector size.
    let size = read_trim(&dir.join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    let mut members = vec![(name.clone(), dev)];
    if !is_partition {
        for child in dir_names(&dir) {
            let child_dir = dir.join(&child);
            if child_dir.join("partition").exists() {
                if let Some(d) = read_trim(&child_dir.join("dev")).and_then(|s| DevNum::parse(&s)) {
                    members.push((child, d));
                }
            }
        }
    }
    let mut holders = Vec::new();
    for (member, _) in &members {
        let member_dir = if *member == name {
            dir.clone()
        } else {
            dir.join(member)
        };
        holders.extend(dir_names(&member_dir.join("holders")));
    }
    let model = ["vendor", "model"]
        .iter()
        .filter_map(|f| read_trim(&disk_dir.join("device").join(f)))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(BlockDevice {
        path: path.to_owned(),
        name,
        dev,
        disk,
        is_partition,
        size,
        members,
        holders,
        model,
    })
}

/// The facts about the running system that decide whether a device is in use.
#[derive(Debug, Clone, Default)]
pub struct SystemView {
    pub mounts: Vec<Mount>,
    /// Kernel names of the disks `/` lives on.
    pub root_disks: Vec<String>,
    /// Devices in use as swap.
    pub swaps: Vec<DevNum>,
}

impl SystemView {
    /// Reads /proc/self/mountinfo, /proc/swaps and the device of `/`.
    pub fn read() -> io::Result<SystemView> {
        let mounts = parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo")?);
        let root_dev = DevNum::from_dev_t(fs::metadata("/")?.dev());
        let mut root_disks = Vec::new();
        disks_under(root_dev, &mut root_disks, 0);
        // `/` on overlayfs or a container's file system has a virtual device; then the disk
        // is whatever block device the root mount names as its source.
        if root_disks.is_empty() {
            if let Some(m) = mounts.iter().rev().find(|m| m.mount_point == "/") {
                if let Ok(meta) = fs::metadata(&m.source) {
                    if meta.file_type().is_block_device() {
                        disks_under(DevNum::from_dev_t(meta.rdev()), &mut root_disks, 0);
                    }
                }
            }
        }
        let swaps = fs::read_to_string("/proc/swaps")
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| fs::metadata(p).ok())
            .filter(|m| m.file_type().is_block_device())
            .map(|m| DevNum::from_dev_t(m.rdev()))
            .collect();
        Ok(SystemView {
            mounts,
            root_disks,
            swaps,
        })
    }
}

/// The whole disks a device sits on: itself or its parent for a partition, and through
/// device-mapper/md `slaves/` the disks beneath.
fn disks_under(dev: DevNum, out: &mut Vec<String>, depth: usize) {
    let Ok(dir) = sys_dir(dev) else { return };
    if depth > 8 {
        return;
    }
    let slaves = dir_names(&dir.join("slaves"));
    if !slaves.is_empty() {
        for s in slaves {
            if let Some(d) = read_trim(&Path::new(SYS).join("class/block").join(&s).join("dev"))
                .and_then(|s| DevNum::parse(&s))
            {
                disks_under(d, out, depth + 1);
            }
        }
        return;
    }
    let disk_dir = if dir.join("partition").exists() {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    };
    if let Some(name) = disk_dir.file_name() {
        let name = name.to_string_lossy().into_owned();
        if !out.contains(&name) {
            out.push(name);
        }
    }
}

/// Every reason not to write to `device` (empty: it is not in use).
pub fn refusals(device: &BlockDevice, system: &SystemView) -> Vec<String> {
    let mut reasons = Vec::new();
    if system.root_disks.contains(&device.disk) {
        reasons.push(format!(
            "it is on {}, the disk this system runs from (/ is on it)",
            device.disk
        ));
    }
    let mounted: Vec<String> = system
        .mounts
        .iter()
        .filter_map(|m| {
            device
                .members
                .iter()
                .find(|(_, d)| *d == m.dev)
                .map(|(name, _)| format!("{name} on {}", m.mount_point))
        })
        .collect();
    if !mounted.is_empty() {
        reasons.push(format!(
            "it is mounted ({}); unmount it first (`umount`), or eject it in the file manager",
            mounted.join(", ")
        ));
    }
    if !device.holders.is_empty() {
        reasons.push(format!(
            "it is in use by {} (device-mapper, RAID or LVM); stop those first",
            device.holders.join(", ")
        ));
    }
    let swapping: Vec<&str> = device
        .members
        .iter()
        .filter(|(_, d)| system.swaps.contains(d))
        .map(|(n, _)| n.as_str())
        .collect();
    if !swapping.is_empty() {
        reasons.push(format!(
            "{} is in use as swap; `swapoff` it first",
            swapping.join(", ")
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 8:17 / /media/me/boot\\040fs rw,nosuid - vfat /dev/sdb1 rw
41 27 8:18 / /media/me/rootfs rw shared:5 - ext4 /dev/sdb2 rw
";

    fn sdb() -> BlockDevice {
        BlockDevice {
            path: "/dev/sdb".into(),
            name: "sdb".into(),
            dev: DevNum {
                major: 8,
                minor: 16,
            },
            disk: "sdb".into(),
            is_partition: false,
            size: 32 << 30,
            members: vec![
                (
                    "sdb".into(),
                    DevNum {
                        major: 8,
                        minor: 16,
                    },
                ),
                (
                    "sdb1".into(),
                    DevNum {
                        major: 8,
                        minor: 17,
                    },
                ),
                (
                    "sdb2".into(),
                    DevNum {
                        major: 8,
                        minor: 18,
                    },
                ),
            ],
            holders: vec![],
            model: "Generic SD".into(),
        }
    }

    #[test]
    fn mountinfo_lines_parse_with_escapes_and_optional_fields() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1].dev,
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(m[2].mount_point, "/media/me/boot fs");
        assert_eq!(m[3].fs_type, "ext4");
        assert_eq!(m[3].source, "/dev/sdb2");
    }

    #[test]
    fn a_mounted_card_is_refused_naming_every_mount() {
        let system = SystemView {
            mounts: parse_mountinfo(MOUNTINFO),
            root_disks: vec!["vda".into()],
            swaps: vec![],
        };
        let r = refusals(&sdb(), &system);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("sdb1 on /media/me/boot fs, sdb2 on /media/me/rootfs"),
            "{}",
            r[0]
        );
    }

    #[test]
    fn the_root_disk_holders_and_swap_are_refused() {
        let system = SystemView {
            mounts: vec![],
            root_disks: vec!["sdb".into()],
            swaps: vec![DevNum {
                major: 8,
                minor: 18,
            }],
        };
        let mut dev = sdb();
        dev.holders = vec!["dm-0".into()];
        let r = refusals(&dev, &system);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("runs from"));
        assert!(r[1].contains("dm-0"));
        assert!(r[2].contains("sdb2 is in use as swap"));
    }

    #[test]
    fn an_unused_card_has_no_refusals() {
        let system = SystemView {
            mounts: parse_mountinfo(MOUNTINFO)[..2].to_vec(),
            root_disks: vec!["vda".into()],
            swaps: vec![],
        };
        assert!(refusals(&sdb(), &system).is_empty());
    }

    #[test]
    fn dev_t_splits_like_glibc() {
        assert_eq!(
            DevNum::from_dev_t(0xfe00),
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(
            DevNum::from_dev_t(0x811),
            DevNum {
                major: 8,
                minor: 17
            }
        );
        assert_eq!(
            DevNum::parse("259:3"),
            Some(DevNum {
                major: 259,
                minor: 3
            })
        );
    }
}
