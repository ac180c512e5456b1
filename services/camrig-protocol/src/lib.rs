//! Everything camrig-node and camrig-controller must agree on, and nothing else.
//!
//! - [`take_name`]: the one rule for take names (node and controller both enforce it).
//! - [`naming`]: how recorded files are named on the node (DESIGN.md decision 3).
//! - [`timestamps`]: the per-frame timestamp file formats (`.bin` int64 LE ns, timecode v2).
//! - [`manifest`]: the JSON take manifest the node writes and the controller verifies against.
//! - [`api`]: the JSON bodies of the node's HTTP API (`/v1/...`).
//! - [`camera_settings`]: rig-wide camera settings, camera limits, per-frame applied values.
//! - [`grid`]: the rig's frame grid (slot n at n × T since the epoch, T an exact rational).
//! - [`phase`]: a camera's phase-lock state, live and per take.
//! - [`health`]: a node's host health (temperature, firmware throttling, memory, disk time).
//! - [`metrics`]: the `/metrics` content type and the series-table macro both services use.
//! - [`views`]: the JSON bodies of the controller's `/api` (typed states, serialised as strings),
//!   read by the web UI and the `camrig` CLI.
//! - [`operator_password`]: the operator password's Argon2id hash, as provisioning writes it
//!   and the controller checks it.
//!
//! This crate does no I/O beyond writing into caller-supplied buffers, so it is unit-tested
//! with literals and shared verbatim by every binary.

pub mod api;
pub mod camera_settings;
pub mod grid;
pub mod health;
pub mod manifest;
pub mod metrics;
pub mod naming;
pub mod operator_password;
pub mod phase;
pub mod take_name;
pub mod timestamps;
pub mod views;

/// Wall-clock (CLOCK_REALTIME) nanoseconds since the Unix epoch, the one time unit on the wire.
pub type UnixNanos = i64;

/// The innermost cause of an error chain: HTTP clients' Display stops at the outermost error
/// ("error sending request"); the cause ("connection refused") is what a person needs.
pub fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Reads CLOCK_REALTIME as [`UnixNanos`].
pub fn now_unix_ns() -> UnixNanos {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("system clock is before 1970");
    i64::try_from(d.as_nanos()).expect("system clock is past year 2262")
}
