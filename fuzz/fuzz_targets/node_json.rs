//! The node API's request bodies, as a controller (or anyone with the token) sends them.
#![no_main]
use camrig_protocol::api::{
    AbortRequest, DeleteTakeRequest, MarkRequest, StartRequest, StopRequest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<StartRequest>(data);
    let _ = serde_json::from_slice::<StopRequest>(data);
    let _ = serde_json::from_slice::<MarkRequest>(data);
    let _ = serde_json::from_slice::<AbortRequest>(data);
    let _ = serde_json::from_slice::<DeleteTakeRequest>(data);
});
