//! camrig-node: the recording service on every camera Pi.
//!
//! Frames flow `capture` → [`node`] (routing, state) → [`take_recorder`] (selection,
//! [`encoder`], [`segment_writer`]) → disk; [`http_api`] drives it; [`recovery`] finalises
//! what a crash interrupted.
//!
//! - [`config`]: the TOML config and command-line overrides, validated with key names.
//! - [`capture`]: the camera backend seam (trait, frame type); [`capture_timing`] wakes
//!   capture threads on time (real-time priority, absolute sleeps); [`synthetic_camera`] and
//!   [`test_pattern`] implement it for any PC; `libcamera_camera` (cargo feature
//!   `libcamera`) for real cameras, with [`libcamera_support`] (selection, clocks, pixel
//!   conversion), [`dma_buf`] (CPU access to camera buffers) and [`buffer_lease`] (camera
//!   buffers lent to the frame path, bounded, given back on drop).
//! - [`encoder`]: MJPEG and software H.264 behind one trait; [`v4l2_encoder`] (on
//!   [`v4l2_sys`]) is the hardware path (V4L2 memory-to-memory).
//! - [`frame_selection`]: start/stop windows, segment grid, drop counting, marker mapping.
//! - [`segment_writer`]: one segment's files, hashed while written, all-or-nothing frames.
//! - [`take_recorder`]: per-camera writer threads and the take's manifest and markers.
//! - [`spare_take_dir`]: the next take's directory, made before START asks for it.
//! - [`markers`]: the markers file format.
//! - [`access_units`]: counting whole frames in recorded streams (recovery).
//! - [`recovery`]: finalising takes a crash left in `recording` state.
//! - [`take_listing`]: the takes and manifests on disk.
//! - [`take_deletion`]: deleting a take the controller verified, crash-safe and idempotent.
//! - [`node`]: the service itself: state machine, status loop, shutdown, [`run`].
//! - [`http_api`]: the `/v1` API and its error type.
//! - [`preview`]: small JPEG stills of the latest frame.
//! - [`status_line`]: the STATUS= line.
//! - [`disk_space`], [`clock_health`]: free space and the kernel's NTP state.
//! - [`health`]: the host-health seam (temperature, firmware throttling flags, memory)
//!   under one sysfs root; [`metrics`]: the Prometheus `/metrics` series.

pub mod access_units;
pub mod buffer_lease;
pub mod capture;
pub mod capture_timing;
pub mod clock_health;
pub mod config;
pub mod disk_space;
pub mod dma_buf;
pub mod encoder;
pub mod frame_selection;
pub mod health;
pub mod http_api;
#[cfg(feature = "libcamera")]
pub mod libcamera_camera;
pub mod libcamera_support;
pub mod markers;
pub mod metrics;
pub mod node;
pub mod preview;
pub mod recovery;
pub mod segment_writer;
pub mod spare_take_dir;
pub mod status_line;
pub mod synthetic_camera;
pub mod take_deletion;
pub mod take_listing;
pub mod take_recorder;
pub mod test_pattern;
pub mod v4l2_encoder;
pub mod v4l2_sys;

pub use config::NodeConfig;
pub use node::run;
