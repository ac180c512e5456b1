//! Sorting one downloaded file: a staged copy is checked against its manifest entry (size,
//! sha256) and hard-linked into its sorted place, `<downloads>/<take>/<node address>/`.
//! Invariant: a sorted file is never replaced by a different one, a wrong copy is removed
//! from staging (never sorted), and a sorted file's data is fsynced before its name appears.

use std::path::Path;

use camrig_protocol::manifest::{FileEntry, TakeManifest};

/// Checks a staged file against its manifest entry and links it into its sorted place.
/// A wrong copy is removed from staging; an existing different sorted file is kept.
pub fn verify_and_sort(staged: &Path, dest: &Path, entry: &FileEntry) -> Result<(), String> {
    if !staged.exists() {
        if dest.exists() {
            // rsync skipped it via --compare-dest: a sorted copy is already there.
            return match camrig_fs::sha256_file(dest).map(|h| h.sha256) {
                Ok(h) if h == entry.sha256 => Ok(()),
                Ok(_) => Err(format!(
                    "a different file already exists at {}; not overwritten",
                    dest.display()
                )),
                Err(e) => Err(format!("cannot read {}: {e}", dest.display())),
            };
        }
        return Err("not transferred: the node's take directory has no such file".into());
    }
    let len = std::fs::metadata(staged)
        .map_err(|e| format!("cannot read {}: {e}", staged.display()))?
        .len();
    if len != entry.bytes {
        let _ = std::fs::remove_file(staged);
        return Err(format!(
            "size is {len} bytes, the manifest says {}; discarded, download again",
            entry.bytes
        ));
    }
    let hash = camrig_fs::sha256_file(staged)
        .map(|h| h.sha256)
        .map_err(|e| format!("cannot read {}: {e}", staged.display()))?;
    if hash != entry.sha256 {
        let _ = std::fs::remove_file(staged);
        return Err(format!(
            "sha256 {hash} does not match the manifest's {}; discarded, download again",
            entry.sha256
        ));
    }
    sort_into_place(staged, dest, &hash)
}

/// Checks the staged manifest file says what the node's API said, then sorts it.
pub fn verify_manifest_and_sort(
    staged: &Path,
    dest: &Path,
    expected: &TakeManifest,
) -> Result<FileEntry, String> {
    let source = if staged.exists() { staged } else { dest };
    let text = std::fs::read_to_string(source)
        .map_err(|e| format!("manifest {} not transferred: {e}", source.display()))?;
    let copy = TakeManifest::parse(&text).map_err(|e| format!("manifest copy unreadable: {e}"))?;
    if &copy != expected {
        return Err("manifest copy differs from what the node's API reports".into());
    }
    let hash = camrig_fs::sha256_file(source)
        .map(|h| h.sha256)
        .map_err(|e| format!("cannot read manifest: {e}"))?;
    if staged.exists() {
        sort_into_place(staged, dest, &hash)?;
    }
    Ok(FileEntry {
        name: dest
            .file_name()
            .expect("manifest has a file name")
            .to_string_lossy()
            .into_owned(),
        bytes: text.len() as u64,
        sha256: hash,
    })
}

/// Links a verified staged file to `dest` without ever replacing an existing file, then
/// drops the staged name. The data is fsynced first so a sorted file is a durable file.
fn sort_into_place(staged: &Path, dest: &Path, hash: &str) -> Result<(), String> {
    std::fs::File::open(staged)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot fsync {}: {e}", staged.display()))?;
    match std::fs::hard_link(staged, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = camrig_fs::sha256_file(dest)
                .map(|h| h.sha256)
                .map_err(|e| format!("cannot read {}: {e}", dest.display()))?;
            if existing != hash {
                return Err(format!(
                    "a different file already exists at {}; not overwritten (the verified copy stays at {})",
                    dest.display(),
                    staged.display()
                ));
            }
        }
        Err(e) => return Err(format!("cannot place {}: {e}", dest.display())),
    }
    std::fs::remove_file(staged).map_err(|e| format!("cannot remove {}: {e}", staged.display()))?;
    if let Some(dir) = dest.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A manifest entry for `data` (the download verifier's tests use it too).
    pub(crate) fn entry(name: &str, data: &[u8]) -> FileEntry {
        FileEntry {
            name: name.into(),
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
        }
    }

    #[test]
    fn a_good_copy_is_sorted_and_a_bad_one_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let (staging, sorted) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::create_dir_all(&sorted).unwrap();
        std::fs::write(staging.join("a"), b"hello").unwrap();
        verify_and_sort(&staging.join("a"), &sorted.join("a"), &entry("a", b"hello")).unwrap();
        assert_eq!(std::fs::read(sorted.join("a")).unwrap(), b"hello");
        assert!(!staging.join("a").exists());
        // A second run finds it sorted already.
        verify_and_sort(&staging.join("a"), &sorted.join("a"), &entry("a", b"hello")).unwrap();

        std::fs::write(staging.join("b"), b"hellO").unwrap();
        let e = verify_and_sort(&staging.join("b"), &sorted.join("b"), &entry("b", b"hello"))
            .unwrap_err();
        assert!(e.contains("sha256"), "{e}");
        assert!(!staging.join("b").exists() && !sorted.join("b").exists());
    }

    #[test]
    fn an_existing_different_sorted_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (staged, dest) = (dir.path().join("staged"), dir.path().join("dest"));
        std::fs::write(&staged, b"new").unwrap();
        std::fs::write(&dest, b"old!").unwrap();
        let e = verify_and_sort(&staged, &dest, &entry("x", b"new")).unwrap_err();
        assert!(e.contains("not overwritten"), "{e}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"old!");
        assert_eq!(std::fs::read(&staged).unwrap(), b"new");
    }
}
