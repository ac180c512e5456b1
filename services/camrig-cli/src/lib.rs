//! The `camrig` command: drive a controller from a terminal, and run a whole demo rig
//! (controller + synthetic-camera nodes as separate processes) on one PC.
//!
//! - [`controller_client`]: the REST client for a controller's `/api`.
//! - [`commands`]: `status`, `start`, `mark`, `stop`, `takes`, `download` and their output.
//! - [`scripting`]: `--json` documents, download summaries for pipes, `camrig record`,
//!   the demo's tool check.
//! - [`demo`]: `camrig demo`, the rig on loopback addresses 127.0.0.2, 127.0.0.3, …

pub mod commands;
pub mod controller_client;
pub mod demo;
pub mod scripting;
