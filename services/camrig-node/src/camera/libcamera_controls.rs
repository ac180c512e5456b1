//! Camera settings as libcamera controls, without libcamera: what a camera's control list
//! (`Camera::controls()`, reduced to [`ListedControl`]s) says it supports
//! ([`limits`]), the controls a [`CameraSettings`] becomes ([`controls_for`]: `AeEnable`,
//! `ExposureTime`, `AnalogueGain`, `AwbEnable`, `AwbMode`, `ColourGains`, `AfMode`,
//! `LensPosition`, `NoiseReductionMode`, `FrameDurationLimits`, each only when the camera
//! lists it; asking for one it does not list is an error, never silently ignored) and a
//! request's metadata read back as [`AppliedControls`]. Pure, so unit-tested on every PC;
//! [`crate::libcamera_camera`] (cargo feature `libcamera`) turns the names into ids.
//!
//! Enum values are libcamera's (`control_ids_core.yaml`, `control_ids_draft.yaml`), the same
//! from 0.4 to 0.7: `AwbMode` Auto 0 … Cloudy 6, `AfMode` Manual 0 / Auto 1 / Continuous 2,
//! `NoiseReductionMode` Off 0, Fast 1, HighQuality 2, Minimal 3, ZSL 4.

use camrig_protocol::camera_settings::{
    AppliedControls, AutoOr, Awb, AwbMode, CameraLimits, CameraSettings, NoiseReduction, Range,
};

/// One control a camera lists: libcamera's name, its range as numbers and, for enum
/// controls, the values it accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedControl {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub values: Vec<i64>,
}

/// A control to set, by libcamera name, with its value in libcamera's type.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlSetting {
    Bool(&'static str, bool),
    Int32(&'static str, i32),
    Float(&'static str, f32),
    /// `ColourGains`: red, blue.
    FloatPair(&'static str, [f32; 2]),
    /// `FrameDurationLimits`: min, max in µs.
    Int64Pair(&'static str, [i64; 2]),
}

pub const AE_ENABLE: &str = "AeEnable";
pub const EXPOSURE_TIME: &str = "ExposureTime";
pub const ANALOGUE_GAIN: &str = "AnalogueGain";
pub const AWB_ENABLE: &str = "AwbEnable";
pub const AWB_MODE: &str = "AwbMode";
pub const COLOUR_GAINS: &str = "ColourGains";
pub const AF_MODE: &str = "AfMode";
pub const LENS_POSITION: &str = "LensPosition";
pub const NOISE_REDUCTION_MODE: &str = "NoiseReductionMode";
pub const FRAME_DURATION_LIMITS: &str = "FrameDurationLimits";

const AWB_AUTO: i64 = 0;
const AF_MANUAL: i64 = 0;
const AF_CONTINUOUS: i64 = 2;

fn awb_value(m: AwbMode) -> i64 {
    match m {
        AwbMode::Incandescent => 1,
        AwbMode::Tungsten => 2,
        AwbMode::Fluorescent => 3,
        AwbMode::Indoor => 4,
        AwbMode::Daylight => 5,
        AwbMode::Cloudy => 6,
    }
}

fn noise_value(n: NoiseReduction) -> Option<i64> {
    match n {
        NoiseReduction::Auto => None,
        NoiseReduction::Off => Some(0),
        NoiseReduction::Fast => Some(1),
        NoiseReduction::HighQuality => Some(2),
        NoiseReduction::Minimal => Some(3),
    }
}

fn find<'a>(listed: &'a [ListedControl], name: &str) -> Option<&'a ListedControl> {
    listed.iter().find(|c| c.name == name)
}

fn range(listed: &[ListedControl], name: &str) -> Option<Range> {
    find(listed, name).map(|c| Range::new(c.min, c.max))
}

/// What a camera supports, from the controls it lists.
pub fn limits(listed: &[ListedControl]) -> CameraLimits {
    let enum_values = |name| {
        find(listed, name)
            .map(|c| c.values.clone())
            .unwrap_or_default()
    };
    let awb_values = enum_values(AWB_MODE);
    let nr_values = enum_values(NOISE_REDUCTION_MODE);
    CameraLimits {
        exposure_us: range(listed, EXPOSURE_TIME),
        analogue_gain: range(listed, ANALOGUE_GAIN),
        colour_gains: range(listed, COLOUR_GAINS),
        awb_modes: AwbMode::ALL
            .into_iter()
            .filter(|m| awb_values.contains(&awb_value(*m)))
            .collect(),
        lens_position: range(listed, LENS_POSITION),
        noise_reduction: [
            NoiseReduction::Off,
            NoiseReduction::Fast,
            NoiseReduction::HighQuality,
            NoiseReduction::Minimal,
        ]
        .into_iter()
        .filter(|n| noise_value(*n).is_some_and(|v| nr_values.contains(&v)))
        .collect(),
        // Frame durations in µs: the longest gives the lowest rate.
        frame_rate: find(listed, FRAME_DURATION_LIMITS)
            .filter(|c| c.min > 0.0 && c.max > 0.0)
            .map(|c| Range::new(1e6 / c.max, 1e6 / c.min)),
        auto_exposure: find(listed, AE_ENABLE).is_some(),
        auto_white_balance: find(listed, AWB_ENABLE).is_some(),
        auto_focus: find(listed, AF_MODE)
            .is_some_and(|c| c.values.is_empty() || c.values.contains(&AF_CONTINUOUS)),
    }
}

/// The controls `s` becomes on a camera listing `listed`, at `fps` (the rate `"auto"` keeps).
/// `s` must have passed [`CameraLimits::check`] against [`limits`]; an automatic setting
/// on a camera without that control sends nothing (a fixed-focus camera has no AF to turn on).
pub fn controls_for(s: &CameraSettings, listed: &[ListedControl], fps: f64) -> Vec<ControlSetting> {
    let has = |name| find(listed, name).is_some();
    let mut out = Vec::new();
    if has(FRAME_DURATION_LIMITS) {
        let fps = s.frame_rate.fixed().unwrap_or(fps);
        let period_us = (1e6 / fps).round() as i64;
        out.push(ControlSetting::Int64Pair(
            FRAME_DURATION_LIMITS,
            [period_us, period_us],
        ));
    }
    // libcamera's AE governs exposure and gain together: off as soon as either is fixed, and
    // the other fixed at what the user gave or left to the sensor's default.
    let manual_exposure = s.exposure_us != AutoOr::Auto || s.analogue_gain != AutoOr::Auto;
    if has(AE_ENABLE) {
        out.push(ControlSetting::Bool(AE_ENABLE, !manual_exposure));
    }
    if let AutoOr::Fixed(us) = s.exposure_us {
        out.push(ControlSetting::Int32(
            EXPOSURE_TIME,
            i32::try_from(us).unwrap_or(i32::MAX),
        ));
    }
    if let AutoOr::Fixed(g) = s.analogue_gain {
        out.push(ControlSetting::Float(ANALOGUE_GAIN, g));
    }
    match s.awb {
        Awb::Auto => {
            if has(AWB_ENABLE) {
                out.push(ControlSetting::Bool(AWB_ENABLE, true));
            }
            if has(AWB_MODE) {
                out.push(ControlSetting::Int32(AWB_MODE, AWB_AUTO as i32));
            }
        }
        Awb::Mode(m) => {
            if has(AWB_ENABLE) {
                out.push(ControlSetting::Bool(AWB_ENABLE, true));
            }
            out.push(ControlSetting::Int32(AWB_MODE, awb_value(m) as i32));
        }
        Awb::Gains { red, blue } => {
            if has(AWB_ENABLE) {
                out.push(ControlSetting::Bool(AWB_ENABLE, false));
            }
            out.push(ControlSetting::FloatPair(COLOUR_GAINS, [red, blue]));
        }
    }
    match s.focus {
        AutoOr::Auto => {
            if has(AF_MODE) {
                out.push(ControlSetting::Int32(AF_MODE, AF_CONTINUOUS as i32));
            }
        }
        AutoOr::Fixed(p) => {
            if has(AF_MODE) {
                out.push(ControlSetting::Int32(AF_MODE, AF_MANUAL as i32));
            }
            out.push(ControlSetting::Float(LENS_POSITION, p));
        }
    }
    if let Some(v) = noise_value(s.noise_reduction) {
        out.push(ControlSetting::Int32(NOISE_REDUCTION_MODE, v as i32));
    }
    out
}

/// One value of a request's metadata, by control name.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    Int(i64),
    Floats(Vec<f32>),
}

/// What the camera applied to a frame, from its request's metadata (`(name, value)` pairs).
pub fn applied_from_metadata<'a>(
    metadata: impl IntoIterator<Item = (&'a str, MetadataValue)>,
) -> AppliedControls {
    let mut a = AppliedControls::default();
    for (name, value) in metadata {
        match (name, value) {
            (EXPOSURE_TIME, MetadataValue::Int(v)) => a.exposure_us = u32::try_from(v).ok(),
            (ANALOGUE_GAIN, MetadataValue::Floats(v)) => a.analogue_gain = v.first().copied(),
            (COLOUR_GAINS, MetadataValue::Floats(v)) if v.len() == 2 => {
                a.colour_gains = Some([v[0], v[1]])
            }
            (LENS_POSITION, MetadataValue::Floats(v)) => a.lens_position = v.first().copied(),
            _ => {}
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(name: &str, min: f64, max: f64, values: &[i64]) -> ListedControl {
        ListedControl {
            name: name.into(),
            min,
            max,
            values: values.to_vec(),
        }
    }

    /// What libcamera 0.4's Raspberry Pi pipeline lists for an imx477 (HQ camera): no focus.
    fn imx477() -> Vec<ListedControl> {
        vec![
            control(AE_ENABLE, 0.0, 1.0, &[]),
            control(EXPOSURE_TIME, 1.0, 66_666.0, &[]),
            control(ANALOGUE_GAIN, 1.0, 22.26, &[]),
            control(AWB_ENABLE, 0.0, 1.0, &[]),
            control(AWB_MODE, 0.0, 7.0, &[0, 1, 2, 3, 4, 5, 6, 7]),
            control(COLOUR_GAINS, 0.0, 32.0, &[]),
            control(NOISE_REDUCTION_MODE, 0.0, 4.0, &[0, 1, 2, 3, 4]),
            control(FRAME_DURATION_LIMITS, 15_000.0, 200_000_000.0, &[]),
        ]
    }

    /// What vimc lists (libcamera 0.4): hardly anything.
    fn vimc() -> Vec<ListedControl> {
        vec![control("Brightness", -1.0, 1.0, &[])]
    }

    #[test]
    fn limits_come_from_the_listed_controls() {
        let l = limits(&imx477());
        assert_eq!(l.exposure_us, Some(Range::new(1.0, 66_666.0)));
        assert_eq!(l.analogue_gain, Some(Range::new(1.0, 22.26)));
        assert_eq!(l.awb_modes, AwbMode::ALL.to_vec());
        assert_eq!(l.lens_position, None);
        assert!(!l.auto_focus);
        let fr = l.frame_rate.unwrap();
        assert!((fr.max - 66.666).abs() < 0.01 && fr.min < 0.01, "{fr:?}");
        assert_eq!(l.noise_reduction.len(), 4);

        let v = limits(&vimc());
        assert_eq!(v.exposure_us, None);
        assert!(v.awb_modes.is_empty() && !v.auto_exposure);
    }

    #[test]
    fn fixed_exposure_turns_ae_off_and_auto_turns_it_on() {
        let s = CameraSettings {
            exposure_us: AutoOr::Fixed(8000),
            analogue_gain: AutoOr::Fixed(2.5),
            awb: Awb::Gains {
                red: 1.8,
                blue: 1.4,
            },
            noise_reduction: NoiseReduction::Fast,
            ..Default::default()
        };
        let c = controls_for(&s, &imx477(), 30.0);
        assert_eq!(
            c,
            vec![
                ControlSetting::Int64Pair(FRAME_DURATION_LIMITS, [33_333, 33_333]),
                ControlSetting::Bool(AE_ENABLE, false),
                ControlSetting::Int32(EXPOSURE_TIME, 8000),
                ControlSetting::Float(ANALOGUE_GAIN, 2.5),
                ControlSetting::Bool(AWB_ENABLE, false),
                ControlSetting::FloatPair(COLOUR_GAINS, [1.8, 1.4]),
                ControlSetting::Int32(NOISE_REDUCTION_MODE, 1),
            ]
        );
        let c = controls_for(&CameraSettings::default(), &imx477(), 25.0);
        assert!(c.contains(&ControlSetting::Bool(AE_ENABLE, true)));
        assert!(c.contains(&ControlSetting::Int32(AWB_MODE, 0)));
        assert!(c.contains(&ControlSetting::Int64Pair(
            FRAME_DURATION_LIMITS,
            [40_000, 40_000]
        )));
        assert!(!c
            .iter()
            .any(|c| matches!(c, ControlSetting::Int32(AF_MODE, _))));
    }

    #[test]
    fn a_setting_a_camera_does_not_list_is_refused_with_its_range() {
        let l = limits(&imx477());
        let focus = CameraSettings {
            focus: AutoOr::Fixed(1.0),
            ..Default::default()
        };
        let e = l.check(&focus, 30.0, "cam0 (imx477)").unwrap_err();
        assert!(e.problem.contains("LensPosition"), "{e}");
        let long = CameraSettings {
            exposure_us: AutoOr::Fixed(70_000),
            ..Default::default()
        };
        let e = l.check(&long, 10.0, "cam0").unwrap_err();
        assert!(e.problem.contains("1-66666"), "{e}");
        let e = limits(&vimc())
            .check(
                &CameraSettings {
                    analogue_gain: AutoOr::Fixed(2.0),
                    ..Default::default()
                },
                30.0,
                "vimc",
            )
            .unwrap_err();
        assert!(e.problem.contains("AnalogueGain"), "{e}");
    }

    #[test]
    fn metadata_is_read_back() {
        let a = applied_from_metadata([
            (EXPOSURE_TIME, MetadataValue::Int(7999)),
            (ANALOGUE_GAIN, MetadataValue::Floats(vec![2.0])),
            (COLOUR_GAINS, MetadataValue::Floats(vec![1.5, 1.25])),
            ("SensorTimestamp", MetadataValue::Int(5)),
        ]);
        assert_eq!(a.exposure_us, Some(7999));
        assert_eq!(a.analogue_gain, Some(2.0));
        assert_eq!(a.colour_gains, Some([1.5, 1.25]));
        assert_eq!(a.lens_position, None);
    }
}
