//! The synthetic camera's exposure, gain and colour state: the settings it was asked to use,
//! what its simulated automatic algorithms choose when a setting is `"auto"` (a slow drift
//! from a random phase per camera, as a real AE/AWB hunts around its target, so LOCK has
//! something to freeze) and the values it applied to each frame, which the renderer turns
//! into picture brightness and tint ([`crate::camera::test_pattern::Look`]) and the frame carries as
//! its metadata.
//!
//! Brightness follows exposure × gain: 10 ms at gain 1.0 renders the bars as drawn, half of
//! it half as bright. The simulated AE aims at that product; fixed values are honoured as
//! given (a camera at 1 ms and gain 1 renders dark).

use std::sync::Mutex;

use camrig_protocol::camera_settings::{
    AppliedControls, AutoOr, Awb, AwbMode, CameraLimits, CameraSettings, NoiseReduction, Range,
};
use camrig_protocol::UnixNanos;

use crate::camera::test_pattern::{Look, XorShift};

/// Exposure × gain at which the bars render as drawn (µs).
pub const REFERENCE_EXPOSURE_US: f64 = 10_000.0;
/// Colour gains that render the bars untinted (a grey world under daylight).
pub const NEUTRAL_GAINS: [f32; 2] = [1.6, 1.6];
/// Period of the simulated AE/AWB drift and its depth.
const DRIFT_PERIOD_S: f64 = 30.0;
const DRIFT_DEPTH: f64 = 0.15;

/// What a synthetic camera supports: like a Pi camera without autofocus, up to its sensor's
/// maximum frame rate (`synthetic.max_fps`).
pub fn limits(max_fps: f64) -> CameraLimits {
    CameraLimits {
        exposure_us: Some(Range::new(100.0, 1_000_000.0)),
        analogue_gain: Some(Range::new(1.0, 16.0)),
        colour_gains: Some(Range::new(0.5, 8.0)),
        awb_modes: AwbMode::ALL.to_vec(),
        lens_position: None,
        noise_reduction: vec![
            NoiseReduction::Off,
            NoiseReduction::Fast,
            NoiseReduction::HighQuality,
            NoiseReduction::Minimal,
        ],
        frame_rate: Some(Range::new(1.0, max_fps)),
        auto_exposure: true,
        auto_white_balance: true,
        auto_focus: false,
    }
}

/// The colour gains a named white-balance mode stands for.
fn mode_gains(m: AwbMode) -> [f32; 2] {
    match m {
        AwbMode::Incandescent => [1.0, 2.8],
        AwbMode::Tungsten => [1.2, 2.4],
        AwbMode::Fluorescent => [1.4, 2.0],
        AwbMode::Indoor => [1.3, 2.2],
        AwbMode::Daylight => NEUTRAL_GAINS,
        AwbMode::Cloudy => [1.9, 1.4],
    }
}

/// One synthetic camera's controls: written by the node's API, read by the renderer.
pub struct SensorControls {
    settings: Mutex<CameraSettings>,
    /// Phases (radians) of the simulated AE and AWB drift: random per camera and start.
    phase: [f64; 3],
    period_us: f64,
}

impl SensorControls {
    pub fn new(fps: f64, seed: u64) -> SensorControls {
        let mut rng = XorShift(seed | 1);
        let mut phase = || (rng.next() % 6283) as f64 / 1000.0;
        SensorControls {
            settings: Mutex::new(CameraSettings::default()),
            phase: [phase(), phase(), phase()],
            period_us: 1e6 / fps,
        }
    }

    pub fn set(&self, s: CameraSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn drift(&self, at: UnixNanos, which: usize) -> f64 {
        let t = at as f64 / 1e9;
        1.0 + DRIFT_DEPTH * (std::f64::consts::TAU * t / DRIFT_PERIOD_S + self.phase[which]).sin()
    }

    /// The values applied to the frame exposed at `at`.
    pub fn applied(&self, at: UnixNanos) -> AppliedControls {
        let s = *self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let max_exposure = self.period_us.floor();
        let (exposure, gain) = match (s.exposure_us, s.analogue_gain) {
            (AutoOr::Fixed(e), AutoOr::Fixed(g)) => (f64::from(e), f64::from(g)),
            (AutoOr::Fixed(e), AutoOr::Auto) => (
                f64::from(e),
                (REFERENCE_EXPOSURE_US / f64::from(e) * self.drift(at, 1)).clamp(1.0, 16.0),
            ),
            (AutoOr::Auto, AutoOr::Fixed(g)) => (
                (REFERENCE_EXPOSURE_US / f64::from(g) * self.drift(at, 0))
                    .clamp(100.0, max_exposure),
                f64::from(g),
            ),
            (AutoOr::Auto, AutoOr::Auto) => (
                (REFERENCE_EXPOSURE_US * self.drift(at, 0)).clamp(100.0, max_exposure),
                self.drift(at, 1).max(1.0),
            ),
        };
        let gains = match s.awb {
            Awb::Auto => {
                let d = self.drift(at, 2) as f32;
                [NEUTRAL_GAINS[0] * d, NEUTRAL_GAINS[1] / d]
            }
            Awb::Mode(m) => mode_gains(m),
            Awb::Gains { red, blue } => [red, blue],
        };
        AppliedControls {
            exposure_us: Some(exposure.round() as u32),
            // Reported as a sensor would: to a thousandth.
            analogue_gain: Some(((gain * 1000.0).round() / 1000.0) as f32),
            colour_gains: Some(gains.map(|g| (g * 1000.0).round() / 1000.0)),
            lens_position: None,
        }
    }
}

/// How applied values look in the picture.
pub fn look(c: &AppliedControls) -> Look {
    let exposure = f64::from(c.exposure_us.unwrap_or(REFERENCE_EXPOSURE_US as u32));
    let gain = f64::from(c.analogue_gain.unwrap_or(1.0));
    let [red, blue] = c.colour_gains.unwrap_or(NEUTRAL_GAINS);
    Look {
        brightness: (exposure * gain / REFERENCE_EXPOSURE_US) as f32,
        red: red / NEUTRAL_GAINS[0],
        blue: blue / NEUTRAL_GAINS[1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_values_are_applied_as_given_and_auto_drifts() {
        let c = SensorControls::new(30.0, 7);
        c.set(CameraSettings {
            exposure_us: AutoOr::Fixed(2500),
            analogue_gain: AutoOr::Fixed(2.0),
            awb: Awb::Gains {
                red: 3.2,
                blue: 0.8,
            },
            ..Default::default()
        });
        let a = c.applied(1_000_000_000);
        assert_eq!(a.exposure_us, Some(2500));
        assert_eq!(a.analogue_gain, Some(2.0));
        assert_eq!(a.colour_gains, Some([3.2, 0.8]));
        let l = look(&a);
        assert!((l.brightness - 0.5).abs() < 1e-6);
        assert!((l.red - 2.0).abs() < 1e-6 && (l.blue - 0.5).abs() < 1e-6);

        c.set(CameraSettings::default());
        let early = c.applied(0);
        let later = c.applied(7_000_000_000);
        assert_ne!(early.exposure_us, later.exposure_us, "AE drifts");
        for a in [early, later] {
            let e = a.exposure_us.unwrap();
            assert!((8000..=12000).contains(&e), "{e}");
            assert!(f64::from(e) <= 1e6 / 30.0);
        }
    }
}
