//! Counting whole frames in a recorded byte stream, for crash recovery: the open segment
//! of an interrupted take keeps exactly the frames that reached the disk complete.
//!
//! MJPEG: a frame is an SOI (FFD8) … EOI (FFD9) pair; 0xFF inside entropy-coded data is
//! always stuffed, so FFD9 only appears as the marker. H.264 Annex-B: a frame (access unit)
//! starts at a VCL NAL unit (type 1 or 5) whose `first_mb_in_slice` is 0, which is a
//! leading 1 bit after the NAL header; it ends where the next one (or its SPS/PPS) starts.

use camrig_protocol::naming::Codec;

/// Byte offsets where each complete frame ends, in order.
pub fn frame_ends(codec: Codec, data: &[u8]) -> Vec<usize> {
    match codec {
        Codec::Mjpeg => jpeg_ends(data),
        Codec::H264 => h264_ends(data),
    }
}

fn jpeg_ends(data: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut i = 0;
    let mut in_frame = false;
    while i + 1 < data.len() {
        if data[i] == 0xFF {
            match data[i + 1] {
                0xD8 if !in_frame => in_frame = true,
                0xD9 if in_frame => {
                    in_frame = false;
                    ends.push(i + 2);
                }
                _ => {}
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    ends
}

/// Start offsets (of the start code) and types of every NAL unit.
fn nal_units(data: &[u8]) -> Vec<(usize, usize, u8)> {
    let mut units = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            let header = i + 3;
            if header < data.len() {
                units.push((start, header, data[header] & 0x1F));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    units
}

/// The NAL unit types in a stream, in order (tests).
#[cfg(test)]
pub fn nal_types(data: &[u8]) -> Vec<u8> {
    nal_units(data).into_iter().map(|(_, _, t)| t).collect()
}

fn h264_ends(data: &[u8]) -> Vec<usize> {
    let units = nal_units(data);
    // Starts of access units: the first VCL NAL of a picture, pulled back over the
    // SPS/PPS/SEI/AUD units that precede it.
    let mut starts = Vec::new();
    let mut pending_prefix: Option<usize> = None;
    for &(start, header, t) in &units {
        match t {
            1 | 5 => {
                let first_mb_zero = data.get(header + 1).is_some_and(|b| b & 0x80 != 0);
                if first_mb_zero {
                    starts.push(pending_prefix.unwrap_or(start));
                }
                pending_prefix = None;
            }
            6..=9 => {
                pending_prefix.get_or_insert(start);
            }
            _ => {}
        }
    }
    // A frame is complete when the next one has begun; the last one only if the stream
    // ends right after it, which a crash cannot tell, so the last counts when the caller
    // says the file was closed. Here: every frame before the last start is complete, and
    // the last one is complete if it has at least its slice header and some payload.
    let mut ends: Vec<usize> = starts.iter().skip(1).copied().collect();
    if !starts.is_empty() && data.len() > *starts.last().expect("non-empty") + 8 {
        ends.push(data.len());
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whole_jpegs_only() {
        let one = [0xFF, 0xD8, 1, 2, 0xFF, 0x00, 0xFF, 0xD9];
        let mut data = one.to_vec();
        data.extend_from_slice(&one);
        data.extend_from_slice(&one[..5]);
        assert_eq!(frame_ends(Codec::Mjpeg, &data), vec![8, 16]);
    }

    #[test]
    fn counts_h264_access_units_with_their_parameter_sets() {
        let mut data = vec![0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3];
        data.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 9, 9, 9, 9, 9, 9, 9, 9]);
        let second = data.len();
        data.extend_from_slice(&[0, 0, 0, 1, 0x41, 0x9A, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(nal_types(&data), vec![7, 8, 5, 1]);
        assert_eq!(frame_ends(Codec::H264, &data), vec![second, data.len()]);
    }
}
