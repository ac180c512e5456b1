//! A take on disk: which frames belong to it ([`frame_selection`]), the per-camera writer
//! threads and the manifest ([`recorder`]), one segment's files ([`segment_writer`]), the
//! markers file ([`markers`]), the next take's directory made ahead ([`spare_take_dir`]), and
//! what happens to takes afterwards: listing ([`listing`]), finalising what a crash
//! interrupted ([`recovery`], counting whole frames with [`access_units`]) and deleting what
//! the controller verified ([`deletion`]).
//!
//! Invariant: nothing recorded is overwritten, truncated or deleted unless the controller
//! verified it; a manifest is replaced atomically.

pub(crate) mod access_units;
pub(crate) mod deletion;
pub(crate) mod frame_selection;
pub(crate) mod listing;
pub(crate) mod markers;
pub(crate) mod recorder;
pub(crate) mod recovery;
pub(crate) mod segment_writer;
pub(crate) mod spare_take_dir;

/// How many frames a camera's writer queue holds (camera-check sizes its queue alike).
pub use recorder::QUEUE_FRAMES;
/// The spare take directory's name (the tests skip it when listing takes).
pub use spare_take_dir::SPARE;
