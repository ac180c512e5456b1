//! Frame rate in the H.264 stream itself: rewrites each sequence parameter set (SPS) so its
//! VUI carries `timing_info` (`num_units_in_tick`, `time_scale`, `fixed_frame_rate_flag`)
//! for the recording's frame rate. OpenH264 always writes `timing_info_present_flag = 0`
//! and offers no parameter for it, so without this a raw `.h264` segment reads as 25 fps in
//! ffprobe and plays at the wrong speed. An SPS that already has timing info (a hardware
//! encoder that writes it) or that this parser does not cover (scaling matrices) is left as
//! it is. Everything else in the stream passes through byte for byte.

/// `(num_units_in_tick, time_scale)` for `fps`: frame rate = time_scale / (2 × ticks).
pub fn timing_for(fps: f64) -> (u32, u32) {
    let fps_milli = (fps * 1000.0).round().max(1.0) as u64;
    let (mut ticks, mut scale) = (1000u64, 2 * fps_milli);
    let g = gcd(ticks, scale);
    ticks /= g;
    scale /= g;
    (ticks as u32, scale as u32)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Rewrites every SPS NAL unit in the Annex B bytes `stream` (from `from` on) in place.
pub fn add_timing(stream: &mut Vec<u8>, from: usize, fps: f64) {
    let mut units = Vec::new();
    let bytes = &stream[from..];
    let mut i = 0;
    while let Some(start) = find_start_code(bytes, i) {
        let payload = start.1;
        let end = find_start_code(bytes, payload).map_or(bytes.len(), |(s, _)| s);
        units.push((payload, end));
        i = payload;
    }
    // Back to front so earlier offsets stay valid.
    for &(payload, end) in units.iter().rev() {
        let nal = &stream[from + payload..from + end];
        if nal.first().map(|b| b & 0x1f) != Some(7) {
            continue;
        }
        // Trailing zero bytes belong to the next start code, not the NAL.
        let mut len = nal.len();
        while len > 1 && nal[len - 1] == 0 {
            len -= 1;
        }
        if let Some(rewritten) = sps_with_timing(&nal[..len], fps) {
            stream.splice(from + payload..from + payload + len, rewritten);
        }
    }
}

/// `(start of the start code, start of the NAL after it)` of the next `00 00 01` at or
/// after `from`.
fn find_start_code(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            let start = if i > 0 && b[i - 1] == 0 { i - 1 } else { i };
            return Some((start, i + 3));
        }
        i += 1;
    }
    None
}

/// An SPS NAL (header byte included, no start code) with timing info added; `None` to leave
/// it unchanged.
pub fn sps_with_timing(nal: &[u8], fps: f64) -> Option<Vec<u8>> {
    let header = *nal.first()?;
    let rbsp = unescape(&nal[1..]);
    let mut r = BitReader {
        data: &rbsp,
        pos: 0,
    };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        if r.ue()? == 3 {
            r.bits(1)?;
        }
        r.ue()?;
        r.ue()?;
        r.bits(1)?;
        if r.bits(1)? == 1 {
            return None; // scaling matrices: not parsed here
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()? {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?;
    r.ue()?;
    r.ue()?;
    if r.bits(1)? == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    if r.bits(1)? == 1 {
        for _ in 0..4 {
            r.ue()?;
        }
    }
    let vui_flag_at = r.pos;
    let stop_bit = last_set_bit(&rbsp)?;
    let (ticks, scale) = timing_for(fps);
    let mut w = BitWriter::default();
    let timing = |w: &mut BitWriter| {
        w.put(1, 1);
        w.put(ticks as u64, 32);
        w.put(scale as u64, 32);
        w.put(1, 1); // fixed_frame_rate_flag
    };
    if r.bits(1)? == 0 {
        w.copy(&rbsp, 0, vui_flag_at);
        w.put(1, 1); // vui_parameters_present_flag
        w.put(0, 4); // aspect ratio, overscan, video signal, chroma location
        timing(&mut w);
        w.put(0, 4); // nal/vcl hrd, pic_struct, bitstream_restriction
    } else {
        if r.bits(1)? == 1 && r.bits(8)? == 255 {
            r.bits(32)?;
        }
        if r.bits(1)? == 1 {
            r.bits(1)?;
        }
        if r.bits(1)? == 1 {
            r.bits(4)?;
            if r.bits(1)? == 1 {
                r.bits(24)?;
            }
        }
        if r.bits(1)? == 1 {
            r.ue()?;
            r.ue()?;
        }
        let timing_flag_at = r.pos;
        if r.bits(1)? == 1 {
            return None; // already there
        }
        w.copy(&rbsp, 0, timing_flag_at);
        timing(&mut w);
        w.copy(&rbsp, timing_flag_at + 1, stop_bit);
    }
    w.put(1, 1); // rbsp_stop_one_bit
    let mut out = vec![header];
    out.extend(escape(&w.finish()));
    Some(out)
}

fn last_set_bit(b: &[u8]) -> Option<usize> {
    let (i, byte) = b.iter().enumerate().rev().find(|(_, &x)| x != 0)?;
    Some(i * 8 + 7 - byte.trailing_zeros() as usize)
}

/// Emulation prevention bytes removed (`00 00 03` → `00 00`).
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut zeros = 0;
    for &x in b {
        if zeros >= 2 && x == 3 {
            zeros = 0;
            continue;
        }
        zeros = if x == 0 { zeros + 1 } else { 0 };
        out.push(x);
    }
    out
}

/// Emulation prevention bytes added.
fn escape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 4);
    let mut zeros = 0;
    for &x in b {
        if zeros >= 2 && x <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if x == 0 { zeros + 1 } else { 0 };
        out.push(x);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u64> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(b as u64)
    }
    fn bits(&mut self, n: u32) -> Option<u64> {
        (0..n).try_fold(0u64, |acc, _| Some(acc << 1 | self.bit()?))
    }
    fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 32 {
                return None;
            }
        }
        Some((1u64 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i64> {
        let k = self.ue()? as i64;
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 1 << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }
    /// Copies bits `[from, to)` of `src`.
    fn copy(&mut self, src: &[u8], from: usize, to: usize) {
        for p in from..to {
            self.put(((src[p / 8] >> (7 - p % 8)) & 1) as u64, 1);
        }
    }
    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_is_exact_and_reduced() {
        assert_eq!(timing_for(30.0), (1, 60));
        assert_eq!(timing_for(29.97), (50, 2997));
        assert_eq!(timing_for(25.0), (1, 50));
    }

    #[test]
    fn an_sps_without_vui_gets_timing_and_parses_back() {
        // Baseline SPS, 160x120, no VUI: profile 66, level 12, ids and sizes, vui flag 0.
        let mut w = BitWriter::default();
        w.put(0x67, 8);
        w.put(66, 8);
        w.put(0xc0, 8);
        w.put(12, 8);
        let ue = |w: &mut BitWriter, v: u64| {
            let n = 64 - (v + 1).leading_zeros() - 1;
            w.put(0, n);
            w.put(v + 1, n + 1);
        };
        ue(&mut w, 0); // sps id
        ue(&mut w, 0); // log2_max_frame_num_minus4
        ue(&mut w, 2); // poc type 2
        ue(&mut w, 1); // refs
        w.put(0, 1);
        ue(&mut w, 9); // width 10 MBs
        ue(&mut w, 7); // height 8 MBs
        w.put(1, 1); // frame_mbs_only
        w.put(0, 1);
        w.put(0, 1); // no cropping
        w.put(0, 1); // no vui
        w.put(1, 1); // stop bit
        let nal = w.finish();
        let out = sps_with_timing(&nal, 30.0).expect("rewritten");
        assert_eq!(out[0], 0x67);
        // Parsed again: the VUI is there with timing; a second pass leaves it alone.
        assert_eq!(sps_with_timing(&out, 30.0), None);
        let rbsp = unescape(&out[1..]);
        let mut r = BitReader {
            data: &rbsp,
            pos: 0,
        };
        r.bits(24).unwrap();
        for _ in 0..4 {
            r.ue().unwrap();
        }
        r.bits(1).unwrap();
        r.ue().unwrap();
        r.ue().unwrap();
        r.bits(3).unwrap();
        assert_eq!(r.bits(1), Some(1), "vui present");
        assert_eq!(r.bits(4), Some(0));
        assert_eq!(r.bits(1), Some(1), "timing present");
        assert_eq!(r.bits(32), Some(1));
        assert_eq!(r.bits(32), Some(60));
        assert_eq!(r.bits(1), Some(1), "fixed frame rate");
    }

    #[test]
    fn emulation_prevention_round_trips() {
        let raw = [0, 0, 1, 0, 0, 0, 0, 0, 3, 7];
        assert_eq!(unescape(&escape(&raw)), raw);
        assert_eq!(escape(&[0, 0, 1]), vec![0, 0, 3, 1]);
    }
}
