//! Preview stills: the latest frame of a camera, scaled down (at most [`MAX_WIDTH`] wide)
//! and JPEG-encoded on demand, so a browser can check framing without touching the take.

use crate::camera::Frame;
use crate::encode::software::{encode_jpeg, I420Image};
use crate::encode::EncodeError;

pub const MAX_WIDTH: u32 = 320;

/// A small JPEG of `frame`.
pub fn jpeg(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let factor = frame.width.div_ceil(MAX_WIDTH).max(1) as usize;
    let (w, h) = (frame.width as usize, frame.height as usize);
    // Even output sizes keep the 4:2:0 chroma planes exact.
    let ow = ((w / factor) & !1).max(2);
    let oh = ((h / factor) & !1).max(2);
    let mut scratch = Vec::new();
    let pixels = frame.i420(&mut scratch);
    let (y, u, v) = (pixels.y, pixels.u, pixels.v);
    let mut oy = Vec::with_capacity(ow * oh);
    for r in 0..oh {
        for c in 0..ow {
            oy.push(y[(r * factor) * w + c * factor]);
        }
    }
    let (cw, ocw, och) = (w / 2, ow / 2, oh / 2);
    let mut ou = Vec::with_capacity(ocw * och);
    let mut ov = Vec::with_capacity(ocw * och);
    for r in 0..och {
        for c in 0..ocw {
            let i = (r * factor) * cw + c * factor;
            ou.push(u[i]);
            ov.push(v[i]);
        }
    }
    let mut out = Vec::new();
    encode_jpeg(
        &I420Image {
            width: ow,
            height: oh,
            y: &oy,
            u: &ou,
            v: &ov,
        },
        75,
        &mut out,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_small_jpegs() {
        let mut p = crate::camera::test_pattern::TestPattern::new(1280, 720, 0, "cam1");
        let f = Frame {
            camera: 0,
            sequence: 0,
            timestamp_ns: 0,
            width: 1280,
            height: 720,
            pixels: crate::camera::FramePixels::I420(p.render(0, 0)),
            applied: None,
        };
        let j = jpeg(&f).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8]);
        assert!(j.len() < 40_000, "{}", j.len());
    }
}
