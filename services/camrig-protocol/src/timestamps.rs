//! Per-frame timestamp file formats.
//!
//! - `.bin`: one little-endian `i64` per frame, wall-clock (CLOCK_REALTIME) nanoseconds; the
//!   original dual-camera recorder's format, exact and trivially read with numpy.
//! - timecode v2 text: `# timecode format v2`, then one line per frame in milliseconds with
//!   three decimals (µs resolution), relative to the file's first frame, as rpicam-vid's
//!   `--save-pts` writes and `mkvmerge --timestamps 0:FILE` reads.

use crate::UnixNanos;

pub const TIMECODE_V2_HEADER: &str = "# timecode format v2\n";

/// Appends one frame's `.bin` record.
pub fn push_bin(out: &mut Vec<u8>, ts: UnixNanos) {
    out.extend_from_slice(&ts.to_le_bytes());
}

/// Parses a `.bin` file; a trailing partial record (a write cut by a crash) is reported.
pub fn parse_bin(bytes: &[u8]) -> Result<Vec<UnixNanos>, TimestampError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(TimestampError::PartialRecord { len: bytes.len() });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
        .collect())
}

/// One timecode line for a frame at `ts`, relative to `first`: `"33.367\n"`.
pub fn timecode_line(first: UnixNanos, ts: UnixNanos) -> String {
    let us = (ts - first).div_euclid(1_000);
    format!("{}.{:03}\n", us.div_euclid(1_000), us.rem_euclid(1_000))
}

/// A whole timecode v2 file for the given frame timestamps.
pub fn timecode_v2(ts: &[UnixNanos]) -> String {
    let mut out = String::from(TIMECODE_V2_HEADER);
    if let Some(&first) = ts.first() {
        for &t in ts {
            out.push_str(&timecode_line(first, t));
        }
    }
    out
}

/// Parses a timecode v2 file into milliseconds.
pub fn parse_timecode_v2(text: &str) -> Result<Vec<f64>, TimestampError> {
    let mut lines = text.lines();
    if lines.next() != Some(TIMECODE_V2_HEADER.trim_end()) {
        return Err(TimestampError::MissingHeader);
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim()
                .parse::<f64>()
                .map_err(|_| TimestampError::BadLine {
                    line: i + 2,
                    text: l.to_owned(),
                })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp file is {len} bytes, not a whole number of 8-byte records")]
    PartialRecord { len: usize },
    #[error("timecode file does not start with '# timecode format v2'")]
    MissingHeader,
    #[error("timecode file line {line} is not a number of milliseconds: {text:?}")]
    BadLine { line: usize, text: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_round_trips_little_endian() {
        let mut buf = Vec::new();
        push_bin(&mut buf, 1);
        push_bin(&mut buf, 1_761_228_130_500_000_000);
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_bin(&buf).unwrap(), vec![1, 1_761_228_130_500_000_000]);
        assert_eq!(
            parse_bin(&buf[..12]),
            Err(TimestampError::PartialRecord { len: 12 })
        );
    }

    #[test]
    fn timecode_is_ms_with_microsecond_decimals_from_the_first_frame() {
        let t0 = 1_761_228_130_500_000_000;
        let text = timecode_v2(&[t0, t0 + 33_366_999, t0 + 66_734_500, t0 + 1_000_000_000_000]);
        assert_eq!(
            text,
            "# timecode format v2\n0.000\n33.366\n66.734\n1000000.000\n"
        );
        assert_eq!(
            parse_timecode_v2(&text).unwrap(),
            vec![0.0, 33.366, 66.734, 1_000_000.0]
        );
        assert_eq!(timecode_v2(&[]), "# timecode format v2\n");
    }

    #[test]
    fn timecode_parse_names_the_bad_line() {
        assert_eq!(
            parse_timecode_v2("0.0\n"),
            Err(TimestampError::MissingHeader)
        );
        assert_eq!(
            parse_timecode_v2("# timecode format v2\n0.000\nabc\n"),
            Err(TimestampError::BadLine {
                line: 3,
                text: "abc".into()
            })
        );
    }
}
