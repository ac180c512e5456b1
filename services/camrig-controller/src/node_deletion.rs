//! DELETE FROM NODES: the one action that removes recordings from the nodes, for takes the
//! controller has verified. It is never implied by a download.
//!
//! Per node, in this order: the node's part of the take must be downloaded and verified;
//! every sorted file on the controller is checked again (exists, size and sha256 as the
//! manifest says) because the copy may have been moved or damaged since; only then is the
//! node told to delete, with the verified file list, and the node deletes only if that list
//! is exactly its manifest. Each node's outcome is recorded in the take store.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{broadcast, Mutex};

use camrig_protocol::api::DeleteTakeRequest;
use camrig_protocol::manifest::{FileEntry, TakeManifest};
use camrig_protocol::now_unix_ns;
use camrig_protocol::take_name::TakeName;

use crate::rig_core::{reads_core, RigCore};
use crate::take_error::TakeError;
use crate::take_store::node_has_recording;
use crate::views::{
    DeleteFromNodes, FileView, NodeDeletionEvent, NodeFailure, TakeNodeView, TakeView,
};
use crate::views::{FileState, NodeDeletionState, NodeDownload};
use camrig_sorted_takes::layout::sorted_dir;

/// Why one node's copy was not deleted.
struct Failure {
    /// Refused (by the controller's own check or by the node) rather than unreachable.
    conflict: bool,
    message: String,
}

/// DELETE FROM NODES, one at a time, under the lock it shares with VERIFY; every change is
/// told to the SSE `node_deletion` streams.
pub struct NodeDeletion {
    core: Arc<RigCore>,
    /// One deletion at a time, and none while VERIFY re-hashes the same copies.
    copies_lock: Arc<Mutex<()>>,
    /// Every change of a node deletion, for the SSE `node_deletion` event.
    events: broadcast::Sender<NodeDeletionEvent>,
}

reads_core!(NodeDeletion);

impl NodeDeletion {
    pub fn new(core: Arc<RigCore>, copies_lock: Arc<Mutex<()>>) -> NodeDeletion {
        NodeDeletion {
            core,
            copies_lock,
            events: broadcast::channel(64).0,
        }
    }

    /// Tells every SSE stream where a node deletion stands (and that takes changed).
    pub fn deletion_changed(&self, event: NodeDeletionEvent) {
        // No subscriber is fine: nobody has the page open.
        let _ = self.events.send(event);
        self.changed();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<NodeDeletionEvent> {
        self.events.subscribe()
    }

    /// Deletes a verified take from its nodes (all that recorded it, or those named).
    /// Refuses the whole request, deleting nothing, if any node in question is not
    /// verified; otherwise answers with the take, or with the nodes where it failed.
    pub async fn delete_from_nodes(
        self: &Arc<Self>,
        name: &str,
        req: DeleteFromNodes,
    ) -> Result<TakeView, TakeError> {
        let name = TakeName::parse(name)?;
        // One deletion at a time: two clicks must not race each other to the nodes.
        let _one = self.copies_lock.lock().await;
        let take = self.stopped_take(&name, "stop it, download and verify first")?;
        for a in &req.nodes {
            if !take.nodes.iter().any(|n| &n.address == a) {
                return Err(TakeError::BadNode(format!(
                    "node {a:?} has no part in take {name}; its nodes are {}",
                    take.nodes
                        .iter()
                        .map(|n| n.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let nodes: Vec<&TakeNodeView> = take
            .nodes
            .iter()
            .filter(|n| node_has_recording(n))
            .filter(|n| req.nodes.is_empty() || req.nodes.contains(&n.address))
            .collect();
        if nodes.is_empty() {
            return Err(TakeError::NotVerified(format!(
                "take {name} has no recording on {}; nothing to delete",
                if req.nodes.is_empty() {
                    "any node"
                } else {
                    "the nodes named"
                }
            )));
        }
        let unverified: Vec<String> = nodes
            .iter()
            .filter(|n| {
                n.node_deletion != NodeDeletionState::Deleted
                    && n.download != NodeDownload::Verified
            })
            .map(|n| format!("{} (download {})", n.address, n.download))
            .collect();
        if !unverified.is_empty() {
            return Err(TakeError::NotVerified(format!(
                "take {name} is not verified on the controller for {}; download and verify first (nothing was deleted)",
                unverified.join(", ")
            )));
        }

        let mut failures = Vec::new();
        let mut any_conflict = false;
        for node in nodes {
            if node.node_deletion == NodeDeletionState::Deleted {
                continue;
            }
            self.store.set_node_deletion(
                take.id,
                &node.address,
                NodeDeletionState::Deleting,
                None,
                None,
            )?;
            self.deletion_changed(event(&name, node, NodeDeletionState::Deleting, None));
            let outcome = self.delete_on_node(&name, node).await;
            match &outcome {
                Ok(()) => {
                    self.store.set_node_deletion(
                        take.id,
                        &node.address,
                        NodeDeletionState::Deleted,
                        None,
                        Some(now_unix_ns()),
                    )?;
                    tracing::info!(take = %name, node = node.address, "take deleted from node");
                    self.deletion_changed(event(&name, node, NodeDeletionState::Deleted, None));
                }
                Err(f) => {
                    self.store.set_node_deletion(
                        take.id,
                        &node.address,
                        NodeDeletionState::Failed,
                        Some(&f.message),
                        None,
                    )?;
                    tracing::warn!(take = %name, node = node.address, reason = f.message, "take not deleted from node");
                    any_conflict |= f.conflict;
                    self.deletion_changed(event(
                        &name,
                        node,
                        NodeDeletionState::Failed,
                        Some(f.message.clone()),
                    ));
                    failures.push(NodeFailure {
                        address: node.address.clone(),
                        error: f.message.clone(),
                    });
                }
            }
        }
        if !failures.is_empty() {
            return Err(TakeError::DeleteFailed {
                take: name.as_str().to_owned(),
                conflict: any_conflict,
                failures,
            });
        }
        let take = self
            .store
            .take(take.id)?
            .ok_or_else(|| TakeError::UnknownTake(name.as_str().to_owned()))?;
        Ok(self.take_view(take))
    }

    async fn delete_on_node(&self, take: &TakeName, node: &TakeNodeView) -> Result<(), Failure> {
        let refused = |message: String| Failure {
            conflict: true,
            message,
        };
        let sorted = sorted_dir(&self.config.downloads_dir, take.as_str(), &node.address);
        let files = node.files.clone();
        let verified = tokio::task::spawn_blocking(move || recheck_sorted(&sorted, &files))
            .await
            .map_err(|e| refused(format!("checking the sorted files failed: {e}")))?
            .map_err(refused)?;
        let slot = self
            .fleet
            .by_address(&node.address)
            .ok_or_else(|| refused(format!("node {} is no longer configured", node.address)))?;
        slot.client
            .delete_take(take, &DeleteTakeRequest { files: verified })
            .await
            .map(drop)
            .map_err(|e| Failure {
                conflict: e.is_conflict(),
                message: format!("node {}: {e}", node.address),
            })
    }
}

fn event(
    take: &TakeName,
    node: &TakeNodeView,
    state: NodeDeletionState,
    reason: Option<String>,
) -> NodeDeletionEvent {
    NodeDeletionEvent {
        take: take.as_str().to_owned(),
        address: node.address.clone(),
        state,
        reason,
        at_ns: now_unix_ns(),
    }
}

/// Checks the sorted copies of one node's take again: every recorded file verified and
/// still in `sorted` with its size and sha256, and the manifest copy among them. Returns
/// the manifest's file list, which is what the node is asked to match.
pub fn recheck_sorted(sorted: &Path, files: &[FileView]) -> Result<Vec<FileEntry>, String> {
    let again = "; the take is kept on the node, download and verify again";
    let manifest = files
        .iter()
        .find(|f| f.name.ends_with("_manifest.json"))
        .ok_or_else(|| format!("the controller has no verified manifest copy{again}"))?;
    for f in files {
        if f.state != FileState::Verified {
            return Err(format!(
                "file {} is {}, not verified{again}",
                f.name, f.state
            ));
        }
        let path = sorted.join(&f.name);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "sorted file {} is missing on the controller{again}",
                    path.display()
                ))
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if len != f.bytes {
            return Err(format!(
                "sorted file {} is {len} bytes on the controller, the manifest says {}{again}",
                path.display(),
                f.bytes
            ));
        }
        let hash = camrig_fs::sha256_file(&path)
            .map(|h| h.sha256)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if hash != f.sha256 {
            return Err(format!(
                "sorted file {} no longer matches its sha256 on the controller{again}",
                path.display()
            ));
        }
    }
    let path = sorted.join(&manifest.name);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let m = TakeManifest::parse(&text)
        .map_err(|e| format!("manifest copy {}: {e}{again}", path.display()))?;
    for entry in &m.files {
        let known = files
            .iter()
            .any(|f| f.name == entry.name && f.sha256 == entry.sha256 && f.bytes == entry.bytes);
        if !known {
            return Err(format!(
                "file {} of the manifest has no verified copy on the controller{again}",
                entry.name
            ));
        }
    }
    Ok(m.files)
}
