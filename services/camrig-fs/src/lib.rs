//! camrig-fs: the two file operations every camrig crate needs and none may get subtly
//! different, written once: replacing a file atomically and durably ([`write_atomic`],
//! [`write_atomic_with`], [`sync_dir`]) and hashing a whole file ([`sha256_file`]).
//!
//! Invariant: a crash or power cut during [`write_atomic`] leaves either the old or the new
//! contents at the path, never a mix, and once it returns the new contents and the rename
//! are on disk (temp file → fsync → rename → fsync of the directory). The temp file is
//! hidden (a leading dot, which the node's take listing and deletion treat as scratch) and
//! named per process and write, so two writers of one path never share it; one a crash left
//! behind is overwritten, never a reason to fail.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Who may read a file written by [`write_atomic_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Exact permission bits (the umask does not narrow them); `None`: 0o666 less the umask.
    pub mode: Option<u32>,
    /// Owner and group ids, set before any contents are written; `None`: the writer's.
    pub owner: Option<(u32, u32)>,
}

impl Access {
    /// Exactly `mode`, owned by the writer.
    pub fn mode(mode: u32) -> Access {
        Access {
            mode: Some(mode),
            owner: None,
        }
    }
}

/// Replaces `path` with `contents` atomically and durably, with the default permissions.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, contents, Access::default())
}

/// Numbers this process's temp files.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// [`write_atomic`] with permissions and owner: they are set on the temp file before its
/// contents, so a secret is never readable by others, even briefly.
pub fn write_atomic_with(path: &Path, contents: &[u8], access: Access) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        // Not `create_new`: a temp file a crash left behind (the same pid and count after a
        // reboot) is scratch, overwritten rather than a reason to fail.
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        if let Some(mode) = access.mode {
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        if let Some(mode) = access.mode {
            // The umask may have narrowed the mode at creation.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        if let Some((uid, gid)) = access.owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory, making the names of files created or renamed inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A whole file's size and sha256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHash {
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Hashes a whole file, reading it in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> io::Result<FileHash> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileHash {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sets_exactly_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        write_atomic_with(&p, b"one", Access::mode(0o600)).unwrap();
        write_atomic_with(&p, b"two", Access::mode(0o640)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"old").unwrap();
        // Renaming a file over a directory fails: the old target stays, the temp file goes.
        let target = dir.path().join("d");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), b"").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["d", "f"]);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
    }

    #[test]
    fn a_temp_file_left_by_a_crash_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        // Whatever name the next write picks, a stale file already has it.
        let next = NEXT.load(Ordering::Relaxed);
        for n in next..next + 64 {
            let stale = format!(".m.tmp-{}-{n}", std::process::id());
            std::fs::write(dir.path().join(stale), b"stale").unwrap();
        }
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn hashes_a_file_larger_than_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let h = sha256_file(&p).unwrap();
        assert_eq!(h.bytes, data.len() as u64);
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&data)));
    }
}
