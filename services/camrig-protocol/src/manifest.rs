//! The take manifest: the node's own account of one take, written next to its files as
//! `<take>_<node>_<stamp>_manifest.json`, rewritten atomically at every segment close and
//! finalised at stop (or at recovery after a crash). The controller verifies every
//! downloaded file against [`TakeManifest::files`].

use crate::naming::Codec;
use crate::take_name::TakeName;
use crate::UnixNanos;

/// Bumped when a field changes meaning; readers refuse formats they do not know.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TakeManifest {
    pub format: u32,
    pub take: TakeName,
    /// The `<node>` label used in the file names.
    pub node: String,
    pub state: ManifestState,
    /// Why recording ended; `None` while recording.
    pub stop_reason: Option<StopReason>,
    /// The scheduled START instant (wall clock) the controller chose.
    pub start_at_ns: UnixNanos,
    /// The scheduled STOP instant, once known.
    pub stop_at_ns: Option<UnixNanos>,
    pub codec: Codec,
    pub segment_seconds: u32,
    pub cameras: Vec<CameraRecord>,
    pub markers: Vec<Marker>,
    pub clock_at_start: ClockHealth,
    pub clock_at_stop: Option<ClockHealth>,
    /// Every file of the take except this manifest, with its size and sha256 (lowercase hex).
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestState {
    /// The take is still being written; `files` lists the closed segments so far.
    Recording,
    /// Stopped and finalised by the running node.
    Complete,
    /// The node died mid-take; a later start finalised what was on disk.
    Recovered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A STOP command (or the standalone recorder's SIGTERM).
    Requested,
    /// The node service was told to shut down mid-take.
    Shutdown,
    /// Free space fell to the configured floor; the take was closed before the disk filled.
    DiskFull,
    /// START was aborted by the controller (another node failed to arm).
    Aborted,
    /// A camera stopped delivering frames.
    CameraFailed,
    /// The node crashed or lost power; recovered at next start.
    Crashed,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CameraRecord {
    /// 0-based camera index on the node.
    pub index: usize,
    /// `cam1`/`cam2` on a two-camera node, `None` on a single-camera node.
    pub label: Option<String>,
    /// Sensor model or backend description, e.g. `imx477` or `synthetic`.
    pub model: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Frames kept in the take.
    pub frames: u64,
    /// Frames detected missing between kept frames (sequence gaps or late frames).
    pub drops: u64,
    pub first_frame_ns: Option<UnixNanos>,
    pub last_frame_ns: Option<UnixNanos>,
    pub segments: Vec<SegmentRecord>,
    /// How the kept frames' pixels reached the encoder (absent in manifests before it).
    #[serde(default)]
    pub pixel_paths: PixelPathCounts,
    /// Phase lock over the take (absent in manifests before phase lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::phase::PhaseRecord>,
    /// The camera settings in force at START (absent in manifests before camera settings).
    /// They cannot change during a take (the node refuses), so these hold for every frame;
    /// what the camera's algorithms applied per frame is in each segment's `metadata_csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<crate::camera_settings::CameraSettings>,
}

/// Per camera and take: how many kept frames reached the encoder each way. A camera's own
/// buffer is *borrowed* (lent to the encoder, no copy) and then either *imported* (a hardware
/// encoder read its dma-buf), read *in place* (a software encoder read the mapped buffer) or
/// *converted* (a software encoder needed another pixel format, e.g. BGR888 to I420: a needed
/// pass, not a copy); *copied* counts frames copied whole into other memory (a hardware
/// encoder refusing the camera's buffer), *memory* frames that never were in a camera buffer
/// (the synthetic camera).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PixelPathCounts {
    pub borrowed: u64,
    pub imported: u64,
    pub in_place: u64,
    pub converted: u64,
    pub copied: u64,
    pub memory: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentRecord {
    pub index: u32,
    pub video: String,
    pub timestamps_bin: String,
    pub timestamps_txt: String,
    /// `<segment stem>_metadata.csv`: per frame, the values the camera applied (absent in
    /// manifests before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_csv: Option<String>,
    pub frames: u64,
    /// Index in the take (0-based, per camera) of the segment's first frame.
    pub first_frame_index: u64,
    pub first_frame_ns: Option<UnixNanos>,
    pub last_frame_ns: Option<UnixNanos>,
    /// False for the segment that was open when the node crashed.
    pub closed_cleanly: bool,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// The controller's click time (wall clock).
    pub at_ns: UnixNanos,
    pub note: String,
    /// Where the mark falls in each camera's frames: the first frame at or after `at_ns`.
    pub frames: Vec<MarkerFrame>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MarkerFrame {
    pub camera: usize,
    /// 0-based frame index in the take; `None` if the take ended before such a frame.
    pub frame_index: Option<u64>,
    pub frame_ns: Option<UnixNanos>,
    pub segment: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: String,
}

/// What the node knew about its clock at an instant.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClockHealth {
    /// The kernel's view: an NTP daemon (chrony or timesyncd) has disciplined the clock.
    pub synced: bool,
    /// The kernel's estimated error bound, if the clock is synchronised.
    pub est_error_ns: Option<i64>,
    pub measured_at_ns: UnixNanos,
    /// The NTP daemon's (chrony's) offset of the system clock from its reference, when the
    /// daemon could be asked (absent in manifests before it, and without chrony).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ns: Option<i64>,
    /// chrony's root delay: the round trip to the rig's master clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_delay_ns: Option<i64>,
    /// chrony's root dispersion: the error accumulated on the way from the master clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_dispersion_ns: Option<i64>,
}

impl ClockHealth {
    /// The kernel's view alone (no NTP daemon figures): what a node without chrony knows.
    pub fn kernel(
        synced: bool,
        est_error_ns: Option<i64>,
        measured_at_ns: UnixNanos,
    ) -> ClockHealth {
        ClockHealth {
            synced,
            est_error_ns,
            measured_at_ns,
            offset_ns: None,
            root_delay_ns: None,
            root_dispersion_ns: None,
        }
    }

    /// The daemon's bound on this clock's error from the master clock:
    /// |offset| + root dispersion + half the root delay; `None` unless the clock was
    /// synchronised and all three are known.
    pub fn daemon_error_bound_ns(&self) -> Option<i64> {
        match (
            self.synced,
            self.offset_ns,
            self.root_dispersion_ns,
            self.root_delay_ns,
        ) {
            (true, Some(o), Some(disp), Some(delay)) => Some(o.abs() + disp + delay / 2),
            _ => None,
        }
    }
}

impl TakeManifest {
    /// Parses a manifest and refuses formats this build does not know.
    pub fn parse(json: &str) -> Result<TakeManifest, ManifestError> {
        let m: TakeManifest = serde_json::from_str(json).map_err(ManifestError::Json)?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::UnknownFormat(m.format));
        }
        Ok(m)
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for this camrig version: {0}")]
    Json(serde_json::Error),
    #[error("manifest format {0} is not known to this camrig version (knows {MANIFEST_FORMAT}); upgrade camrig")]
    UnknownFormat(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TakeManifest {
        TakeManifest {
            format: MANIFEST_FORMAT,
            take: TakeName::parse("t1").unwrap(),
            node: "192_168_1_101".into(),
            state: ManifestState::Complete,
            stop_reason: Some(StopReason::Requested),
            start_at_ns: 10,
            stop_at_ns: Some(20),
            codec: Codec::H264,
            segment_seconds: 60,
            cameras: vec![],
            markers: vec![],
            clock_at_start: ClockHealth {
                synced: true,
                est_error_ns: Some(1000),
                measured_at_ns: 9,
                offset_ns: Some(-20_000),
                root_delay_ns: Some(300_000),
                root_dispersion_ns: Some(50_000),
            },
            clock_at_stop: None,
            files: vec![FileEntry {
                name: "a.h264".into(),
                bytes: 3,
                sha256: "00".into(),
            }],
        }
    }

    #[test]
    fn round_trips_and_checks_the_format() {
        let m = sample();
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"state\":\"complete\""), "{json}");
        assert!(json.contains("\"codec\":\"h264\""), "{json}");
        assert_eq!(TakeManifest::parse(&json).unwrap(), m);
        assert_eq!(m.file("a.h264").unwrap().bytes, 3);
        assert_eq!(m.clock_at_start.daemon_error_bound_ns(), Some(220_000));
        // A manifest written before the daemon fields reads as "not known".
        let old = json.replace(
            ",\"offset_ns\":-20000,\"root_delay_ns\":300000,\"root_dispersion_ns\":50000",
            "",
        );
        assert_ne!(old, json);
        assert_eq!(
            TakeManifest::parse(&old)
                .unwrap()
                .clock_at_start
                .daemon_error_bound_ns(),
            None
        );

        let future = json.replace("\"format\":1", "\"format\":2");
        assert!(matches!(
            TakeManifest::parse(&future),
            Err(ManifestError::UnknownFormat(2))
        ));
    }
}
