//! The controller API's request bodies, as a browser or script sends them.
#![no_main]
use camrig_protocol::views::{ChangePassword, DeleteFromNodes, Login, MarkTake, StartTake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(start) = serde_json::from_slice::<StartTake>(data) {
        let _ = camrig_protocol::take_name::TakeName::parse(&start.name);
    }
    let _ = serde_json::from_slice::<MarkTake>(data);
    let _ = serde_json::from_slice::<DeleteFromNodes>(data);
    if let Ok(login) = serde_json::from_slice::<Login>(data) {
        // A password of any shape is checked without a panic (a fixed, valid hash).
        if let Some(p) = login.password.as_deref() {
            if p.len() < 64 {
                let _ = camrig_protocol::operator_password::verify(
                    p,
                    "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                );
            }
        }
    }
    let _ = serde_json::from_slice::<ChangePassword>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = camrig_protocol::operator_password::check_hash(text);
    }
});
