//! Take manifests: the controller parses what a node serves, recovery what is on disk.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = camrig_protocol::manifest::TakeManifest::parse(text);
    }
});
