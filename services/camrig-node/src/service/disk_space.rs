//! Free space on the data partition, for the disk guard (START refused below the floor; a
//! recording take stopped cleanly before the disk fills).

use std::path::Path;

/// Bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// `12.3G`, `512M`: short human sizes for STATUS= and error messages.
pub fn human(bytes: u64) -> String {
    const G: f64 = 1024.0 * 1024.0 * 1024.0;
    const M: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b >= G {
        format!("{:.1}G", b / G)
    } else {
        format!("{:.0}M", b / M)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_space_and_prints_it_short() {
        assert!(free_bytes(Path::new("/")).unwrap() > 0);
        assert_eq!(human(1024 * 1024 * 1024 * 12 + 1024 * 1024 * 300), "12.3G");
        assert_eq!(human(5 * 1024 * 1024), "5M");
    }
}
