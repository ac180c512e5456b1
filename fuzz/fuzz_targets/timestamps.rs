//! Per-frame timestamp files: raw int64 LE and timecode v2 text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ts) = camrig_protocol::timestamps::parse_bin(data) {
        assert_eq!(ts.len() * 8, data.len());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = camrig_protocol::timestamps::parse_timecode_v2(text);
    }
});
