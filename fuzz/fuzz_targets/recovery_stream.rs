//! Recovery's stream parser: whole frames in a segment a crash cut off anywhere.
#![no_main]
use camrig_node::take::access_units::frame_ends;
use camrig_protocol::naming::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::H264, Codec::Mjpeg] {
        let ends = frame_ends(codec, data);
        assert!(ends.windows(2).all(|w| w[0] < w[1]), "frame ends in order");
        assert!(
            ends.last().is_none_or(|e| *e <= data.len()),
            "inside the data"
        );
    }
});
