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

/// Every take with a readable manifest, oldest first.
pub fn list(recordings: &Path) -> std::io::Result<Vec<TakeListing>> {
    let mut takes = Vec::new();
    let entries = match std::fs::read_dir(recordings) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(takes),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        // Hidden entries are the node's own: tombstones, takes being deleted.
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let dir = e.path();
        let Some((path, text)) = manifest_file(&dir) else {
            continue;
        };
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
            dir: e.file_name().to_string_lossy().into_owned(),
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
