//! A card's camrig.toml, read at every boot.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = camrig_identity::parse(text) {
            let _ = camrig_identity::render::plan(&id);
        }
    }
});
