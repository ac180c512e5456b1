//! A take directory made ahead of START: `<recordings>/.next-take`, holding the take's space
//! reserve already. START renames it to the take's name instead of creating a directory and
//! allocating the reserve while the controller waits for every node's answer; a node makes
//! the next one when it starts and after each take, when nobody waits.
//!
//! Nothing in it has to survive a crash: it is an empty directory with a reserve file, which
//! the next start makes again if it is gone. A take made from it is made durable by START
//! like any other (the rename is committed with the manifest's fsync). Its name starts with a
//! dot, so listings, recovery and deletion never take it for a take.

use std::io;
use std::path::Path;

use nix::fcntl::{renameat2, RenameFlags};

/// The spare directory's name in the recordings directory.
pub const SPARE: &str = ".next-take";

/// Where the spare is put together before it is renamed to [`SPARE`], so START only ever
/// finds a complete one.
const BUILDING: &str = ".next-take.building";

/// Makes `<recordings>/.next-take` unless it exists; `reserve` makes the reserve file at the
/// path it is given.
pub fn prepare(recordings: &Path, reserve: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<()> {
    let spare = recordings.join(SPARE);
    if spare.is_dir() {
        return Ok(());
    }
    let building = recordings.join(BUILDING);
    // One a crash left half made is made again in place.
    match std::fs::create_dir(&building) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    reserve(&building.join(crate::take::recorder::RESERVE_FILE))?;
    rename_no_replace(&building, &spare)
}

/// Renames the spare to `take_dir`. `Ok(false)` when there is no spare (START then makes the
/// directory itself); an error with `AlreadyExists` when `take_dir` exists, which is never
/// replaced.
pub fn claim(recordings: &Path, take_dir: &Path) -> io::Result<bool> {
    match rename_no_replace(&recordings.join(SPARE), take_dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(p: &Path) -> io::Result<()> {
        std::fs::write(p, b"reserve")
    }

    #[test]
    fn a_spare_becomes_the_take_directory_once() {
        let rec = tempfile::tempdir().unwrap();
        prepare(rec.path(), reserve).unwrap();
        // A second prepare keeps the existing spare.
        prepare(rec.path(), |_| panic!("the spare exists already")).unwrap();
        let take = rec.path().join("take_1");
        assert!(claim(rec.path(), &take).unwrap());
        assert_eq!(
            std::fs::read(take.join(crate::take::recorder::RESERVE_FILE)).unwrap(),
            b"reserve"
        );
        assert!(!rec.path().join(SPARE).exists());
        // No spare left: START makes the directory itself.
        assert!(!claim(rec.path(), &rec.path().join("take_2")).unwrap());
    }

    #[test]
    fn an_existing_take_directory_is_never_replaced() {
        let rec = tempfile::tempdir().unwrap();
        let take = rec.path().join("take_1");
        std::fs::create_dir(&take).unwrap();
        prepare(rec.path(), reserve).unwrap();
        let err = claim(rec.path(), &take).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(rec.path().join(SPARE).is_dir(), "the spare stays");
        assert_eq!(std::fs::read_dir(&take).unwrap().count(), 0);
    }

    #[test]
    fn a_half_made_spare_is_finished() {
        let rec = tempfile::tempdir().unwrap();
        std::fs::create_dir(rec.path().join(BUILDING)).unwrap();
        prepare(rec.path(), reserve).unwrap();
        assert!(rec
            .path()
            .join(SPARE)
            .join(crate::take::recorder::RESERVE_FILE)
            .is_file());
        assert!(!rec.path().join(BUILDING).exists());
    }
}
