//! camrig-controller's integration tests: a real controller process and real
//! `camrig-node` processes on distinct loopback addresses, driven over real HTTP, with real
//! rsync doing the downloads. Build the binaries first: `cargo build --workspace --bins`.

mod access;
mod bad_input;
mod camera_settings;
mod clock_and_reachability;
mod delete_from_nodes;
mod flow;
mod harness;
mod http_fuzz;
mod node_lost;
mod observe;
mod restart;
mod ssh_download;
mod stop_safety;
mod sync_report;
mod verify;
