//! The service: the state machine ([`node`], with its own [`node::CommandError`]), the `/v1`
//! HTTP API that drives it and maps its errors to status codes ([`http_api`]), the status it
//! reports ([`status`], [`status_line`]), preview stills ([`preview`]), and the machine facts it
//! watches ([`disk_space`], [`clock_health`], and the host-health seam [`health`]:
//! temperature, the Pi firmware's throttling flags and memory under one sysfs root), and the
//! Prometheus `/metrics` series ([`metrics`]); [`camera_settings`] holds each camera's
//! settings, checked against its limits before they are applied. [`run`] is the composition
//! root: the one
//! place that picks the camera backend and the encoder for the config.

pub(crate) mod camera_settings;
pub(crate) mod clock_health;
pub(crate) mod disk_space;
pub mod health;
pub(crate) mod http_api;
pub mod metrics;
pub(crate) mod node;
pub(crate) mod preview;
pub mod run;
pub(crate) mod status;
pub(crate) mod status_line;
