//! camrig CLI integration tests: `camrig demo` starts a real rig (controller + synthetic
//! nodes on 127.0.0.2, 127.0.0.3), a headless Chromium drives its web UI through
//! chromedriver, and the CLI commands drive it from a terminal. Build the binaries first:
//! `cargo build --workspace --bins`.

mod demo_rig;
mod scripting;
