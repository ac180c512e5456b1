//! Rig-wide camera settings: what the user asks every camera to do (exposure, analogue gain,
//! white balance, focus, noise reduction, frame rate), what a camera reports it supports
//! ([`CameraLimits`]), the one validation both node and controller run
//! ([`CameraLimits::check`]), the values a camera applied to one frame ([`AppliedControls`],
//! one row of the per-segment `<segment stem>_metadata.csv`) and the node API's bodies
//! (`GET`/`PUT /v1/camera-settings`).
//!
//! On the wire a setting that may be automatic is a number or the string `"auto"`; white
//! balance is `"auto"`, a mode name (`"daylight"`, …) or `{"red": r, "blue": b}` colour gains.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value the camera's own algorithm may choose (`"auto"`) or a fixed one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum AutoOr<T> {
    #[default]
    Auto,
    Fixed(T),
}

impl<T: Copy> AutoOr<T> {
    pub fn fixed(self) -> Option<T> {
        match self {
            AutoOr::Auto => None,
            AutoOr::Fixed(v) => Some(v),
        }
    }
}

impl<T: Serialize> Serialize for AutoOr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AutoOr::Auto => s.serialize_str("auto"),
            AutoOr::Fixed(v) => v.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for AutoOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Word(String),
            Value(T),
        }
        match Raw::<T>::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a number or \"auto\""))?
        {
            Raw::Word(w) if w == "auto" => Ok(AutoOr::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "{w:?} is neither a number nor \"auto\""
            ))),
            Raw::Value(v) => Ok(AutoOr::Fixed(v)),
        }
    }
}

/// libcamera's `AwbMode` values a user may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwbMode {
    Incandescent,
    Tungsten,
    Fluorescent,
    Indoor,
    Daylight,
    Cloudy,
}

impl AwbMode {
    pub const ALL: [AwbMode; 6] = [
        AwbMode::Incandescent,
        AwbMode::Tungsten,
        AwbMode::Fluorescent,
        AwbMode::Indoor,
        AwbMode::Daylight,
        AwbMode::Cloudy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AwbMode::Incandescent => "incandescent",
            AwbMode::Tungsten => "tungsten",
            AwbMode::Fluorescent => "fluorescent",
            AwbMode::Indoor => "indoor",
            AwbMode::Daylight => "daylight",
            AwbMode::Cloudy => "cloudy",
        }
    }

    fn parse(s: &str) -> Option<AwbMode> {
        AwbMode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// White balance: the camera's automatic algorithm, one of its named modes, or fixed gains.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Awb {
    #[default]
    Auto,
    Mode(AwbMode),
    /// Fixed red and blue colour gains (libcamera `ColourGains`), AWB off.
    Gains {
        red: f32,
        blue: f32,
    },
}

impl Serialize for Awb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Gains {
            red: f32,
            blue: f32,
        }
        match self {
            Awb::Auto => s.serialize_str("auto"),
            Awb::Mode(m) => s.serialize_str(m.name()),
            Awb::Gains { red, blue } => Gains {
                red: *red,
                blue: *blue,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Awb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Gains {
            red: f32,
            blue: f32,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Gains(Gains),
        }
        let names = || {
            AwbMode::ALL
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(format!(
                "awb: expected \"auto\", a mode ({}) or {{\"red\": gain, \"blue\": gain}}",
                names()
            ))
        })?;
        match raw {
            Raw::Word(w) if w == "auto" => Ok(Awb::Auto),
            Raw::Word(w) => AwbMode::parse(&w).map(Awb::Mode).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "awb: {w:?} is not \"auto\" nor a mode ({})",
                    names()
                ))
            }),
            Raw::Gains(g) => Ok(Awb::Gains {
                red: g.red,
                blue: g.blue,
            }),
        }
    }
}

/// libcamera's `NoiseReductionMode`, or the camera's own default (`auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseReduction {
    /// Whatever the camera's tuning does by default: no control is sent.
    #[default]
    Auto,
    Off,
    Fast,
    HighQuality,
    Minimal,
}

impl NoiseReduction {
    pub fn name(self) -> &'static str {
        match self {
            NoiseReduction::Auto => "auto",
            NoiseReduction::Off => "off",
            NoiseReduction::Fast => "fast",
            NoiseReduction::HighQuality => "high_quality",
            NoiseReduction::Minimal => "minimal",
        }
    }
}

/// The settings one camera is asked to use. Every field defaults to automatic, so a PUT of
/// `{"exposure_us": 8000}` means "8 ms, everything else automatic".
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraSettings {
    /// Exposure time in µs (`ExposureTime`, AE off), or `"auto"`.
    pub exposure_us: AutoOr<u32>,
    /// Analogue gain (`AnalogueGain`, 1.0 = none), or `"auto"`.
    pub analogue_gain: AutoOr<f32>,
    pub awb: Awb,
    /// Lens position in dioptres (`LensPosition`, AF off), or `"auto"` (continuous AF where
    /// the camera has it; nothing to do for a fixed-focus camera).
    pub focus: AutoOr<f32>,
    pub noise_reduction: NoiseReduction,
    /// Frames per second; `"auto"` keeps the node's configured rate (`camera.fps`).
    pub frame_rate: AutoOr<f64>,
}

/// An inclusive range a camera reports for a control.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    pub fn new(min: f64, max: f64) -> Range {
        Range { min, max }
    }

    fn contains(&self, v: f64) -> bool {
        v.is_finite() && v >= self.min && v <= self.max
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// What one camera reports it supports; `None` = the camera has no such control.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraLimits {
    pub exposure_us: Option<Range>,
    pub analogue_gain: Option<Range>,
    /// Range of each of the red and blue colour gains.
    pub colour_gains: Option<Range>,
    pub awb_modes: Vec<AwbMode>,
    pub lens_position: Option<Range>,
    pub noise_reduction: Vec<NoiseReduction>,
    pub frame_rate: Option<Range>,
    /// The automatic algorithms the camera has (`AeEnable`, `AwbEnable`, `AfMode`).
    pub auto_exposure: bool,
    pub auto_white_balance: bool,
    pub auto_focus: bool,
}

/// A setting one camera cannot take: which, why and what it allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{camera}: {problem}")]
pub struct SettingsError {
    /// The camera, named for a person: `node 192.168.1.101 camera 0 (imx477)`.
    pub camera: String,
    pub problem: String,
}

impl CameraLimits {
    /// Checks `s` against what the camera supports; `configured_fps` is the node's rate
    /// (`camera.fps`), which `frame_rate: "auto"` keeps. A fixed frame rate must be inside
    /// the camera's range (the node reopens its cameras at the new rate between takes);
    /// exposure longer than the frame period is refused.
    pub fn check(
        &self,
        s: &CameraSettings,
        configured_fps: f64,
        camera: &str,
    ) -> Result<(), SettingsError> {
        let fail = |problem: String| {
            Err(SettingsError {
                camera: camera.to_owned(),
                problem,
            })
        };
        let unsupported = |what: &str, control: &str| {
            format!("{what} cannot be set: the camera has no {control} control")
        };
        let fps = match s.frame_rate {
            AutoOr::Auto => configured_fps,
            AutoOr::Fixed(fps) => match &self.frame_rate {
                None => return fail(unsupported("frame_rate", "FrameDurationLimits")),
                Some(r) if !r.contains(fps) || fps <= 0.0 => {
                    return fail(format!(
                        "frame_rate {fps} is outside the camera's range {r} fps"
                    ))
                }
                Some(_) => fps,
            },
        };
        if let AutoOr::Fixed(us) = s.exposure_us {
            match &self.exposure_us {
                None => return fail(unsupported("exposure_us", "ExposureTime")),
                Some(r) if !r.contains(f64::from(us)) => {
                    return fail(format!(
                        "exposure_us {us} is outside the camera's range {r} µs"
                    ))
                }
                Some(_) => {}
            }
            let period_us = 1e6 / fps;
            if f64::from(us) > period_us {
                return fail(format!(
                    "exposure_us {us} is longer than the frame period ({:.0} µs at {fps} fps); shorten the exposure or lower the frame rate",
                    period_us.floor()
                ));
            }
        } else if !self.auto_exposure && self.exposure_us.is_some() {
            return fail("exposure_us \"auto\": the camera has no automatic exposure (AeEnable); give a value".into());
        }
        if let AutoOr::Fixed(g) = s.analogue_gain {
            match &self.analogue_gain {
                None => return fail(unsupported("analogue_gain", "AnalogueGain")),
                Some(r) if !r.contains(f64::from(g)) => {
                    return fail(format!(
                        "analogue_gain {g} is outside the camera's range {r}"
                    ))
                }
                Some(_) => {}
            }
        }
        match s.awb {
            Awb::Auto => {}
            Awb::Mode(m) => {
                if !self.awb_modes.contains(&m) {
                    let known: Vec<&str> = self.awb_modes.iter().map(|m| m.name()).collect();
                    return fail(format!(
                        "awb mode {:?} is not one the camera has ({})",
                        m.name(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            }
            Awb::Gains { red, blue } => match &self.colour_gains {
                None => return fail(unsupported("awb colour gains", "ColourGains")),
                Some(r) => {
                    for (name, v) in [("red", red), ("blue", blue)] {
                        if !r.contains(f64::from(v)) {
                            return fail(format!(
                                "awb {name} gain {v} is outside the camera's range {r}"
                            ));
                        }
                    }
                }
            },
        }
        if let AutoOr::Fixed(p) = s.focus {
            match &self.lens_position {
                None => return fail(unsupported("focus", "LensPosition")),
                Some(r) if !r.contains(f64::from(p)) => {
                    return fail(format!(
                        "focus {p} is outside the camera's lens position range {r} dioptres"
                    ))
                }
                Some(_) => {}
            }
        }
        if s.noise_reduction != NoiseReduction::Auto
            && !self.noise_reduction.contains(&s.noise_reduction)
        {
            let known: Vec<&str> = self.noise_reduction.iter().map(|m| m.name()).collect();
            return fail(format!(
                "noise_reduction {:?} is not one the camera has ({})",
                s.noise_reduction.name(),
                if known.is_empty() {
                    "no NoiseReductionMode control".into()
                } else {
                    known.join(", ")
                }
            ));
        }
        Ok(())
    }
}

/// The values a camera applied to one frame, as it reports them (libcamera: the request's
/// metadata); `None` where the camera does not report one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedControls {
    pub exposure_us: Option<u32>,
    pub analogue_gain: Option<f32>,
    /// Red and blue colour gains.
    pub colour_gains: Option<[f32; 2]>,
    pub lens_position: Option<f32>,
}

/// Header of the per-segment `<segment stem>_metadata.csv`: one row per frame, `frame_index`
/// counting the take's frames of that camera from 0 (as markers do), empty cells where the
/// camera reports nothing.
pub const METADATA_CSV_HEADER: &str =
    "frame_index,exposure_us,analogue_gain,colour_gain_red,colour_gain_blue,lens_position,timestamp_ns\n";

/// One row of the metadata CSV.
pub fn metadata_csv_row(frame_index: u64, timestamp_ns: i64, c: &AppliedControls) -> String {
    fn cell<T: fmt::Display>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    format!(
        "{frame_index},{},{},{},{},{},{timestamp_ns}\n",
        cell(c.exposure_us),
        cell(c.analogue_gain),
        cell(c.colour_gains.map(|g| g[0])),
        cell(c.colour_gains.map(|g| g[1])),
        cell(c.lens_position),
    )
}

/// The range of the values a camera applied over a take, from its segments'
/// `_metadata.csv` (what the sync report shows per camera); `None` where it reported none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppliedRange {
    /// Rows read (frames with metadata).
    pub frames: u64,
    pub exposure_us: Option<Range>,
    pub analogue_gain: Option<Range>,
    pub colour_gain_red: Option<Range>,
    pub colour_gain_blue: Option<Range>,
    pub lens_position: Option<Range>,
}

impl AppliedRange {
    /// Adds the rows of one `_metadata.csv` (its header names the columns).
    pub fn add_csv(&mut self, text: &str) -> Result<(), String> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or("empty metadata file")?
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let columns = [
            col("exposure_us"),
            col("analogue_gain"),
            col("colour_gain_red"),
            col("colour_gain_blue"),
            col("lens_position"),
        ];
        if col("frame_index").is_none() {
            return Err("no frame_index column: not a camrig metadata file".into());
        }
        for (n, line) in lines.enumerate() {
            let cells: Vec<&str> = line.split(',').collect();
            let ranges = [
                &mut self.exposure_us,
                &mut self.analogue_gain,
                &mut self.colour_gain_red,
                &mut self.colour_gain_blue,
                &mut self.lens_position,
            ];
            for (c, range) in columns.iter().zip(ranges) {
                let Some(cell) = c.and_then(|c| cells.get(c)).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let v: f64 = cell
                    .parse()
                    .map_err(|_| format!("row {}: {cell:?} is not a number", n + 2))?;
                *range = Some(match *range {
                    None => Range::new(v, v),
                    Some(r) => Range::new(r.min.min(v), r.max.max(v)),
                });
            }
            self.frames += 1;
        }
        Ok(())
    }
}

/// `PUT /v1/camera-settings`: one entry per camera in index order, or a single entry for
/// every camera. Refused (409) while a take is armed or recording; 400 when a camera cannot
/// take a value (nothing is applied then).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplySettingsRequest {
    pub command_id: String,
    pub cameras: Vec<CameraSettings>,
}

/// One camera in `GET`/`PUT /v1/camera-settings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraSettingsState {
    pub index: usize,
    pub model: String,
    /// What the camera was asked to use.
    pub settings: CameraSettings,
    /// What it applied to its latest frame.
    pub applied: Option<AppliedControls>,
    pub limits: CameraLimits,
    /// The node's configured rate, which `frame_rate: "auto"` keeps.
    pub configured_fps: f64,
}

/// Answer of `GET`/`PUT /v1/camera-settings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeCameraSettings {
    pub cameras: Vec<CameraSettingsState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_like() -> CameraLimits {
        CameraLimits {
            exposure_us: Some(Range::new(100.0, 1_000_000.0)),
            analogue_gain: Some(Range::new(1.0, 16.0)),
            colour_gains: Some(Range::new(0.5, 8.0)),
            awb_modes: vec![AwbMode::Daylight, AwbMode::Tungsten],
            lens_position: None,
            noise_reduction: vec![NoiseReduction::Off, NoiseReduction::Fast],
            frame_rate: Some(Range::new(1.0, 60.0)),
            auto_exposure: true,
            auto_white_balance: true,
            auto_focus: false,
        }
    }

    #[test]
    fn json_takes_numbers_auto_modes_and_gains() {
        let s: CameraSettings = serde_json::from_str(
            r#"{"exposure_us": 8000, "analogue_gain": "auto", "awb": {"red": 1.5, "blue": 2.0}}"#,
        )
        .unwrap();
        assert_eq!(s.exposure_us, AutoOr::Fixed(8000));
        assert_eq!(s.analogue_gain, AutoOr::Auto);
        assert_eq!(
            s.awb,
            Awb::Gains {
                red: 1.5,
                blue: 2.0
            }
        );
        assert_eq!(s.focus, AutoOr::Auto);
        let back = serde_json::to_value(s).unwrap();
        assert_eq!(back["exposure_us"], 8000);
        assert_eq!(back["analogue_gain"], "auto");
        assert_eq!(back["awb"]["red"], 1.5);
        let s: CameraSettings = serde_json::from_str(r#"{"awb": "daylight"}"#).unwrap();
        assert_eq!(s.awb, Awb::Mode(AwbMode::Daylight));
        assert_eq!(serde_json::to_value(s).unwrap()["awb"], "daylight");
    }

    #[test]
    fn bad_json_says_what_is_expected() {
        let e = serde_json::from_str::<CameraSettings>(r#"{"exposure_us": "long"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"auto\""), "{e}");
        let e = serde_json::from_str::<CameraSettings>(r#"{"awb": "sunset"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sunset") && e.contains("daylight"), "{e}");
        let e = serde_json::from_str::<CameraSettings>(r#"{"exposure": 5}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exposure"), "{e}");
    }

    #[test]
    fn values_are_checked_against_the_camera_and_named() {
        let l = synthetic_like();
        let ok = CameraSettings {
            exposure_us: AutoOr::Fixed(10_000),
            analogue_gain: AutoOr::Fixed(2.0),
            awb: Awb::Mode(AwbMode::Daylight),
            ..Default::default()
        };
        l.check(&ok, 30.0, "cam").unwrap();
        let e = l
            .check(
                &CameraSettings {
                    analogue_gain: AutoOr::Fixed(40.0),
                    ..Default::default()
                },
                30.0,
                "node 10.0.0.2 camera 0 (synthetic)",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 10.0.0.2 camera 0") && e.contains("1-16"),
            "{e}"
        );
        let e = l
            .check(
                &CameraSettings {
                    exposure_us: AutoOr::Fixed(40_000),
                    ..Default::default()
                },
                30.0,
                "cam",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than the frame period"), "{e}");
        // The same exposure fits a slower rate.
        l.check(
            &CameraSettings {
                exposure_us: AutoOr::Fixed(40_000),
                frame_rate: AutoOr::Fixed(20.0),
                ..Default::default()
            },
            20.0,
            "cam",
        )
        .unwrap();
        // Another rate than the node's configured one is fine inside the camera's range...
        l.check(
            &CameraSettings {
                frame_rate: AutoOr::Fixed(20.0),
                ..Default::default()
            },
            30.0,
            "cam",
        )
        .unwrap();
        // ...and refused above it, naming the camera and the range.
        let e = l
            .check(
                &CameraSettings {
                    frame_rate: AutoOr::Fixed(90.0),
                    ..Default::default()
                },
                30.0,
                "node 10.0.0.2 camera 1 (synthetic)",
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("node 10.0.0.2 camera 1") && e.contains("1-60 fps"),
            "{e}"
        );
        let e = l
            .check(
                &CameraSettings {
                    focus: AutoOr::Fixed(2.0),
                    ..Default::default()
                },
                30.0,
                "cam",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("LensPosition"), "{e}");
        let e = l
            .check(
                &CameraSettings {
                    awb: Awb::Mode(AwbMode::Cloudy),
                    ..Default::default()
                },
                30.0,
                "cam",
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("daylight, tungsten"), "{e}");
    }

    #[test]
    fn applied_ranges_summarise_metadata_files() {
        let mut r = AppliedRange::default();
        let c = |e, g| AppliedControls {
            exposure_us: Some(e),
            analogue_gain: Some(g),
            colour_gains: None,
            lens_position: None,
        };
        let csv = |rows: &[(u64, AppliedControls)]| {
            rows.iter()
                .fold(METADATA_CSV_HEADER.to_owned(), |acc, (i, a)| {
                    acc + &metadata_csv_row(*i, 0, a)
                })
        };
        r.add_csv(&csv(&[(0, c(8000, 1.0)), (1, c(9000, 2.5))]))
            .unwrap();
        r.add_csv(&csv(&[(2, c(7000, 1.5))])).unwrap();
        assert_eq!(r.frames, 3);
        assert_eq!(r.exposure_us, Some(Range::new(7000.0, 9000.0)));
        assert_eq!(r.analogue_gain, Some(Range::new(1.0, 2.5)));
        assert_eq!(r.colour_gain_red, None);
        assert!(r
            .add_csv("frame_index,exposure_us\n0,fast\n")
            .unwrap_err()
            .contains("fast"));
    }

    #[test]
    fn metadata_rows_leave_unreported_values_empty() {
        let row = metadata_csv_row(
            3,
            1_000,
            &AppliedControls {
                exposure_us: Some(8000),
                analogue_gain: Some(1.5),
                colour_gains: None,
                lens_position: None,
            },
        );
        assert_eq!(row, "3,8000,1.5,,,,1000\n");
        assert!(METADATA_CSV_HEADER.starts_with("frame_index,exposure_us,analogue_gain,"));
    }
}
