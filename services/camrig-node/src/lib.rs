//! camrig-node: the recording service on every camera Pi.
//!
//! Frames flow [`camera`] (the capture seam and its backends) → [`service::node`] (routing,
//! the take state machine) → [`take::recorder`] (selection, an [`encode`]r, the segment
//! writer) → disk; [`service`]'s HTTP API drives it; `take::recovery` finalises what a crash
//! interrupted. The rooms:
//!
//! - [`config`]: the TOML config and command-line overrides, validated with key names.
//! - [`camera`]: the capture seam and the types it shares (frames, camera buffers, dma-buf
//!   planes), the synthetic camera and test pattern, capture timing, and the libcamera
//!   backend (cargo feature `libcamera`) with its support code, dma-buf access and buffer
//!   leases.
//! - [`encode`]: the encoder seam, the software encoders, and the V4L2 hardware encoder
//!   (device discovery, import planning, the encoder, its frame adapter, the kernel ABI).
//! - [`take`]: a take on disk: frame selection, the recorder, the segment writer, markers,
//!   the spare take directory, listing, recovery and deletion.
//! - [`service`]: the state machine ([`service::node`], with its own error type), the `/v1`
//!   API that maps it to HTTP, status, previews, disk space and clock health, and the
//!   composition root [`service::run`] that picks the backends and runs it all ([`run`]).

pub mod camera;
pub mod encode;
pub mod service;
pub mod take;

/// The node's config schema lives in camrig-config (one schema for readers and writers).
pub use camrig_config::node as config;
pub use config::NodeConfig;
pub use service::run::run;
