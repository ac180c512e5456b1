//! The controller's controller.toml (what camrig-identity renders, or an operator writes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = camrig_config::controller::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
