//! Writes one segment of one camera: the video file plus its per-frame timestamp files and
//! (takes only) its per-frame metadata CSV (exposure, gain, colour gains, lens position the
//! camera applied), hashing every byte as it is written so the manifest's sha256 costs no
//! second read.
//!
//! A frame is all-or-nothing: its timestamp and metadata records are written first, then its
//! picture; if any write fails (ENOSPC) every file is cut back to where the frame began, so a
//! segment always holds whole frames with one timestamp each. After a crash a segment can
//! hold at most one timestamp (and metadata row) more than pictures, which recovery trims.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use camrig_fs::sync_dir;
use camrig_protocol::camera_settings::{metadata_csv_row, AppliedControls, METADATA_CSV_HEADER};
use camrig_protocol::manifest::FileEntry;
use camrig_protocol::timestamps::{self, TIMECODE_V2_HEADER};
use camrig_protocol::UnixNanos;
use sha2::{Digest, Sha256};

/// The open segment is fsynced this often: a power cut loses at most this much.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// File names of one segment (all in the take's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentNames {
    pub video: String,
    pub timestamps_bin: String,
    /// Takes write the timecode v2 text too; the standalone recorder's layout has none.
    pub timestamps_txt: Option<String>,
    /// Takes write `<segment stem>_metadata.csv`; the standalone layout has none.
    pub metadata_csv: Option<String>,
}

/// A file being written, with a running sha256 of its contents.
struct HashedFile {
    name: String,
    file: File,
    hasher: Sha256,
    len: u64,
}

impl HashedFile {
    fn create(dir: &Path, name: &str) -> io::Result<HashedFile> {
        // create_new: a recorded file is never overwritten, whatever the caller's mistake.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(dir.join(name))?;
        Ok(HashedFile {
            name: name.to_owned(),
            file,
            hasher: Sha256::new(),
            len: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.len)?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    fn mark(&self) -> (u64, Sha256) {
        (self.len, self.hasher.clone())
    }

    /// Goes back to a [`HashedFile::mark`], cutting off whatever was written since.
    fn restore(&mut self, (len, hasher): (u64, Sha256)) {
        self.len = len;
        self.hasher = hasher;
        if let Err(e) = self.file.set_len(len) {
            tracing::error!(file = %self.name, error = %e, "cannot cut back a partial write");
        }
    }

    fn entry(self) -> FileEntry {
        FileEntry {
            name: self.name,
            bytes: self.len,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

/// A closed, fsynced segment.
#[derive(Clone, Debug)]
pub struct ClosedSegment {
    pub names: SegmentNames,
    pub files: Vec<FileEntry>,
    pub frames: u64,
    pub first_frame_ns: Option<UnixNanos>,
    pub last_frame_ns: Option<UnixNanos>,
}

pub struct SegmentWriter {
    dir: PathBuf,
    names: SegmentNames,
    video: HashedFile,
    bin: HashedFile,
    txt: Option<HashedFile>,
    csv: Option<HashedFile>,
    frames: u64,
    first_ns: Option<UnixNanos>,
    last_ns: Option<UnixNanos>,
    last_sync: Instant,
}

impl SegmentWriter {
    pub fn create(dir: &Path, names: SegmentNames) -> io::Result<SegmentWriter> {
        let video = HashedFile::create(dir, &names.video)?;
        let bin = HashedFile::create(dir, &names.timestamps_bin)?;
        let txt = match &names.timestamps_txt {
            Some(name) => {
                let mut f = HashedFile::create(dir, name)?;
                f.write(TIMECODE_V2_HEADER.as_bytes())?;
                Some(f)
            }
            None => None,
        };
        let csv = match &names.metadata_csv {
            Some(name) => {
                let mut f = HashedFile::create(dir, name)?;
                f.write(METADATA_CSV_HEADER.as_bytes())?;
                Some(f)
            }
            None => None,
        };
        Ok(SegmentWriter {
            dir: dir.to_owned(),
            names,
            video,
            bin,
            txt,
            csv,
            frames: 0,
            first_ns: None,
            last_ns: None,
            last_sync: Instant::now(),
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Appends one encoded frame, its timestamp and its metadata row (`frame_index` in the
    /// take, the values the camera applied); all or nothing.
    pub fn write_frame(
        &mut self,
        encoded: &[u8],
        ts: UnixNanos,
        frame_index: u64,
        applied: &AppliedControls,
    ) -> io::Result<()> {
        let mut bin = Vec::with_capacity(8);
        timestamps::push_bin(&mut bin, ts);
        let line = timestamps::timecode_line(self.first_ns.unwrap_or(ts), ts);
        // Hashers are cheap to clone: snapshot them so a failed frame can be undone exactly.
        let before = (
            self.bin.mark(),
            self.txt.as_ref().map(HashedFile::mark),
            self.csv.as_ref().map(HashedFile::mark),
            self.video.mark(),
        );
        let result = (|| {
            self.bin.write(&bin)?;
            if let Some(txt) = &mut self.txt {
                txt.write(line.as_bytes())?;
            }
            if let Some(csv) = &mut self.csv {
                csv.write(metadata_csv_row(frame_index, ts, applied).as_bytes())?;
            }
            self.video.write(encoded)
        })();
        if let Err(e) = result {
            self.bin.restore(before.0);
            if let (Some(txt), Some(mark)) = (&mut self.txt, before.1) {
                txt.restore(mark);
            }
            if let (Some(csv), Some(mark)) = (&mut self.csv, before.2) {
                csv.restore(mark);
            }
            self.video.restore(before.3);
            return Err(e);
        }
        self.frames += 1;
        self.first_ns.get_or_insert(ts);
        self.last_ns = Some(ts);
        Ok(())
    }

    /// fsyncs the open files if [`SYNC_INTERVAL`] has passed since the last time.
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.video.file.sync_data()?;
        self.bin.file.sync_data()?;
        if let Some(txt) = &self.txt {
            txt.file.sync_data()?;
        }
        if let Some(csv) = &self.csv {
            csv.file.sync_data()?;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// fsyncs the files and their directory entries and returns the segment's account.
    pub fn close(mut self) -> io::Result<ClosedSegment> {
        self.sync()?;
        self.video.file.sync_all()?;
        sync_dir(&self.dir)?;
        let mut files = vec![self.video.entry(), self.bin.entry()];
        if let Some(txt) = self.txt {
            files.push(txt.entry());
        }
        if let Some(csv) = self.csv {
            files.push(csv.entry());
        }
        Ok(ClosedSegment {
            names: self.names,
            files,
            frames: self.frames,
            first_frame_ns: self.first_ns,
            last_frame_ns: self.last_ns,
        })
    }
}

/// Makes `file`, newly created in `dir` (itself possibly just created in its parent), durable
/// together with its name and the take directory's: the file's fsync, and fsyncs of `dir` and
/// its parent only where the file system needs them (see [`file_sync_keeps_new_names`]).
///
/// On ext4 those directory fsyncs are not free even when they find nothing of their own to
/// write: ext4 journals directories like data, so an fsync of one forces a commit of whatever
/// the journal is collecting at that moment (other processes' writes included). On a busy
/// disk each waits for another journal commit: two more per START on top of the file's own.
pub fn sync_new_file(file: &File, dir: &Path) -> io::Result<()> {
    file.sync_all()?;
    let file_system = nix::sys::statfs::statfs(dir).map(|s| s.filesystem_type());
    if file_system.is_ok_and(file_sync_keeps_new_names) {
        return Ok(());
    }
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Whether an fsync of a newly created file also makes its directory entry, and those of
/// newly created directories above it, durable on this file system type:
///
/// - ext4 (the node image's data partition): with a journal, creating a file or directory and
///   its entry happen in one journal transaction, the fsync waits for the commit of the file's
///   latest transaction, and transactions commit in order, so every earlier create and mkdir
///   is committed with it; without a journal ext4 fsyncs the parents of new entries itself
///   (`ext4_sync_parent`).
/// - XFS: the fsync forces the log up to the file's last change, past the create (which logs
///   the parent directory in the same transaction) and any earlier mkdir.
/// - Btrfs: the fsync logs the new file's parent directories with it.
///
/// Anything else (and a failed `statfs`) gets the POSIX recipe, an fsync of each directory.
pub fn file_sync_keeps_new_names(file_system: nix::sys::statfs::FsType) -> bool {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC};
    [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC].contains(&file_system)
}

/// A file's manifest entry from its bytes on disk (recovery, where the running hash was lost
/// with the process).
pub(crate) fn file_entry(path: &Path) -> io::Result<FileEntry> {
    let hash = camrig_fs::sha256_file(path)?;
    Ok(FileEntry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: hash.bytes,
        sha256: hash.sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> SegmentNames {
        SegmentNames {
            video: "s.mjpeg".into(),
            timestamps_bin: "s_timestamps.bin".into(),
            timestamps_txt: Some("s_timestamps.txt".into()),
            metadata_csv: Some("s_metadata.csv".into()),
        }
    }

    #[test]
    fn hashes_match_the_files_and_timestamps_match_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), names()).unwrap();
        let applied = AppliedControls {
            exposure_us: Some(8000),
            analogue_gain: Some(2.0),
            ..Default::default()
        };
        w.write_frame(b"frame-one", 1_000_000_000, 0, &applied)
            .unwrap();
        w.write_frame(b"frame-two", 1_033_366_999, 1, &AppliedControls::default())
            .unwrap();
        let closed = w.close().unwrap();
        assert_eq!(closed.frames, 2);
        for f in &closed.files {
            assert_eq!(&file_entry(&dir.path().join(&f.name)).unwrap(), f);
        }
        let bin = std::fs::read(dir.path().join("s_timestamps.bin")).unwrap();
        assert_eq!(
            timestamps::parse_bin(&bin).unwrap(),
            vec![1_000_000_000, 1_033_366_999]
        );
        let txt = std::fs::read_to_string(dir.path().join("s_timestamps.txt")).unwrap();
        assert_eq!(txt, "# timecode format v2\n0.000\n33.366\n");
        let csv = std::fs::read_to_string(dir.path().join("s_metadata.csv")).unwrap();
        assert_eq!(
            csv,
            format!("{METADATA_CSV_HEADER}0,8000,2,,,,1000000000\n1,,,,,,1033366999\n")
        );
        assert_eq!(closed.files.len(), 4);
        assert!(
            SegmentWriter::create(dir.path(), names()).is_err(),
            "never overwrites"
        );
    }

    #[test]
    fn only_journalling_file_systems_skip_the_directory_fsyncs() {
        use nix::sys::statfs::{
            BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, MSDOS_SUPER_MAGIC, NFS_SUPER_MAGIC, TMPFS_MAGIC,
            XFS_SUPER_MAGIC,
        };
        assert!(file_sync_keeps_new_names(EXT4_SUPER_MAGIC));
        assert!(file_sync_keeps_new_names(XFS_SUPER_MAGIC));
        assert!(file_sync_keeps_new_names(BTRFS_SUPER_MAGIC));
        assert!(!file_sync_keeps_new_names(MSDOS_SUPER_MAGIC));
        assert!(!file_sync_keeps_new_names(NFS_SUPER_MAGIC));
        assert!(!file_sync_keeps_new_names(TMPFS_MAGIC));
    }

    #[test]
    fn a_new_file_in_a_new_directory_is_synced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("take");
        std::fs::create_dir(&dir).unwrap();
        let f = File::create_new(dir.join("manifest.json")).unwrap();
        f.write_all_at(b"{}", 0).unwrap();
        sync_new_file(&f, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), b"{}");
    }
}
