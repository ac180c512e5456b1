//! camrig-node's integration tests: the real binary, real HTTP, real ffprobe.

mod api_errors;
mod deletion;
mod disk_full;
mod harness;
mod lifecycle;
mod metrics;
mod takes;
mod verify;
