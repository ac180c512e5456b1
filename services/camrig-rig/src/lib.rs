//! The virtual rig: camrig's real services on real network hosts, on one machine.
//!
//! Each host is a Linux network namespace on a shared bridge (which lives in its own "switch"
//! namespace, so the machine's own network is never touched): one controller host, one
//! operator host (the laptop or phone on the rig's LAN that drives the REST API), and N node
//! hosts, each with `camrig-node` on synthetic cameras and a real OpenSSH server. Downloads run
//! over real rsync+ssh with a generated key and a pre-filled known_hosts.
//!
//! - [`netns`]: namespaces, running commands and threads inside them, leftover cleanup.
//! - [`network`]: the switch, hosts, veth links; shaping, cutting and restoring a link.
//! - [`link_shaping`]: the `tc` commands behind a [`link_shaping::Shaping`].
//! - [`ssh`]: keys, per-node sshd, known_hosts, client options.
//! - [`process`]: processes in namespaces, stopped on drop, restarted on failure.
//! - [`services`]: where camrig's binaries are, and their generated configs.
//! - [`http_client`]: HTTP from inside a namespace.
//! - [`controller_api`]: the controller's REST API and the waits around it.
//! - [`download_check`]: a sorted download checked file by file against node manifests.
//! - [`rig`]: all of it put together, torn down on drop even when a test panics.
//! - [`bench`]: the measurements `rig-bench` prints.

pub mod bench;
pub mod controller_api;
pub mod download_check;
pub mod error;
pub mod http_client;
pub mod link_shaping;
pub mod netns;
pub mod network;
pub mod process;
pub mod rig;
pub mod services;
pub mod ssh;
pub mod wait;

pub use error::{Result, RigError};
pub use link_shaping::Shaping;
pub use rig::{Rig, RigBuilder};
