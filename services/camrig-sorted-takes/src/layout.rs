//! Where the controller keeps a sorted take: one folder per take under the downloads
//! folder, one per node address inside it, and VERIFY's damaged copies out of the way
//! under `.damaged/`, never deleted.

use std::path::{Path, PathBuf};

/// A take's folder: `<downloads>/<take>/` (its reports and exports sit here too).
pub fn take_dir(downloads: &Path, take: &str) -> PathBuf {
    downloads.join(take)
}

/// The sorted folder of a node's take: `<downloads>/<take>/<node address>/`.
pub fn sorted_dir(downloads: &Path, take: &str, address: &str) -> PathBuf {
    take_dir(downloads, take).join(address)
}

/// Where VERIFY moves a damaged copy of `take` from node `address`.
pub fn damaged_dir(downloads: &Path, take: &str, address: &str) -> PathBuf {
    downloads.join(".damaged").join(take).join(address)
}
