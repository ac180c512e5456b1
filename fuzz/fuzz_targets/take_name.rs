//! Take names come from the UI, the CLI and URLs: `TakeName::parse` must refuse or accept,
//! never panic, and what it accepts must be safe as a path component and an rsync argument.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = camrig_protocol::take_name::TakeName::parse(text) {
        let s = name.as_str();
        assert!(!s.is_empty() && s.len() <= 64);
        assert!(!s.starts_with('-') && !s.starts_with('.'));
        assert!(!s.contains('/') && !s.contains('\0') && s != "..");
    }
});
