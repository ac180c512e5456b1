//! The synthetic camera's picture: colour bars (tinted per camera) with the camera name,
//! frame number and wall-clock time burned in, plus a bar that moves one step per frame,
//! so two cameras' recordings can be compared by eye and encoders see motion.
//!
//! Cheap by construction: the bars are drawn once; each frame copies them and redraws only
//! the text box and the moving bar (a Pi-class CPU must render 2 × 1280×720 @ 30 and encode).
//! The camera's exposure, gain and colour gains ([`Look`]) brighten, darken and tint the bars;
//! the lit bars are made again only when the look changes by a visible step.

use std::sync::Arc;

use camrig_protocol::UnixNanos;
use font8x8::legacy::BASIC_LEGACY;

pub struct TestPattern {
    width: usize,
    height: usize,
    background: Vec<u8>,
    /// The background as the current [`Look`] lights it, and that look (quantised).
    lit: Vec<u8>,
    lit_key: Option<[i32; 3]>,
    name: String,
    scale: usize,
    /// Grain amplitude (± steps) and its generator's state; 0 = clean.
    noise: u8,
    grain: XorShift,
}

/// A tiny deterministic PRNG (xorshift64) for grain and the synthetic camera's jitter; the
/// state must not be zero. Statistical quality does not matter here, speed does.
#[derive(Debug)]
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// How the camera's applied controls light the picture: brightness is exposure × gain
/// relative to the reference (1.0 = as drawn), `red`/`blue` the colour gains relative to
/// neutral (1.0 = untinted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    pub brightness: f32,
    pub red: f32,
    pub blue: f32,
}

impl Look {
    pub const NEUTRAL: Look = Look {
        brightness: 1.0,
        red: 1.0,
        blue: 1.0,
    };
}

/// BT.601 limited-range YUV of the classic bars.
const BARS: [(u8, u8, u8); 7] = [
    (180, 128, 128), // grey
    (162, 44, 142),  // yellow
    (131, 156, 44),  // cyan
    (112, 72, 58),   // green
    (84, 184, 198),  // magenta
    (65, 100, 212),  // red
    (35, 212, 114),  // blue
];

impl TestPattern {
    pub fn new(width: u32, height: u32, camera: usize, name: &str) -> TestPattern {
        let (w, h) = (width as usize, height as usize);
        let mut bg = vec![0u8; w * h * 3 / 2];
        let (y_plane, chroma) = bg.split_at_mut(w * h);
        let (u_plane, v_plane) = chroma.split_at_mut(w * h / 4);
        // A per-camera rotation of the bars makes cam1 and cam2 tell apart at a glance.
        let bar = |x: usize| BARS[(x * BARS.len() / w + camera * 3) % BARS.len()];
        for row in 0..h {
            for x in 0..w {
                y_plane[row * w + x] = bar(x).0;
            }
        }
        for row in 0..h / 2 {
            for x in 0..w / 2 {
                let (_, u, v) = bar(x * 2);
                u_plane[row * (w / 2) + x] = u;
                v_plane[row * (w / 2) + x] = v;
            }
        }
        TestPattern {
            width: w,
            height: h,
            lit: bg.clone(),
            lit_key: None,
            background: bg,
            name: name.to_owned(),
            scale: (w / 320).clamp(1, 4),
            noise: 0,
            grain: XorShift(1),
        }
    }

    /// Adds grain of ± `amplitude` steps to every sample of every frame, different per frame
    /// (`seed` keeps cameras apart), like a real sensor's noise: clean bars compress ~100x
    /// better than footage, which makes file sizes and download times unrealistic.
    pub fn with_noise(mut self, amplitude: u8, seed: u64) -> TestPattern {
        self.noise = amplitude.min(64);
        self.grain = XorShift(0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        self
    }

    /// Grain over the whole frame, eight samples per generator step so it stays cheap.
    fn add_grain(&mut self, buf: &mut [u8]) {
        let span = 2 * self.noise as u64 + 1;
        let offset = self.noise as i16;
        for chunk in buf.chunks_mut(8) {
            let mut bits = self.grain.next();
            for px in chunk {
                let d = ((bits & 0xff) % span) as i16 - offset;
                *px = (*px as i16 + d).clamp(16, 235) as u8;
                bits >>= 8;
            }
        }
    }

    /// One frame: the background with this frame's number and time drawn in.
    pub fn render(&mut self, frame: u64, at: UnixNanos) -> Arc<Vec<u8>> {
        self.render_lit(frame, at, Look::NEUTRAL)
    }

    /// One frame with the bars lit as `look` says (exposure × gain, colour gains).
    pub fn render_lit(&mut self, frame: u64, at: UnixNanos, look: Look) -> Arc<Vec<u8>> {
        self.light(look);
        let mut buf = self.lit.clone();
        let time = chrono::DateTime::from_timestamp(
            at.div_euclid(1_000_000_000),
            at.rem_euclid(1_000_000_000) as u32,
        )
        .map(|t| t.format("%H:%M:%S%.6f").to_string())
        .unwrap_or_default();
        let lines = [self.name.clone(), format!("frame {frame:06}"), time];
        let s = self.scale;
        let line_h = 10 * s;
        let box_w =
            (lines.iter().map(|l| l.len()).max().unwrap_or(0) * 8 * s + 4 * s).min(self.width);
        let box_h = (lines.len() * line_h + 4 * s).min(self.height);
        self.fill_box(&mut buf, 0, 0, box_w, box_h, 16);
        for (i, line) in lines.iter().enumerate() {
            self.draw_text(&mut buf, 2 * s, 2 * s + i * line_h, line);
        }
        // The moving bar: 16 px wide, one step per frame, under the text box.
        let bar_w = 16.min(self.width);
        let x = (frame as usize * 8) % (self.width - bar_w + 1);
        self.fill_box(&mut buf, x, box_h, bar_w, self.height - box_h, 235);
        if self.noise > 0 {
            self.add_grain(&mut buf);
        }
        Arc::new(buf)
    }

    /// Makes the lit background for `look` unless the last one is within a visible step.
    fn light(&mut self, look: Look) {
        let key = [
            (look.brightness * 256.0).round() as i32,
            (look.red * 256.0).round() as i32,
            (look.blue * 256.0).round() as i32,
        ];
        if self.lit_key == Some(key) {
            return;
        }
        self.lit_key = Some(key);
        let luma: Vec<u8> = (0..=255u16)
            .map(|y| {
                let v = 16.0 + (f32::from(y) - 16.0) * look.brightness;
                v.round().clamp(16.0, 235.0) as u8
            })
            .collect();
        // Colour gains above neutral push red (Cr) and blue (Cb) up, below it down.
        let shift = |c: u8, gain: f32| {
            let v = f32::from(c) + (gain - 1.0) * 64.0;
            v.round().clamp(16.0, 240.0) as u8
        };
        let y_len = self.width * self.height;
        let c_len = y_len / 4;
        for (out, bg) in self.lit[..y_len].iter_mut().zip(&self.background[..y_len]) {
            *out = luma[*bg as usize];
        }
        let (u_lit, v_lit) = self.lit[y_len..].split_at_mut(c_len);
        let (u_bg, v_bg) = self.background[y_len..].split_at(c_len);
        for (out, bg) in u_lit.iter_mut().zip(u_bg) {
            *out = shift(*bg, look.blue);
        }
        for (out, bg) in v_lit.iter_mut().zip(v_bg) {
            *out = shift(*bg, look.red);
        }
    }

    /// Fills a rectangle of the Y plane and greys its chroma.
    fn fill_box(&self, buf: &mut [u8], x0: usize, y0: usize, w: usize, h: usize, luma: u8) {
        let (width, height) = (self.width, self.height);
        let (x1, y1) = ((x0 + w).min(width), (y0 + h).min(height));
        for row in y0..y1 {
            buf[row * width + x0..row * width + x1].fill(luma);
        }
        let cw = width / 2;
        let (u_off, v_off) = (width * height, width * height + width * height / 4);
        for row in y0 / 2..y1.div_ceil(2).min(height / 2) {
            let (a, b) = (x0 / 2, x1.div_ceil(2).min(cw));
            buf[u_off + row * cw + a..u_off + row * cw + b].fill(128);
            buf[v_off + row * cw + a..v_off + row * cw + b].fill(128);
        }
    }

    fn draw_text(&self, buf: &mut [u8], x0: usize, y0: usize, text: &str) {
        let s = self.scale;
        for (ci, ch) in text.chars().enumerate() {
            let glyph = BASIC_LEGACY[(ch as usize).min(127)];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) == 0 {
                        continue;
                    }
                    let px = x0 + (ci * 8 + gx) * s;
                    let py = y0 + gy * s;
                    for dy in 0..s {
                        let row = py + dy;
                        if row >= self.height || px + s > self.width {
                            continue;
                        }
                        buf[row * self.width + px..row * self.width + px + s].fill(235);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_i420_frame_with_text_that_changes() {
        let mut p = TestPattern::new(64, 48, 0, "cam1");
        let a = p.render(1, 1_000_000_000);
        let b = p.render(2, 1_000_000_000);
        assert_eq!(a.len(), 64 * 48 * 3 / 2);
        assert_ne!(a, b, "the frame number is burned in");
        // Text pixels are white on the dark box.
        assert!(a[..64 * 30].contains(&235) && a[..64 * 30].contains(&16));
    }

    #[test]
    fn exposure_brightens_and_colour_gains_tint() {
        let mut p = TestPattern::new(320, 240, 0, "cam1");
        let mean =
            |f: &[u8]| f[..320 * 240].iter().map(|&v| u64::from(v)).sum::<u64>() / (320 * 240);
        let neutral = p.render(1, 0);
        let dark = p.render_lit(
            1,
            0,
            Look {
                brightness: 0.25,
                ..Look::NEUTRAL
            },
        );
        let bright = p.render_lit(
            1,
            0,
            Look {
                brightness: 2.0,
                ..Look::NEUTRAL
            },
        );
        assert!(
            mean(&dark) + 40 < mean(&neutral),
            "{} {}",
            mean(&dark),
            mean(&neutral)
        );
        assert!(mean(&bright) > mean(&neutral) + 20);
        let red = p.render_lit(
            1,
            0,
            Look {
                red: 1.5,
                ..Look::NEUTRAL
            },
        );
        let v = 320 * 240 * 5 / 4;
        let mean_v = |f: &[u8]| f[v..].iter().map(|&x| u64::from(x)).sum::<u64>() / (320 * 240 / 4);
        assert!(mean_v(&red) > mean_v(&neutral) + 20);
        assert_eq!(
            red[..320 * 240],
            neutral[..320 * 240],
            "tint leaves luma alone"
        );
    }

    #[test]
    fn grain_stays_within_its_amplitude_and_changes_every_frame() {
        let mut clean = TestPattern::new(64, 48, 0, "cam1");
        let mut grainy = TestPattern::new(64, 48, 0, "cam1").with_noise(8, 1);
        let c = clean.render(1, 0);
        let a = grainy.render(1, 0);
        let b = grainy.render(1, 0);
        assert_ne!(a, b, "fresh grain on every frame");
        assert_ne!(a, c);
        for (g, c) in a.iter().zip(c.iter()) {
            assert!((*g as i16 - *c as i16).abs() <= 8, "{g} vs {c}");
        }
    }
}
