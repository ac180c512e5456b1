//! Files on the FAT boot partition of a disk image or card, without mounting anything: the
//! partition table is read with `sfdisk --json`, and mtools (`mcopy`, `mtype`) work on the
//! image at the partition's byte offset (`-i IMAGE@@OFFSET`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::tool::{self, ToolFailure};

/// Why the boot partition could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("cannot run {program}: {source}; install {package}")]
    ToolMissing {
        program: &'static str,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("cannot write a staging file in $TMPDIR: {0}")]
    Staging(std::io::Error),
    #[error("{command} failed: {stderr}")]
    Tool { command: String, stderr: String },
    #[error("{}: the partition table is not what sfdisk prints: {problem}", path.display())]
    Table { path: PathBuf, problem: String },
    #[error(
        "{}: no FAT boot partition in its partition table ({found}); is this a camrig image or card?",
        path.display()
    )]
    NoBootPartition { path: PathBuf, found: String },
    #[error("{}: {file} read back differs from what was written", path.display())]
    ReadBack { path: PathBuf, file: String },
}

/// One partition, in bytes from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: usize,
    pub start: u64,
    pub size: u64,
    /// MBR type as sfdisk prints it (`c`) or a GPT type GUID.
    pub kind: String,
}

impl Partition {
    /// A FAT partition type: MBR FAT12/16/32 (CHS or LBA), EFI system; GPT EFI system or
    /// Microsoft basic data (what FAT boot partitions carry on GPT).
    pub fn is_fat(&self) -> bool {
        const MBR: &[&str] = &["1", "4", "6", "b", "c", "e", "ef"];
        const GPT: &[&str] = &[
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        ];
        let kind = self.kind.to_ascii_lowercase();
        MBR.contains(&kind.as_str()) || GPT.iter().any(|g| g.eq_ignore_ascii_case(&self.kind))
    }
}

#[derive(Deserialize)]
struct Dump {
    partitiontable: Table,
}

#[derive(Deserialize)]
struct Table {
    #[serde(default)]
    sectorsize: Option<u64>,
    #[serde(default)]
    partitions: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    start: u64,
    size: u64,
    #[serde(rename = "type")]
    kind: String,
}

/// Parses `sfdisk --json` output.
pub fn parse_sfdisk_json(text: &str) -> Result<Vec<Partition>, String> {
    let dump: Dump = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let sector = dump.partitiontable.sectorsize.unwrap_or(512);
    Ok(dump
        .partitiontable
        .partitions
        .into_iter()
        .enumerate()
        .map(|(i, e)| Partition {
            number: i + 1,
            start: e.start * sector,
            size: e.size * sector,
            kind: e.kind,
        })
        .collect())
}

/// The partitions of a disk image or block device.
pub fn partitions(disk: &Path) -> Result<Vec<Partition>, FatError> {
    let mut cmd = Command::new("sfdisk");
    cmd.arg("--json").arg(disk);
    let out = run(&mut cmd, "sfdisk", "fdisk")?;
    parse_sfdisk_json(&out).map_err(|problem| FatError::Table {
        path: disk.to_owned(),
        problem,
    })
}

/// The byte offset of the first FAT partition: the boot partition of a camrig image.
pub fn boot_partition_offset(disk: &Path) -> Result<u64, FatError> {
    let parts = partitions(disk)?;
    parts
        .iter()
        .find(|p| p.is_fat())
        .map(|p| p.start)
        .ok_or_else(|| FatError::NoBootPartition {
            path: disk.to_owned(),
            found: if parts.is_empty() {
                "no partitions".into()
            } else {
                parts
                    .iter()
                    .map(|p| format!("partition {} type {}", p.number, p.kind))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// The mtools image argument for a FAT file system at `offset` bytes into `disk`.
fn mtools_image(disk: &Path, offset: u64) -> String {
    if offset == 0 {
        disk.display().to_string()
    } else {
        format!("{}@@{offset}", disk.display())
    }
}

/// Writes `contents` as `/name` in the FAT file system at `offset` of `disk`, replacing
/// a file of that name, and reads it back to compare.
pub fn write_file(disk: &Path, offset: u64, name: &str, contents: &[u8]) -> Result<(), FatError> {
    let staging = tempfile::NamedTempFile::new().map_err(FatError::Staging)?;
    std::fs::write(staging.path(), contents).map_err(FatError::Staging)?;
    let image = mtools_image(disk, offset);
    let mut cmd = Command::new("mcopy");
    // -o: overwrite without asking; -D o does the same for a clash with a short name.
    cmd.args(["-o", "-D", "o", "-i", &image])
        .arg(staging.path())
        .arg(format!("::{name}"));
    run(&mut cmd, "mcopy", "mtools")?;
    if read_file(disk, offset, name)?.as_bytes() != contents {
        return Err(FatError::ReadBack {
            path: disk.to_owned(),
            file: name.to_owned(),
        });
    }
    Ok(())
}

/// Reads `/name` from the FAT file system at `offset` of `disk` (`mtype`).
pub fn read_file(disk: &Path, offset: u64, name: &str) -> Result<String, FatError> {
    let image = mtools_image(disk, offset);
    let mut cmd = Command::new("mtype");
    cmd.args(["-i", &image]).arg(format!("::{name}"));
    run(&mut cmd, "mtype", "mtools")
}

/// Whether `/name` exists in the FAT file system at `offset` of `disk`.
pub fn has_file(disk: &Path, offset: u64, name: &str) -> Result<bool, FatError> {
    let image = mtools_image(disk, offset);
    let mut cmd = Command::new("mdir");
    cmd.args(["-b", "-i", &image]).arg("::");
    let listing = run(&mut cmd, "mdir", "mtools")?;
    Ok(listing.lines().any(|l| {
        l.trim()
            .trim_start_matches("::/")
            .eq_ignore_ascii_case(name)
    }))
}

fn run(
    cmd: &mut Command,
    program: &'static str,
    package: &'static str,
) -> Result<String, FatError> {
    // mtools refuses images whose FAT geometry it finds unusual (e.g. made by mkfs.vfat
    // for a small partition) unless told to skip the check.
    cmd.env("MTOOLS_SKIP_CHECK", "1").stdin(Stdio::null());
    tool::stdout_of(cmd).map_err(|failure| match failure {
        ToolFailure::NotStarted(source) => FatError::ToolMissing {
            program,
            package,
            source,
        },
        ToolFailure::Failed { command, stderr } => FatError::Tool { command, stderr },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sfdisk_json_gives_byte_offsets() {
        let json = r#"{
   "partitiontable": {
      "label": "dos", "id": "0x1234abcd", "device": "node.img", "unit": "sectors",
      "sectorsize": 512,
      "partitions": [
         {"node": "node.img1", "start": 8192, "size": 524288, "type": "c", "bootable": true},
         {"node": "node.img2", "start": 532480, "size": 2097152, "type": "83"}
      ]
   }
}"#;
        let parts = parse_sfdisk_json(json).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].start, 8192 * 512);
        assert!(parts[0].is_fat());
        assert!(!parts[1].is_fat());
        assert_eq!(parts[1].number, 2);
    }

    #[test]
    fn gpt_types_are_recognised() {
        let p = Partition {
            number: 1,
            start: 0,
            size: 0,
            kind: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".into(),
        };
        assert!(p.is_fat());
        let linux = Partition {
            kind: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            ..p
        };
        assert!(!linux.is_fat());
    }

    #[test]
    fn garbage_is_a_table_error() {
        assert!(parse_sfdisk_json("{}").is_err());
    }

    #[test]
    fn mtools_image_argument() {
        assert_eq!(mtools_image(Path::new("a.img"), 0), "a.img");
        assert_eq!(mtools_image(Path::new("a.img"), 4194304), "a.img@@4194304");
    }
}
