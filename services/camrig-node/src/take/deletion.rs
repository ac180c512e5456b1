//! Deleting a finished take from this node (`DELETE /v1/takes/{take}`), on the
//! controller's word that it holds verified copies of every file.
//!
//! The word is checked, not trusted: the request lists the files the controller verified
//! (name, size, sha256) and the take is deleted only when that list is exactly this node's
//! manifest. Anything else (a take still recording, no manifest, a file on disk the
//! manifest does not list, one differing hash) keeps the take and says why.
//!
//! The deletion itself is crash-safe and idempotent. A tombstone
//! (`.deleted/<take>.json`) is written first, so a repeated request after a lost answer
//! gets the same answer; then the take directory is renamed to `.<take>.deleting` (hidden
//! from the listing, recovery and rsync) and the directory fsynced, so a crash can never
//! leave a take that looks whole but is not; then it is removed. A `.deleting` directory a
//! crash left behind is removed at the next start ([`finish_interrupted`]).

use std::path::{Path, PathBuf};

use camrig_protocol::api::DeleteTakeReply;
use camrig_protocol::manifest::{FileEntry, ManifestState, TakeManifest};
use camrig_protocol::take_name::TakeName;
use camrig_protocol::{now_unix_ns, UnixNanos};

use crate::take::listing::manifest_file;
use camrig_fs::{sync_dir, write_atomic};

/// Where tombstones of deleted takes live, under the recordings directory.
pub const DELETED_DIR: &str = ".deleted";
const DELETING_SUFFIX: &str = ".deleting";
const TOMBSTONE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("take {0} is not on this node")]
    Unknown(TakeName),
    /// The take is kept; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeleteError + '_ {
    move |source| DeleteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What stays of a deleted take: when, and what was deleted.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Tombstone {
    format: u32,
    take: TakeName,
    deleted_at_ns: UnixNanos,
    files: Vec<FileEntry>,
    bytes: u64,
}

fn deleting_dir(recordings: &Path, take: &TakeName) -> PathBuf {
    recordings.join(format!(".{}{DELETING_SUFFIX}", take.as_str()))
}

fn tombstone_path(recordings: &Path, take: &TakeName) -> PathBuf {
    recordings
        .join(DELETED_DIR)
        .join(format!("{}.json", take.as_str()))
}

/// Deletes `take` if `verified` is exactly its manifest's file list; see the module doc.
pub fn delete(
    recordings: &Path,
    take: &TakeName,
    verified: &[FileEntry],
) -> Result<DeleteTakeReply, DeleteError> {
    let dir = recordings.join(take.as_str());
    let deleting = deleting_dir(recordings, take);
    if deleting.exists() {
        remove_deleting(recordings, &deleting)?;
    }
    if !dir.exists() {
        return match read_tombstone(recordings, take) {
            Some(t) => Ok(reply(&t, true)),
            None => Err(DeleteError::Unknown(take.clone())),
        };
    }
    let (manifest_path, text) = manifest_file(&dir).ok_or_else(|| {
        DeleteError::Refused(format!(
            "take {take} has no manifest on this node, so its files cannot be checked; it is kept"
        ))
    })?;
    let manifest = TakeManifest::parse(&text).map_err(|e| {
        DeleteError::Refused(format!(
            "take {take}'s manifest on this node is unreadable ({e}); it is kept"
        ))
    })?;
    if manifest.state == ManifestState::Recording {
        return Err(DeleteError::Refused(format!(
            "take {take} is not finalised on this node (its manifest says recording); it is kept"
        )));
    }
    compare(&manifest.files, verified).map_err(DeleteError::Refused)?;
    let manifest_name = manifest_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let on_disk = unlisted_check(&dir, &manifest, &manifest_name)?;

    let tombstone = Tombstone {
        format: TOMBSTONE_FORMAT,
        take: take.clone(),
        deleted_at_ns: now_unix_ns(),
        bytes: on_disk.iter().map(|f| f.bytes).sum(),
        files: on_disk,
    };
    // The tombstone goes first: once the take is gone, a repeated request must find it.
    let tomb_dir = recordings.join(DELETED_DIR);
    if !tomb_dir.exists() {
        std::fs::create_dir(&tomb_dir).map_err(io(&tomb_dir))?;
        sync_dir(recordings).map_err(io(recordings))?;
    }
    let json = serde_json::to_vec_pretty(&tombstone).expect("tombstone serialises");
    let tomb = tombstone_path(recordings, take);
    write_atomic(&tomb, &json).map_err(io(&tomb))?;
    // One rename makes the take disappear as a whole: never a half-deleted take that
    // still looks like a take.
    std::fs::rename(&dir, &deleting).map_err(io(&dir))?;
    sync_dir(recordings).map_err(io(recordings))?;
    remove_deleting(recordings, &deleting)?;
    tracing::info!(take = %take, files = tombstone.files.len(), bytes = tombstone.bytes, "take deleted on the controller's verified word");
    Ok(reply(&tombstone, false))
}

fn reply(t: &Tombstone, already_deleted: bool) -> DeleteTakeReply {
    DeleteTakeReply {
        take: t.take.clone(),
        already_deleted,
        deleted_at_ns: t.deleted_at_ns,
        files: t.files.len(),
        bytes: t.bytes,
    }
}

fn read_tombstone(recordings: &Path, take: &TakeName) -> Option<Tombstone> {
    let text = std::fs::read_to_string(tombstone_path(recordings, take)).ok()?;
    serde_json::from_str(&text).ok()
}

fn remove_deleting(recordings: &Path, deleting: &Path) -> Result<(), DeleteError> {
    std::fs::remove_dir_all(deleting).map_err(io(deleting))?;
    sync_dir(recordings).map_err(io(recordings))
}

/// Checks that `verified` is exactly `manifest`: same names, sizes and sha256, nothing
/// missing, nothing extra, no name twice. The error names the first differing file.
pub fn compare(manifest: &[FileEntry], verified: &[FileEntry]) -> Result<(), String> {
    for (i, v) in verified.iter().enumerate() {
        if verified[..i].iter().any(|o| o.name == v.name) {
            return Err(format!(
                "file {} is listed twice in the request; nothing deleted",
                v.name
            ));
        }
        match manifest.iter().find(|m| m.name == v.name) {
            None => {
                return Err(format!(
                    "file {} is not in this node's manifest; nothing deleted",
                    v.name
                ))
            }
            Some(m) if m.sha256 != v.sha256 => {
                return Err(format!(
                    "file {}: sha256 {} differs from this node's manifest ({}); nothing deleted, download and verify again",
                    v.name, v.sha256, m.sha256
                ))
            }
            Some(m) if m.bytes != v.bytes => {
                return Err(format!(
                    "file {}: {} bytes differs from this node's manifest ({} bytes); nothing deleted, download and verify again",
                    v.name, v.bytes, m.bytes
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(m) = manifest
        .iter()
        .find(|m| !verified.iter().any(|v| v.name == m.name))
    {
        return Err(format!(
            "file {} of this node's manifest is not among the verified files; nothing deleted, download and verify again",
            m.name
        ));
    }
    Ok(())
}

/// The take directory's files, refusing any the manifest does not account for: the
/// controller cannot have verified a file it was never told about. Hidden files are the
/// node's own scratch (the manifest reserve, temp files).
fn unlisted_check(
    dir: &Path,
    manifest: &TakeManifest,
    manifest_name: &str,
) -> Result<Vec<FileEntry>, DeleteError> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = e.metadata().map_err(io(&e.path()))?;
        if name.starts_with('.') && meta.is_file() {
            continue;
        }
        if meta.is_dir() || (name != manifest_name && manifest.file(&name).is_none()) {
            return Err(DeleteError::Refused(format!(
                "{name} in take {}'s directory on this node is not in its manifest; the take is kept (move that file away first)",
                manifest.take
            )));
        }
        found.push(FileEntry {
            sha256: manifest
                .file(&name)
                .map(|f| f.sha256.clone())
                .unwrap_or_default(),
            name,
            bytes: meta.len(),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Removes what a crash left mid-deletion (`.<take>.deleting` directories). Their takes
/// were checked before the rename, so finishing the removal is what was asked for.
pub fn finish_interrupted(recordings: &Path) {
    let Ok(entries) = std::fs::read_dir(recordings) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(DELETING_SUFFIX) && e.path().is_dir() {
            match remove_deleting(recordings, &e.path()) {
                Ok(()) => tracing::warn!(dir = name, "finished a deletion a crash interrupted"),
                Err(err) => tracing::error!(dir = name, error = %err, "cannot finish a deletion"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, bytes: u64, sha: &str) -> FileEntry {
        FileEntry {
            name: name.into(),
            bytes,
            sha256: sha.into(),
        }
    }

    #[test]
    fn compare_accepts_only_the_exact_list() {
        let m = vec![f("a", 1, "aa"), f("b", 2, "bb")];
        assert_eq!(compare(&m, &[f("b", 2, "bb"), f("a", 1, "aa")]), Ok(()));
        let e = compare(&m, &[f("a", 1, "aa"), f("b", 2, "bc")]).unwrap_err();
        assert!(e.starts_with("file b: sha256 bc differs"), "{e}");
        let e = compare(&m, &[f("a", 1, "aa"), f("b", 3, "bb")]).unwrap_err();
        assert!(e.starts_with("file b: 3 bytes"), "{e}");
        let e = compare(&m, &[f("a", 1, "aa")]).unwrap_err();
        assert!(
            e.starts_with("file b of this node's manifest is not among"),
            "{e}"
        );
        let e = compare(&m, &[f("a", 1, "aa"), f("b", 2, "bb"), f("c", 1, "cc")]).unwrap_err();
        assert!(
            e.starts_with("file c is not in this node's manifest"),
            "{e}"
        );
        let e = compare(&m, &[f("a", 1, "aa"), f("a", 1, "aa"), f("b", 2, "bb")]).unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        assert!(compare(&m, &[]).is_err());
    }
}
