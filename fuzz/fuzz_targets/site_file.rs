//! The site file `camrig provision` reads: parse and whole-rig checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = camrig_provision::site::parse_syntax(text) {
            let _ = camrig_provision::site::check(&file);
        }
        let _ = camrig_provision::site::parse(text);
    }
});
