//! Reads what is on disk: the takes under the recordings directory and their manifests,
//! for `GET /v1/takes`, `GET /v1/takes/{take}/manifest` and recovery.

use std::path::{Path, PathBuf};

use camrig_protocol::api::TakeListing;
use camrig_protocol::manifest::TakeManifest;

/// The manifest file of a take directory and its text, if it has one.
pub fn manifest_file(dir: &Path) -> Option<(PathBuf, String)> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with("_manifest.json") && !name.starts_with('.') {
            let text = std::fs::read_to_string(e.path()).ok()?;
            return Some((e.path(), text));
        }
    }
    None
}

/// One take directory with a manifest: the directory, the manifest's path and its text.
pub struct TakeDir {
    pub dir: PathBuf,
    pub manifest: PathBuf,
    pub text: String,
}

/// The take directories under `recordings` that have a manifest. Hidden entries are the
/// node's own (tombstones, takes being deleted) and skipped; no recordings directory, no takes.
pub fn take_dirs(recordings: &Path) -> std::io::Result<Vec<TakeDir>> {
    let entries = match std::fs::read_dir(recordings) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let dir = e.path();
            let (manifest, text) = manifest_file(&dir)?;
            Some(TakeDir {
                dir,
                manifest,
                text,
            })
        })
        .collect())
}

/// Every take with a readable manifest, oldest first.
pub fn list(recordings: &Path) -> std::io::Result<Vec<TakeListing>> {
    let mut takes = Vec::new();
    for TakeDir {
        dir,
        manifest: path,
        text,
    } in take_dirs(recordings)?
    {
        let manifest = match TakeManifest::parse(&text) {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "unreadable manifest skipped");
                continue;
            }
        };
        takes.push(TakeListing {
            take: manifest.take.clone(),
            state: manifest.state,
            start_at_ns: manifest.start_at_ns,
            dir: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            manifest: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: manifest.files.iter().map(|f| f.bytes).sum(),
            files: manifest.files,
        });
    }
    takes.sort_by_key(|t| (t.start_at_ns, t.take.clone()));
    Ok(takes)
}
