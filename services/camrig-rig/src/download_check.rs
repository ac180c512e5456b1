//! Checks a DOWNLOAD & SORT result the way a person receiving the footage would: every file
//! of every node's manifest is in `<downloads>/<take>/<node IP>/`, with the manifest's size and
//! sha256 (hashed again here), the manifest itself is a byte-exact copy, and nothing else is
//! there.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{Result, RigError};
use crate::rig::Rig;

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    camrig_fs::sha256_file(path)
        .map(|h| h.sha256)
        .map_err(RigError::io(format!("hashing {}", path.display())))
}

/// What was checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortedTake {
    pub files: usize,
    pub bytes: u64,
}

impl Rig {
    /// Verifies the sorted download of `take` for the given nodes, file by file against each
    /// node's own manifest.
    pub fn verify_sorted_download(&self, take: &str, nodes: &[usize]) -> Result<SortedTake> {
        let mut total = SortedTake::default();
        for &i in nodes {
            let node = self.node(i);
            let manifest = self.manifest(i, take)?;
            let dir = self.downloads_dir.join(take).join(node.ip.to_string());
            let bad = |what: String| RigError::Invalid(format!("node {}: {what}", node.ip));
            let mut expected: BTreeSet<String> = BTreeSet::new();
            for entry in &manifest.files {
                let path = dir.join(&entry.name);
                let meta = std::fs::metadata(&path).map_err(|e| {
                    bad(format!(
                        "{} not sorted into {}: {e}",
                        entry.name,
                        dir.display()
                    ))
                })?;
                if meta.len() != entry.bytes {
                    return Err(bad(format!(
                        "{} has {} bytes, the manifest says {}",
                        entry.name,
                        meta.len(),
                        entry.bytes
                    )));
                }
                let sha = sha256_file(&path)?;
                if sha != entry.sha256 {
                    return Err(bad(format!(
                        "{} has sha256 {sha}, the manifest says {}",
                        entry.name, entry.sha256
                    )));
                }
                expected.insert(entry.name.clone());
                total.files += 1;
                total.bytes += entry.bytes;
            }
            let manifest_name = camrig_protocol::naming::TakeFiles::new(
                &manifest.take,
                &manifest.node,
                manifest.start_at_ns,
            )
            .manifest();
            let original = std::fs::read(node.recordings().join(take).join(&manifest_name))
                .map_err(RigError::io("reading the node's manifest"))?;
            let copy = std::fs::read(dir.join(&manifest_name))
                .map_err(|e| bad(format!("manifest {manifest_name} not sorted: {e}")))?;
            if copy != original {
                return Err(bad(format!(
                    "sorted {manifest_name} differs from the node's"
                )));
            }
            expected.insert(manifest_name);
            let present: BTreeSet<String> = std::fs::read_dir(&dir)
                .map_err(RigError::io(format!("listing {}", dir.display())))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if present != expected {
                return Err(bad(format!(
                    "{} holds {:?}, expected exactly {:?}",
                    dir.display(),
                    present.difference(&expected).collect::<Vec<_>>(),
                    expected.difference(&present).collect::<Vec<_>>()
                )));
            }
        }
        Ok(total)
    }
}
