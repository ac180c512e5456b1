//! The node's configuration: the TOML file (`services/camrig-node/node.example.toml` documents
//! every key), and validation that names the offending key. [`NodeConfig::to_toml`] writes one
//! (the demo, the virtual rig).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use camrig_protocol::camera_settings::CameraSettings;
use camrig_protocol::naming::Codec;

/// Where the appliance images put the config.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/camrig/node.toml";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub name: String,
    pub token: String,
    pub token_file: String,
    pub auth: bool,
    pub standalone: bool,
    pub recording: RecordingConfig,
    pub camera: CameraConfig,
    /// The cameras' settings at start-up (exposure, gain, white balance, focus, noise
    /// reduction, frame rate); the controller's `PUT /api/camera-settings` changes them live.
    pub camera_settings: CameraSettings,
    pub phase: PhaseConfig,
    pub synthetic: SyntheticConfig,
    pub health: HealthConfig,
}

/// `[health]`: where the node's host-health seam (`camrig-node`'s `service::health`) reads
/// sysfs and procfs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// `/` on a Pi; a directory laid out like `/sys` and `/proc` in tests and demos.
    pub sysfs_root: PathBuf,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            sysfs_root: PathBuf::from("/"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    pub codec: Codec,
    pub standalone_codec: Codec,
    pub segment_seconds: u32,
    pub min_free_mb: u64,
    pub h264_bitrate_kbps: u32,
    pub mjpeg_quality: u8,
    /// "auto", "software" or "v4l2" (see [`HardwareEncoder`]).
    pub encoder: HardwareEncoder,
    /// START is refused for a start instant further ahead than this (milliseconds): a
    /// mistaken or hostile instant would keep the node armed and unusable until then.
    pub max_start_lead_ms: u64,
}

/// `recording.encoder`: which encoder implementation takes the frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwareEncoder {
    /// A V4L2 memory-to-memory encoder for the codec when the machine has one (Pi 4), else
    /// software (Pi 5, PCs).
    #[default]
    Auto,
    /// Always software (OpenH264, jpeg-encoder).
    Software,
    /// Only the V4L2 encoder: frames fail (and are counted) if there is none.
    V4l2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    Libcamera,
    Synthetic,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub source: CameraSource,
    pub count: usize,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// libcamera: which cameras, in order (each a 0-based index, a libcamera id, a sensor
    /// model such as "imx477", or a model on a CSI port, "imx477:port0"); empty = the first
    /// `count`.
    pub select: Vec<String>,
    /// libcamera pixel format name ("YUV420", "NV12", "YUYV", "BGR888", "RGB888"); empty =
    /// the first of those the camera offers.
    pub pixel_format: String,
}

/// Phase lock of every camera to the rig's frame grid (camrig-node's `camera::phase_lock`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhaseConfig {
    /// Run the loop (false: cameras free-run, shown `unavailable`; for comparisons).
    pub lock: bool,
    /// A frame within this of its grid instant is in tolerance, µs.
    pub tolerance_us: u32,
    /// Frames in a row within tolerance before a camera is `locked`.
    pub lock_frames: u32,
}

/// The synthetic camera's sensor model (camrig-node's `camera::sensor_model`) and injected
/// faults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Oscillator rate error added to the random one, ppm.
    pub drift_ppm: f64,
    /// Each camera's oscillator gets a random rate error within ± this, ppm.
    pub ppm_range: f64,
    /// Random walk of the rate error, ppm per √s.
    pub wander_ppm: f64,
    /// Sensor line time, µs (imx219: 18.904).
    pub line_us: f64,
    /// The mode's maximum frame rate.
    pub max_fps: f64,
    /// Frames between a frame-duration request and the frame it changes (1–4).
    pub control_delay_frames: u32,
    /// Standard deviation of the frame timestamps' noise, µs.
    pub timestamp_noise_us: f64,
    /// Random extra delay of each frame's delivery, µs (uniform 0..jitter_us).
    pub jitter_us: u64,
    pub drop_every: u64,
    /// Grain amplitude (± steps on every sample), so recordings have a real camera's size.
    pub noise: u8,
    /// An injected, known start phase: the first frame starts this far after a grid instant
    /// (negative: before), µs, instead of at a random phase. With `phase.lock = false` and
    /// `ppm_range = 0` the camera stays there: a camera out of phase, for the sync report's
    /// tests. 0 = a random phase.
    pub phase_offset_us: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], camrig_protocol::api::NODE_API_PORT)),
            data_dir: PathBuf::from("/var/lib/camrig"),
            name: String::new(),
            token: String::new(),
            token_file: String::new(),
            auth: true,
            standalone: false,
            recording: RecordingConfig::default(),
            camera: CameraConfig::default(),
            camera_settings: CameraSettings::default(),
            phase: PhaseConfig::default(),
            synthetic: SyntheticConfig::default(),
            health: HealthConfig::default(),
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            codec: Codec::H264,
            standalone_codec: Codec::Mjpeg,
            segment_seconds: 60,
            min_free_mb: 1024,
            h264_bitrate_kbps: 8000,
            mjpeg_quality: 85,
            encoder: HardwareEncoder::Auto,
            max_start_lead_ms: 60_000,
        }
    }
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: CameraSource::Libcamera,
            count: 1,
            width: 1280,
            height: 720,
            fps: 30.0,
            select: Vec::new(),
            pixel_format: String::new(),
        }
    }
}

impl Default for PhaseConfig {
    fn default() -> Self {
        PhaseConfig {
            lock: true,
            tolerance_us: 50,
            lock_frames: 10,
        }
    }
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            drift_ppm: 0.0,
            ppm_range: 30.0,
            wander_ppm: 0.05,
            line_us: 18.904,
            max_fps: 60.0,
            control_delay_frames: 2,
            timestamp_noise_us: 2.0,
            jitter_us: 0,
            drop_every: 0,
            noise: 0,
            phase_offset_us: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("config key `token_file`: cannot read {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl NodeConfig {
    /// Parses the TOML text of a config file (pure; `path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        Ok(config)
    }

    /// The config as `node.toml` text, every key written (what the node will run with).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a node config serialises as TOML")
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        NodeConfig::parse(&text, path)
    }

    /// Checks values serde cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.health.sysfs_root.is_absolute() {
            return Err(invalid(
                "health.sysfs_root",
                format!(
                    "{:?} is not an absolute path (\"/\" on a Pi)",
                    self.health.sysfs_root
                ),
            ));
        }
        let c = &self.camera;
        if !(1..=2).contains(&c.count) {
            return Err(invalid(
                "camera.count",
                format!("{} cameras; a node has 1 or 2", c.count),
            ));
        }
        if c.width < 16
            || c.height < 16
            || !c.width.is_multiple_of(2)
            || !c.height.is_multiple_of(2)
            || c.width > 8192
            || c.height > 8192
        {
            return Err(invalid(
                "camera.width/camera.height",
                format!(
                    "{}x{} is not an even size between 16 and 8192",
                    c.width, c.height
                ),
            ));
        }
        if !(c.fps > 0.0 && c.fps <= 240.0) {
            return Err(invalid(
                "camera.fps",
                format!("{} is not between 0 and 240", c.fps),
            ));
        }
        if !c.select.is_empty() && c.select.len() != c.count {
            return Err(invalid(
                "camera.select",
                format!(
                    "lists {} camera(s) but camera.count is {}",
                    c.select.len(),
                    c.count
                ),
            ));
        }
        let r = &self.recording;
        if r.segment_seconds == 0 {
            return Err(invalid("recording.segment_seconds", "must be at least 1"));
        }
        // The controller's own lead goes up to 10 s (`start_lead_ms`); the node must take it.
        if !(10_000..=3_600_000).contains(&r.max_start_lead_ms) {
            return Err(invalid(
                "recording.max_start_lead_ms",
                "must be between 10000 (the controller's largest start lead) and 3600000",
            ));
        }
        if !(1..=100).contains(&r.mjpeg_quality) {
            return Err(invalid(
                "recording.mjpeg_quality",
                format!("{} is not 1-100", r.mjpeg_quality),
            ));
        }
        if r.h264_bitrate_kbps == 0 {
            return Err(invalid("recording.h264_bitrate_kbps", "must be above 0"));
        }
        if !self.synthetic.drift_ppm.is_finite() || self.synthetic.drift_ppm.abs() > 100_000.0 {
            return Err(invalid("synthetic.drift_ppm", "must be within ±100000"));
        }
        let sy = &self.synthetic;
        if !(sy.ppm_range.is_finite() && (0.0..=1000.0).contains(&sy.ppm_range)) {
            return Err(invalid("synthetic.ppm_range", "must be within 0..1000"));
        }
        if !(sy.wander_ppm.is_finite() && sy.wander_ppm >= 0.0) {
            return Err(invalid("synthetic.wander_ppm", "must be 0 or above"));
        }
        if !(sy.line_us.is_finite() && (1.0..=1000.0).contains(&sy.line_us)) {
            return Err(invalid(
                "synthetic.line_us",
                "must be between 1 and 1000 µs",
            ));
        }
        if !(sy.max_fps.is_finite() && sy.max_fps > 0.0 && sy.max_fps <= 1000.0) {
            return Err(invalid(
                "synthetic.max_fps",
                "must be above 0 and at most 1000",
            ));
        }
        if c.fps > sy.max_fps {
            return Err(invalid(
                "camera.fps",
                format!(
                    "{} is above the synthetic sensor's maximum (synthetic.max_fps = {})",
                    c.fps, sy.max_fps
                ),
            ));
        }
        if !(1..=4).contains(&sy.control_delay_frames) {
            return Err(invalid("synthetic.control_delay_frames", "must be 1 to 4"));
        }
        if !(sy.timestamp_noise_us.is_finite() && (0.0..=10_000.0).contains(&sy.timestamp_noise_us))
        {
            return Err(invalid(
                "synthetic.timestamp_noise_us",
                "must be within 0..10000",
            ));
        }
        let ph = &self.phase;
        if ph.tolerance_us == 0 || ph.lock_frames == 0 {
            return Err(invalid(
                "phase.tolerance_us/phase.lock_frames",
                "must both be at least 1",
            ));
        }
        if self.synthetic.phase_offset_us.abs() > 1_000_000 {
            return Err(invalid(
                "synthetic.phase_offset_us",
                "must be within ±1000000 (1 s)",
            ));
        }
        if self.synthetic.noise > 64 {
            return Err(invalid(
                "synthetic.noise",
                format!(
                    "{} is above 64 (grain amplitude in steps)",
                    self.synthetic.noise
                ),
            ));
        }
        if self.auth && !self.token.is_empty() && !self.token_file.is_empty() {
            return Err(invalid("token", "give token or token_file, not both"));
        }
        if self.auth && self.token.is_empty() && self.token_file.is_empty() {
            return Err(invalid(
                "token",
                "no rig token: set token or token_file (or auth = false on a closed bench)",
            ));
        }
        Ok(())
    }

    /// The bearer token requests must carry, `None` when auth is off. Reads `token_file`.
    pub fn resolve_token(&self) -> Result<Option<String>, ConfigError> {
        if !self.auth {
            return Ok(None);
        }
        if !self.token.is_empty() {
            return Ok(Some(self.token.clone()));
        }
        let path = PathBuf::from(&self.token_file);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::TokenFile {
            path: path.clone(),
            source,
        })?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(invalid(
                "token_file",
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(token))
    }

    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.recording.min_free_mb * 1024 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("node.toml"))
    }

    #[test]
    fn a_written_config_reads_back_the_same() {
        let mut c = NodeConfig {
            token: "tok".into(),
            ..NodeConfig::default()
        };
        c.recording.codec = Codec::H264;
        c.recording.encoder = HardwareEncoder::Software;
        c.camera.source = CameraSource::Synthetic;
        c.camera.fps = 29.97;
        c.synthetic.noise = 3;
        let back = parse(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        back.validate().unwrap();
    }

    #[test]
    fn the_shipped_example_is_the_defaults() {
        let example = include_str!("../../camrig-node/node.example.toml");
        let parsed = parse(example).unwrap();
        assert_eq!(parsed, NodeConfig::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.recording.segment_seconds, 60);
        assert_eq!(c.recording.codec, Codec::H264);
        assert_eq!(c.recording.standalone_codec, Codec::Mjpeg);
        assert_eq!(c.camera.source, CameraSource::Libcamera);
        assert_eq!(c.listen.port(), 8081);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[recording]\nsegment_secs = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("segment_secs"), "{err}");
        let err = parse("colour = 1\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse("[recording]\ncodec = \"vp9\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("vp9") && err.contains("codec"), "{err}");
        let err = parse("[camera]\nsource = \"usb\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("usb"), "{err}");
        let c = parse("token = \"t\"\n[camera]\ncount = 3\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("camera.count"), "{err}");
        let c = parse("token = \"t\"\n[camera]\nwidth = 641\n").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("camera.width"));
        let c = parse("token = \"t\"\n[recording]\nmjpeg_quality = 0\n").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mjpeg_quality"));
    }

    #[test]
    fn health_reads_sysfs_from_its_root() {
        assert_eq!(parse("").unwrap().health.sysfs_root, PathBuf::from("/"));
        let c = parse("token = \"t\"\n[health]\nsysfs_root = \"/tmp/fake\"\n").unwrap();
        assert_eq!(c.health.sysfs_root, PathBuf::from("/tmp/fake"));
        c.validate().unwrap();
        let c = parse("token = \"t\"\n[health]\nsysfs_root = \"fake\"\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("health.sysfs_root"), "{err}");
        let err = parse("[health]\nroot = \"/\"\n").unwrap_err().to_string();
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn a_token_is_required_unless_auth_is_off() {
        let c = parse("").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("`token`"));
        let c = parse("auth = false\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.resolve_token().unwrap(), None);
        let c = parse("token = \"s3cret\"\n").unwrap();
        c.validate().unwrap();
        assert_eq!(c.resolve_token().unwrap().as_deref(), Some("s3cret"));
    }
}
