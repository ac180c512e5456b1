//! camrig-sorted-takes: a take as DOWNLOAD & SORT leaves it on the controller's disk,
//! `<downloads>/<take>/<node address>/`, and what is made from it there. The controller
//! runs it after verification (reports) and on request (exports); the `camrig` CLI runs the
//! same code where a take was copied to (`camrig export`), without building the controller.
//!
//! - [`layout`]: where a take, a node's sorted part of it and VERIFY's damaged copies live.
//! - [`take_dir`]: a sorted take read back, every file checked against its node's manifest;
//!   the report files written atomically.
//! - [`sync_report`] (pure, no I/O): drops, cross-camera skew on the rig's grid, the skew
//!   bound and the verdict, the frames table.
//! - [`export`]: one video file per camera at true frame times (ffmpeg + mkvmerge).
//!
//! Invariant: nothing here changes a recorded file; reports and exports are new files
//! beside them, written atomically ([`camrig_fs::write_atomic`]).

pub mod export;
pub mod layout;
pub mod sync_report;
pub mod take_dir;
