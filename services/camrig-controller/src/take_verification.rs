//! VERIFY: "verified" means verified now. Re-hashes every sorted copy of a stopped take
//! against the manifests it was verified with; a file that is missing, of another size or
//! no longer matches its sha256 turns back to `failed` (its node's download with it), so
//! DOWNLOAD fetches exactly those files again. A damaged copy is moved aside to
//! `<downloads_dir>/.damaged/<take>/<node address>/`, never deleted, so the fresh copy can
//! take its place.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Mutex;

use camrig_protocol::take_name::TakeName;

use crate::rig_core::{reads_core, RigCore};
use crate::take_error::TakeError;
use crate::take_store::node_has_recording;
use crate::views::{
    FileFailure, FileState, FileView, NodeDeletionState, NodeDownload, TakeDownload, VerifyView,
};
use camrig_sorted_takes::layout::{damaged_dir, sorted_dir};

/// Why one sorted copy no longer counts as verified, or `None` when it still matches.
fn check_copy(sorted: &Path, damaged: &Path, file: &FileView) -> Option<String> {
    let path = sorted.join(&file.name);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(format!("missing from {}", sorted.display()))
        }
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    let problem = if len != file.bytes {
        format!("{len} bytes, the manifest says {}", file.bytes)
    } else {
        match camrig_fs::sha256_file(&path).map(|h| h.sha256) {
            Ok(h) if h == file.sha256 => return None,
            Ok(h) => format!("sha256 {h}, the manifest says {}", file.sha256),
            Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
        }
    };
    // Kept, out of the way of the fresh copy DOWNLOAD sorts into its place.
    let aside = damaged.join(format!(
        "{}.{}",
        file.name,
        camrig_protocol::naming::stamp(camrig_protocol::now_unix_ns())
    ));
    let moved = std::fs::create_dir_all(damaged).and_then(|()| std::fs::rename(&path, &aside));
    Some(match moved {
        Ok(()) => format!("{problem}; the damaged copy was moved to {}", aside.display()),
        Err(e) => format!(
            "{problem}; it could not be moved aside ({e}), so DOWNLOAD cannot replace it until it is moved"
        ),
    })
}

/// VERIFY, under the lock it shares with DELETE FROM NODES.
pub struct TakeVerification {
    core: Arc<RigCore>,
    /// Not while DELETE FROM NODES re-hashes the same files and acts on the result.
    copies_lock: Arc<Mutex<()>>,
}

reads_core!(TakeVerification);

impl TakeVerification {
    pub fn new(core: Arc<RigCore>, copies_lock: Arc<Mutex<()>>) -> TakeVerification {
        TakeVerification { core, copies_lock }
    }

    /// `POST /api/takes/{name}/verify`: checks every verified sorted copy of the take
    /// again (size and sha256 against the manifest); see the module doc.
    pub async fn verify_take(self: &Arc<Self>, name: &str) -> Result<VerifyView, TakeError> {
        let name = TakeName::parse(name)?;
        let _one = self.copies_lock.lock().await;
        let take = self.stopped_take(&name, "there is no download to verify")?;
        if take.download == TakeDownload::Downloading {
            return Err(TakeError::NotVerified(format!(
                "take {name} is downloading; verify it when the download has finished"
            )));
        }
        let mut checked = 0;
        let mut failed = Vec::new();
        for node in take.nodes.iter().filter(|n| node_has_recording(n)) {
            let files: Vec<FileView> = node
                .files
                .iter()
                .filter(|f| f.state == FileState::Verified)
                .cloned()
                .collect();
            if files.is_empty() {
                continue;
            }
            let sorted = sorted_dir(
                &self.config.downloads_dir,
                take.name.as_str(),
                &node.address,
            );
            let damaged = damaged_dir(
                &self.config.downloads_dir,
                take.name.as_str(),
                &node.address,
            );
            let results = tokio::task::spawn_blocking(move || {
                files
                    .into_iter()
                    .map(|f| {
                        let problem = check_copy(&sorted, &damaged, &f);
                        (f, problem)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| TakeError::NotVerified(format!("verifying failed: {e}")))?;
            let mut node_failures = Vec::new();
            for (f, problem) in results {
                checked += 1;
                let Some(problem) = problem else { continue };
                let reason = if node.node_deletion == NodeDeletionState::Deleted {
                    format!("{problem} (found by VERIFY); the node's copy was deleted, so it cannot be downloaded again")
                } else {
                    format!("{problem} (found by VERIFY); DOWNLOAD fetches it again")
                };
                self.store.set_file_state(
                    take.id,
                    &node.address,
                    &f.name,
                    FileState::Failed,
                    Some(&reason),
                )?;
                tracing::warn!(take = %name, node = node.address, file = f.name, reason, "sorted copy no longer verified");
                node_failures.push(FileFailure {
                    address: node.address.clone(),
                    name: f.name.clone(),
                    reason,
                });
            }
            if !node_failures.is_empty() {
                self.store.set_download(
                    take.id,
                    &node.address,
                    NodeDownload::Failed,
                    Some(&format!(
                        "VERIFY found {} file(s) missing or damaged; download again",
                        node_failures.len()
                    )),
                )?;
            }
            failed.extend(node_failures);
        }
        self.changed();
        tracing::info!(take = %name, checked, failed = failed.len(), "take verified again");
        let take = self
            .store
            .take(take.id)?
            .ok_or_else(|| TakeError::UnknownTake(name.as_str().to_owned()))?;
        Ok(VerifyView {
            ok: failed.is_empty(),
            files_checked: checked,
            failed,
            take: self.take_view(take),
        })
    }
}
